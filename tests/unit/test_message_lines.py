"""Lines written straight from Protobuf messages (handler.message_lines) against the general
path (the record shape through the compiled statements), on random message types, values and
statements: the same lines, the same errors, the same counts."""

from __future__ import annotations

import base64
import dataclasses
import math
import re
from collections import Counter
from typing import Any

import pytest
from google.protobuf import message_factory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handler.decode import Decoder
from handler.decode import protobuf as pb
from handler.decode import registry as registry_mod
from handler.errors import RecordError
from handler.mapping import Plan
from handler.message_lines import compile_lines
from handler.records import KafkaRecord
from kcql import parse

SCHEMA_ID = 41
_TAKEN: Counter[str] = Counter()  # which path the property's records took
INT_RANGES = {
    "int32": (-(2**31), 2**31 - 1), "sint32": (-(2**31), 2**31 - 1), "sfixed32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1), "fixed32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1), "sint64": (-(2**63), 2**63 - 1), "sfixed64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1), "fixed64": (0, 2**64 - 1),
}
KINDS = ["double", "float", "bool", "string", "E", *INT_RANGES]
NAMES = ["a", "b", "temp", "host", "ts", "time", "from", "zone", "count", "ok", "x_y", "Status"]
ENUM = "enum E { E0 = 0; E_ONE = 1; E2 = 2; }"


def _proto(syntax: str, fields: list[tuple[str, str, bool, str | None]]) -> str:
    lines = []
    for n, (name, kind, optional, default) in enumerate(fields, 1):
        label = "optional " if optional or syntax == "proto2" else ""
        opt = f" [default = {default}]" if default is not None and syntax == "proto2" else ""
        lines.append(f"  {label}{kind} {name} = {n}{opt};")
    return f'syntax = "{syntax}";\npackage q;\n{ENUM}\nmessage M {{\n' + "\n".join(lines) + "\n}\n"


def _file_proto(text: str) -> Any:
    """The schema's FileDescriptorProto as a registry serializes it, proto2 defaults included
    (the .proto text reader leaves them out: an unset field is never written, whatever it reads as)."""
    proto = pb.parse_proto(text, "m.proto", "m")
    defaults = dict(re.findall(r" (\w+) = \d+ \[default = (\w+(?:\.\w+)?)\];", text))
    for field in proto.message_type[0].field:
        if field.name in defaults:
            field.default_value = defaults[field.name]
    return proto


def _message_class(text: str) -> Any:
    pool = pb.new_pool()
    file = pb.add_file(pool, _file_proto(text), "m")
    return file, message_factory.GetMessageClass(file.message_types_by_name["M"])


def _value(kind: str) -> st.SearchStrategy[Any]:
    """Values of a field kind, half of them the ones a line must decide on."""
    if kind in ("double", "float"):
        values = st.floats(allow_nan=True, allow_infinity=True, width=64 if kind == "double" else 32)
        return st.one_of(values, st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1.5, 1e21, 5e-324]))
    if kind == "bool":
        return st.booleans()
    if kind == "string":
        return st.one_of(st.text(max_size=6), st.sampled_from(["", 'q"uote', "back\\slash", "é ü", "a b,c=d"]))
    if kind == "E":
        return st.sampled_from([0, 1, 2, 7])  # 7: a number the enum does not name
    lo, hi = INT_RANGES[kind]
    return st.one_of(st.integers(lo, hi), st.sampled_from([lo, hi, 0, 2**63 - 1]).filter(lambda v: lo <= v <= hi))


@st.composite
def cases(draw: Any) -> tuple[str, list[str], dict[str, Any], str, int]:
    syntax = draw(st.sampled_from(["proto3", "proto3", "proto2"]))
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=6, unique=True))
    fields = []
    for name in names:
        kind = draw(st.sampled_from(KINDS))
        optional = draw(st.booleans())
        default = None
        if syntax == "proto2" and kind in ("int32", "double", "bool") and draw(st.booleans()):
            default = {"int32": "5", "double": "2.5", "bool": "true"}[kind]
        fields.append((name, kind, optional, default))
    values: dict[str, Any] = {}
    for name, kind, optional, _default in fields:
        if (optional or syntax == "proto2") and draw(st.booleans()):
            continue  # left unset
        values[name] = draw(_value(kind))
        if kind == "E" and syntax == "proto2" and values[name] == 7:
            values[name] = 2  # a proto2 enum is closed: its class refuses other numbers
    pick = st.sampled_from(names)
    fields_part = draw(st.one_of(
        st.just("*"),
        st.lists(pick, min_size=1, max_size=3, unique=True).map(
            lambda ns: ", ".join(f"`{n}`" if n == "from" else n for n in ns)),
        st.builds(lambda n: f"{'`from`' if n == 'from' else n} AS renamed", pick)))
    clauses = ""
    if fields_part == "*" and draw(st.booleans()):
        clauses += " IGNORE " + ", ".join(draw(st.lists(pick, min_size=1, max_size=2, unique=True)))
    tags = draw(st.lists(st.one_of(pick, st.just("site='north'")), max_size=2, unique=True))
    if tags:
        clauses += f" WITHTAG({', '.join(tags)})"
    when = draw(st.sampled_from(["", "_timestamp", "field", "field SECONDS"]))
    if when == "_timestamp":
        clauses += " WITHTIMESTAMP _timestamp"
    elif when.startswith("field"):
        clauses += f" WITHTIMESTAMP {draw(pick)}" + (" TIMESTAMPUNIT=SECONDS" if when.endswith("SECONDS") else "")
    kcql = f"INSERT INTO m SELECT {fields_part} FROM t{clauses}"
    if draw(st.booleans()):
        kcql += f"; INSERT INTO n SELECT * FROM t WITHTAG({draw(pick)})"
        if when:
            kcql += " WITHTIMESTAMP _timestamp"
    return _proto(syntax, fields), names, values, kcql, draw(st.integers(0, 2**41))


def _plans(text: str, kcql: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Plan, Plan]:
    """The plan under test, and one whose decoder never hands a message on (the general path)."""
    file = pb.add_file(pb.new_pool(), _file_proto(text), "m")
    url = "http://sr.invalid"
    registry_mod.clear_caches()
    monkeypatch.setitem(registry_mod._confluent_cache, url, {SCHEMA_ID: pb.ProtobufSchema(file, "schema", True)})
    general = Decoder(registry_url=url)
    general.value_or_message = general.value  # type: ignore[method-assign]
    return Plan(parse(kcql), Decoder(registry_url=url)), Plan(parse(kcql), general)


def _outcome(plan: Plan, record: KafkaRecord) -> Any:
    try:
        return plan.lines(record)
    except RecordError as err:
        return ("error", str(err), err.kind)


def _record(cls: Any, values: dict[str, Any], ts: int) -> KafkaRecord:
    msg = cls(**values)
    raw = b"\x00" + SCHEMA_ID.to_bytes(4, "big") + b"\x00" + msg.SerializeToString()
    return KafkaRecord("t", 0, 0, ts, None, base64.b64encode(raw).decode(), None, None, None)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cases())
def test_lines_from_messages_are_the_general_paths_lines(monkeypatch, case):
    text, _names, values, kcql, ts = case
    direct, general = _plans(text, kcql, monkeypatch)
    _file, cls = _message_class(text)
    for plan in (direct, general):  # the schema's first record is read before its reader is kept
        _outcome(plan, _record(cls, {}, 0))
    (mt,) = direct.decoder.message_types.values()
    taken: list[str] = []

    def record_shape(m: Any) -> Any:
        taken.append("general")
        return mt.record(m)

    direct.decoder.message_types[mt.cls] = dataclasses.replace(mt, record=record_shape)
    record = _record(cls, values, ts)
    got, want = _outcome(direct, record), _outcome(general, record)
    _TAKEN[taken[0] if taken else "straight"] += 1
    if "_timestamp" not in kcql and "WITHTIMESTAMP" not in kcql.split(";")[0]:
        # processing time: the same lines but for their clock times
        def untimed(out: Any) -> Any:
            return [line.rsplit(" ", 1)[0] for line in out] if isinstance(out, list) else out

        got, want = untimed(got), untimed(want)
    assert got == want
    assert (direct.stats.non_finite, direct.stats.tombstones) == (general.stats.non_finite, general.stats.tombstones)


def test_the_property_met_both_paths():
    """The comparison above is not empty: many of its records were written straight."""
    if not _TAKEN:
        pytest.skip("the property did not run in this session")
    print(_TAKEN)
    assert _TAKEN["straight"] >= 50 and _TAKEN["general"] >= 50, _TAKEN


def _bench_like() -> str:
    return _proto("proto3", [("device", "string", False, None), ("ts", "int64", False, None),
                             ("temp", "double", False, None), ("n", "uint64", False, None),
                             ("state", "E", False, None), ("ok", "bool", False, None),
                             ("fw", "string", True, None)])


def test_a_covered_statement_is_written_straight_and_its_odd_records_take_the_general_path(monkeypatch):
    """The straight path is taken for the statement shape users write most, and gives None (the
    general path decides) for each value that needs a decision."""
    kcql = "INSERT INTO m SELECT * FROM t IGNORE device WITHTAG(device) WITHTIMESTAMP ts"
    direct, general = _plans(_bench_like(), kcql, monkeypatch)
    _file, cls = _message_class(_bench_like())
    good = _record(cls, {"device": "d1", "ts": 1_700_000_000_000, "temp": 1.25, "n": 3, "state": 1, "ok": True}, 0)
    assert direct.lines(good) == general.lines(good) == [
        "m,device=d1 ts=1700000000000i,temp=1.25,n=3i,state=\"E_ONE\",ok=true 1700000000000000000"]
    (mt,) = direct.decoder.message_types.values()
    fn = compile_lines(direct.by_topic["t"], mt, lambda: 0)
    assert fn is not None
    message = cls.FromString(cls(device="d1", ts=1, temp=1.25).SerializeToString())
    assert fn(good, message) == general.lines(_record(cls, {"device": "d1", "ts": 1, "temp": 1.25}, 0))
    for odd in ({"temp": math.inf}, {"temp": math.nan}, {"n": 2**63}, {"state": 7}, {"fw": 'say "hi"'},
                {"fw": "back\\slash"}, {"ts": 2**62}):
        message = cls.FromString(cls(**{"device": "d1", "ts": 1, **odd}).SerializeToString())
        assert fn(good, message) is None, odd
        record = _record(cls, {"device": "d1", "ts": 1, **odd}, 0)
        assert _outcome(direct, record) == _outcome(general, record), odd
    empty_tag = cls.FromString(cls(device="", ts=1).SerializeToString())  # left out, as on the general path
    assert fn(good, empty_tag) == general.lines(_record(cls, {"device": "", "ts": 1}, 0))


@pytest.mark.parametrize("kcql", [
    "INSERT INTO m SELECT * FROM t WITHTARGET=device",
    "INSERT INTO m SELECT *, temp FROM t",
    "INSERT INTO m SELECT * FROM t WITHTAG(_key AS k)",
    "INSERT INTO m SELECT * FROM t WITHTIMESTAMP _offset",
    "INSERT INTO m SELECT _key.* FROM t",
    "INSERT INTO m SELECT missing FROM t",
])
def test_statements_it_does_not_cover_leave_the_topic_to_the_general_path(monkeypatch, kcql):
    direct, _general = _plans(_bench_like(), kcql, monkeypatch)
    _file, cls = _message_class(_bench_like())
    mt = pb.message_type(cls.DESCRIPTOR, cls, pb.converter(cls.DESCRIPTOR), "is not valid")
    assert mt.fields is not None
    assert compile_lines(direct.by_topic["t"], mt, lambda: 0) is None


def test_a_message_type_with_a_field_of_another_type_has_no_shape():
    text = 'syntax = "proto3"; package q; message M { int32 a = 1; bytes b = 2; } '
    _file, cls = _message_class(text)
    mt = pb.message_type(cls.DESCRIPTOR, cls, pb.converter(cls.DESCRIPTOR), "is not valid")
    assert mt.fields is None
    assert mt.record(cls(a=1)) == {"a": 1, "b": b""}
