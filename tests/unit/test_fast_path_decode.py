"""Issue 8: JSON payloads decoded by msgspec give exactly what ``json.loads`` gives.

``handler.decode._json_loads`` tries msgspec first and falls back to ``json.loads`` where msgspec
refuses; for any bytes, the result must be ``json.loads``'s: the same value with the same types
(int stays int of any size, -0.0 keeps its sign, the last duplicate key wins at the first one's
place) or an error of the same type and message.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handler.decode import Decoder, _json_loads
from handler.errors import RecordError
from handler.records import parse_event
from influx_sink_tools.eventgen import Rec, record_json


def canon(value: Any) -> Any:
    """A value with its exact types made comparable (NaN, -0.0, int vs float vs bool, key order)."""
    if isinstance(value, dict):
        return ("dict", [(k, canon(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [canon(v) for v in value])
    if isinstance(value, float):
        return ("float", repr(value))
    return (type(value).__name__, value)


def outcome(loads: Any, data: bytes) -> Any:
    try:
        return ("ok", canon(loads(data)))
    except (ValueError, RecursionError) as err:
        return ("error", type(err).__name__, str(err))


EDGES = [b'{"a":1,"b":2,"a":3}', b"2e400", b"-2e400", b"1e-400", b"-0", b"-0.0", b'"\x01"', b'"a\tb"', b"NaN",
         b"[Infinity, -Infinity]", b'"\\ud800"', b'"\\udc80x"', b"\xef\xbb\xbf{}", b"18446744073709551616",
         b"-9223372036854775809", b"9" * 5000, b"1.7976931348623157e308", b"1.7976931348623159e308",
         b"4.9e-324", b"2.4703282292062328e-324", b' {"a" : 1 } \n', b"\x00", b'{"a":1}x', b'"\xed\xa0\x80"',
         b"[1,]", b"123456789012345678901234567890.5", b"1E2", b"0.1e1", b'"\\u0000"', b"1.0", b'"\\/"',
         b"\xff", b"", b" ", b'"\xc3"', '{"é": "ü"}'.encode("utf-16"), '[1]'.encode("utf-32-le"),
         b"01", b"-", b"1.", b".5", b"1e", b"true", b"nul", b'{"a" 1}',
         b"0.30000000000000004", b"1e22", b"1e23", b"9007199254740993", b"-1.5e-7"]


@pytest.mark.parametrize("data", EDGES)
def test_edge_cases_decode_as_json_loads_does(data: bytes) -> None:
    assert outcome(_json_loads, data) == outcome(json.loads, data)


@pytest.mark.parametrize("depth", [100, 900, 980, 1000, 1100, 3000])
def test_deep_nesting_decodes_or_fails_as_json_loads_does(depth: int) -> None:
    def shallow(loads: Any, data: bytes) -> Any:  # the value itself is too deep to compare
        try:
            loads(data)
        except (ValueError, RecursionError) as err:
            return ("error", type(err).__name__, str(err))
        return ("ok",)

    for data in (b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth):
        assert shallow(_json_loads, data) == shallow(json.loads, data)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80),
              st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=4), inner, max_size=4)), max_leaves=12)


@settings(max_examples=400, deadline=None)
@given(value=json_values, ascii_only=st.booleans(), cut=st.integers(min_value=0, max_value=400),
       junk=st.binary(max_size=3))
def test_random_documents_and_their_mutations_decode_as_json_loads_does(value: Any, ascii_only: bool, cut: int,
                                                                        junk: bytes) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    for data in (text, text[:cut] + junk + text[cut:], text[:cut]):
        assert outcome(_json_loads, data) == outcome(json.loads, data)


@settings(max_examples=300, deadline=None)
@given(number=st.from_regex(r"-?(0|[1-9][0-9]{0,20})(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?", fullmatch=True))
def test_numbers_decode_to_the_same_int_or_float(number: str) -> None:
    data = number.encode()
    assert outcome(_json_loads, data) == outcome(json.loads, data)


def _record(value: bytes) -> Any:
    (rec,) = parse_event({"records": {"t-0": [record_json(Rec("t", 0, 1, value))]}})
    return rec


def test_decoder_value_keeps_its_errors_and_envelopes() -> None:
    dec = Decoder()
    with pytest.raises(RecordError) as info:
        dec.value(_record(b'{"a": 1'))
    assert info.value.kind == "decode"
    expected = outcome(json.loads, b'{"a": 1')[2]
    assert info.value.reason == f"value is not valid JSON: {expected}"
    assert dec.value(_record(b'{"schema": {"type": "int32"}, "payload": 5}')) == 5
    assert dec.value(_record(b'{"n": NaN, "big": 123456789012345678901234567890}'))["big"] == \
        123456789012345678901234567890
