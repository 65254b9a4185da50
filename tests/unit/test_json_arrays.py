"""A value that is an array: a point per element (per statement), each element mapped as a value.

The property states the rule whole: an array's lines are the lines each element would have as a
record's value, in order; if one element cannot be mapped (or is not an object), the record fails
with that element's reason and index, and none of its points is written.
tests/integration/test_json_arrays.py writes arrays to a real InfluxDB 1.x.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handler.decode import Decoder
from handler.errors import RecordError
from handler.mapping import Plan
from handler.records import KafkaRecord
from kcql import parse


def record(value: Any, key: Any = None) -> KafkaRecord:
    enc = (lambda v: None if v is None else base64.b64encode(json.dumps(v).encode()).decode())
    return KafkaRecord("t", 0, 1, 1_700_000_000_000, enc(key), enc(value), None)


def outcome(plan: Plan, value: Any, key: Any = None) -> list[str] | RecordError:
    try:
        return plan.lines(record(value, key))
    except RecordError as err:
        return err


STATEMENTS = [
    "INSERT INTO m SELECT * FROM t WITHTIMESTAMP ts",
    "INSERT INTO m SELECT v, w AS x FROM t WITHTAG(s, c=1) WITHTIMESTAMP ts",
    "INSERT INTO m SELECT *, _key.id AS kid FROM t IGNORE ts WITHTAG(_key.id AS k) WITHTIMESTAMP ts",
    "INSERT INTO m SELECT v FROM t WITHTARGET = s WITHTIMESTAMP ts; INSERT INTO n SELECT * FROM t WITHTIMESTAMP ts",
]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True),
                    st.text("ab ,=\\", max_size=3))
elements = st.one_of(
    st.fixed_dictionaries({"ts": st.one_of(st.integers(0, 3), st.none())},
                          optional={"v": scalars, "w": scalars, "s": st.sampled_from(["a", "b", "", "x y"]),
                                    "o": st.dictionaries(st.sampled_from(["p", "q"]), scalars, max_size=2)}),
    scalars, st.lists(st.integers(), max_size=2))


@pytest.mark.parametrize("kcql", STATEMENTS)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(array=st.lists(elements, max_size=5), key=st.one_of(st.none(), st.fixed_dictionaries({"id": st.integers(0, 9)})))
def test_an_array_is_its_elements_as_values(kcql: str, array: list[Any], key: Any) -> None:
    logging.getLogger("handler.mapping").setLevel(logging.ERROR)
    plan = Plan(parse(kcql), Decoder())
    got = outcome(plan, array, key)
    expected: list[str] = []
    for i, element in enumerate(array):
        if not isinstance(element, dict):
            assert isinstance(got, RecordError) and got.reason.startswith(f"array element {i} is "), got
            assert got.reason.endswith("not an object: each element of an array value is one point")
            return
        alone = outcome(Plan(parse(kcql), Decoder()), element, key)
        if isinstance(alone, RecordError):
            assert isinstance(got, RecordError), got
            assert (got.reason, got.kind) == (f"array element {i}: {alone.reason}", alone.kind)
            return
        expected += alone
    assert got == expected


def test_example_and_overwrites_counted() -> None:
    plan = Plan(parse("INSERT INTO m SELECT v FROM t WITHTAG(s) WITHTIMESTAMP ts"), Decoder())
    got = plan.lines(record([{"s": "a", "v": 1, "ts": 5}, {"s": "b", "v": 2, "ts": 5},
                             {"s": "a", "v": 3, "ts": 5}, {"s": "a", "v": 4, "ts": 6}]))
    assert got == ["m,s=a v=1i 5000000", "m,s=b v=2i 5000000", "m,s=a v=3i 5000000", "m,s=a v=4i 6000000"]
    assert plan.stats.overwritten == 1  # the third shares series and time with the first


def test_processing_times_never_overwrite() -> None:
    plan = Plan(parse("INSERT INTO m SELECT * FROM t"), Decoder())
    assert len(plan.lines(record([{"v": 1}, {"v": 2}, {"v": 3}]))) == 3 and plan.stats.overwritten == 0


def test_empty_arrays_and_bad_elements() -> None:
    plan = Plan(parse("INSERT INTO m SELECT * FROM t"), Decoder())
    assert plan.lines(record([])) == [] and plan.stats.tombstones == 0
    with pytest.raises(RecordError, match=r"^array element 1 is null, not an object"):
        plan.lines(record([{"v": 1}, None]))
    with pytest.raises(RecordError, match=r"^array element 0 is a list, not an object"):
        plan.lines(record([[{"v": 1}]]))
    with pytest.raises(RecordError, match=r"^array element 2: the point has no fields"):
        plan.lines(record([{"v": 1}, {"v": 2}, {"v": None}]))


def test_the_documented_example() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "payloads.md").read_text(encoding="utf-8")
    section = text.split("\n## JSON arrays\n", 1)[1].split("\n## ", 1)[0]
    (_, kcql), (_, value), (_, written) = re.findall(r"```(\w*)\n(.*?)```", section, re.S)
    rec = KafkaRecord("sensors", 0, 0, 1, None, base64.b64encode(value.encode()).decode())
    assert Plan(parse(kcql), Decoder()).lines(rec) == written.splitlines()


def test_an_avro_array_of_records() -> None:
    import io

    import fastavro

    schema = {"type": "array", "items": {"type": "record", "name": "R", "fields": [
        {"name": "sensor", "type": "string"}, {"name": "v", "type": "double"}]}}
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(schema),
                               [{"sensor": "a", "v": 1.5}, {"sensor": "b", "v": 2.0}])
    rec = KafkaRecord("t", 0, 0, 1, None, base64.b64encode(body.getvalue()).decode())
    plan = Plan(parse("INSERT INTO m SELECT v FROM t WITHTAG(sensor) WITHTIMESTAMP _timestamp"),
                Decoder("avro", value_schema=json.dumps(schema)))
    assert plan.lines(rec) == ["m,sensor=a v=1.5 1000000", "m,sensor=b v=2.0 1000000"]
