"""Settings: validation names every bad setting and value; secrets never shown; defaults as the original
connector's (Stream Reactor's InfluxDB sink)."""

from __future__ import annotations

import pytest

from handler.errors import ConfigError
from handler.settings import SPECS, load

BASE = {"CONNECT_INFLUX_URL": "http://127.0.0.1:8086", "CONNECT_INFLUX_DB": "mydb",
        "CONNECT_INFLUX_KCQL": "INSERT INTO m SELECT * FROM t"}


def problems(**env: str) -> str:
    with pytest.raises(ConfigError) as err:
        load({**BASE, **env})
    return str(err.value)


def test_defaults_follow_the_seed():
    s = load(BASE)
    assert (s.retention_policy, s.consistency_level, s.error_policy, s.max_retries, s.retry_interval_ms,
            s.progress_enabled) == ("autogen", "ALL", "THROW", 10, 60000, False)
    assert s.version == "1" and s.ssl_verify is True and s.gzip is False
    assert s.sources["connect.influx.url"] == "env" and s.sources["connect.influx.retention.policy"] == "default"


@pytest.mark.parametrize("missing", ["CONNECT_INFLUX_URL", "CONNECT_INFLUX_DB", "CONNECT_INFLUX_KCQL"])
def test_missing_required_setting_is_named(missing):
    env = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(ConfigError) as err:
        load(env)
    key = missing.lower().replace("_", ".")
    assert key in str(err.value) and missing in str(err.value)


@pytest.mark.parametrize(("env", "key", "shown"), [
    ("CONNECT_INFLUX_ERROR_POLICY", "connect.influx.error.policy", "'SOMETIMES'"),
    ("CONNECT_INFLUX_CONSISTENCY_LEVEL", "connect.influx.consistency.level", "'MOST'"),
    ("CONNECT_INFLUX_MAX_RETRIES", "connect.influx.max.retries", "'ten'"),
    ("CONNECT_INFLUX_RETRY_INTERVAL", "connect.influx.retry.interval", "'1m'"),
    ("CONNECT_INFLUX_URL", "connect.influx.url", "'influx:8086'"),
    ("CONNECT_PROGRESS_ENABLED", "connect.progress.enabled", "'perhaps'"),
])
def test_invalid_value_names_key_env_and_value(env, key, shown):
    text = problems(**{env: shown.strip("'")})
    assert f"{key} ({env}) = {shown}" in text


def test_all_problems_are_reported_at_once():
    text = problems(CONNECT_INFLUX_ERROR_POLICY="x", CONNECT_INFLUX_CONSISTENCY_LEVEL="y",
                    CONNECT_INFLUX_MAX_RETRIES="z", CONNECT_INFLUX_KCQL="INSERT INTO m SELECT * FROM")
    for key in ("connect.influx.error.policy", "connect.influx.consistency.level", "connect.influx.max.retries",
                "connect.influx.kcql"):
        assert key in text


def test_kcql_error_carries_the_caret():
    text = problems(CONNECT_INFLUX_KCQL="INSERT INTO m SELECT * FROM t WITHTAG(a) BOGUS")
    assert "line 1, column 42" in text and "\n" in text and "^" in text


def test_url_with_bad_port():
    assert "connect.influx.url (CONNECT_INFLUX_URL) = 'http://h:99999'" in problems(
        CONNECT_INFLUX_URL="http://h:99999")


def test_v2_needs_bucket_and_org():
    text = problems(CONNECT_INFLUX_VERSION="2", CONNECT_INFLUX_DB="")
    assert "connect.influx.bucket (CONNECT_INFLUX_BUCKET)" in text
    assert "connect.influx.org (CONNECT_INFLUX_ORG)" in text


def test_token_or_bucket_selects_v2():
    s = load({**BASE, "CONNECT_INFLUX_TOKEN": "t0k", "CONNECT_INFLUX_ORG": "o", "CONNECT_INFLUX_BUCKET": "b"})
    assert s.version == "2"


def test_secrets_are_hidden_in_description_and_errors():
    secret = "s3cr3t-Pa55"
    s = load({**BASE, "CONNECT_INFLUX_PASSWORD": secret, "CONNECT_INFLUX_USERNAME": "u",
              "CONNECT_INFLUX_TOKEN": secret + "tok", "CONNECT_INFLUX_ORG": "o",
              "CONNECT_INFLUX_URL": f"http://u:{secret}@127.0.0.1:8086"})
    text = "\n".join(s.describe()) + repr(s)
    assert secret not in text
    assert "connect.influx.password = [hidden] (env)" in text
    bad = problems(CONNECT_INFLUX_PASSWORD=secret, CONNECT_INFLUX_URL=f"ftp://u:{secret}@h",
                   CONNECT_INFLUX_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO=f"u:{secret}", CONNECT_INFLUX_ERROR_POLICY="x")
    assert secret not in bad and "[hidden]" in bad


def test_readme_settings_table_is_current():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent.parent
    readme = (root / "README.md").read_text(encoding="utf-8")
    table = subprocess.run([sys.executable, "-m", "influx_sink_tools.settings_table"], check=True, cwd=root,
                           capture_output=True, text=True).stdout
    assert table.strip() in readme, (
        "README's settings table is stale: run python -m influx_sink_tools.settings_table")
    assert all(f"`{s.key}`" in readme for s in SPECS)


# ------------------------------------------------------------------ URLs whose password URL parsers misread

@pytest.mark.parametrize("password", ["pa/ss", "pa#ss", "pa?ss", "p@ss", "a/b?c#d@e", "/", "#", "?", "%zz/"])
@pytest.mark.parametrize("setting", ["CONNECT_INFLUX_URL", "CONNECT_INFLUX_SCHEMA_REGISTRY_URL"])
def test_password_with_url_delimiters_never_shown(setting, password):
    secret = f"S3cr3t{password}Tail"
    url = f"http://admin:{secret}@127.0.0.1:8086"
    try:
        s = load({**BASE, setting: url})
    except ConfigError as err:
        text = str(err)
        assert setting in text
    else:
        text = "\n".join(s.describe()) + repr(s)
    assert "S3cr3t" not in text and "Tail" not in text
    assert "[hidden]" in text


def test_password_with_slash_is_reported_with_a_hint():
    text = problems(CONNECT_INFLUX_URL="http://admin:pa/ss@127.0.0.1:8086")
    assert "connect.influx.url (CONNECT_INFLUX_URL) = 'http://admin:[hidden]@127.0.0.1:8086'" in text
    assert "percent-encode" in text and "pa/ss" not in text


@pytest.mark.parametrize(("url", "masked"), [
    ("http://h:8086", "http://h:8086"),
    ("http://u:pw@h:8086/x", "http://u:[hidden]@h:8086/x"),
    ("http://u:p/w@h:8086", "http://u:[hidden]@h:8086"),
    ("http://u:p@w@h", "http://u:[hidden]@h"),
    ("http://token@h", "http://[hidden]@h"),
    ("u:pw@h:8086", "u:[hidden]@h:8086"),
    ("not a url: x@y", "[hidden]@y"),
    ("http://h:8086/?db=x&p=secret&u=me", "http://h:8086/?db=x&p=[hidden]&u=me"),
    ("http://h/?token=abc#frag", "http://h/?token=[hidden]#frag"),
])
def test_mask_url_does_not_depend_on_parsing(url, masked):
    from handler.settings import mask_url

    assert mask_url(url) == masked


def test_query_password_hidden_in_description():
    s = load({**BASE, "CONNECT_INFLUX_URL": "http://127.0.0.1:8086/?u=me&p=Zecret"})
    assert "Zecret" not in "\n".join(s.describe())


# ------------------------------------------------------------------ mistyped setting names

def test_mistyped_setting_names_are_warned_with_the_closest(caplog):
    import logging

    env = {**BASE, "CONNECT_INFLUX_ERRORPOLICY": "NOOP", "CONNECT_INFLUX_PASWORD": "Zecret",
           "connect_influx_db": "x", "CONNECT_INFLUX_SSM_MAX_AGE": "5", "CONNECT_INFLUX_SSM_PATH": "",
           "CONNECT_SOMETHING_ELSE_ENTIRELY": "1", "OTHER_VAR": "1"}
    with caplog.at_level(logging.WARNING, logger="handler.settings"):
        s = load(env)
    assert s.error_policy == "THROW"  # the mistyped name really is ignored
    messages = [r.getMessage() for r in caplog.records if r.name == "handler.settings"]
    assert ("environment variable CONNECT_INFLUX_ERRORPOLICY is not a setting and is ignored; "
            "did you mean CONNECT_INFLUX_ERROR_POLICY?") in messages
    assert any("CONNECT_INFLUX_PASWORD" in m and "CONNECT_INFLUX_PASSWORD?" in m for m in messages)
    assert any("connect_influx_db" in m and "CONNECT_INFLUX_DB?" in m for m in messages)
    assert any(m.startswith("environment variable CONNECT_SOMETHING_ELSE_ENTIRELY ") for m in messages)
    assert len(messages) == 4  # not the runtime's SSM variables, not OTHER_VAR, not the real settings
    assert not any("Zecret" in m for m in messages)


def test_no_warning_for_correct_settings(caplog):
    import logging

    with caplog.at_level(logging.WARNING, logger="handler.settings"):
        load({**{spec.env: "" for spec in SPECS}, **BASE, "CONNECT_INFLUX_SSM_PATH": "/p"})
    assert [r for r in caplog.records if r.name == "handler.settings"] == []
