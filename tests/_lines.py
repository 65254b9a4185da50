"""Lines of line protocol read back into points, so tests can state what a line holds as values.

Test code: the sink only writes lines. Reads what ``handler.lineproto`` writes (its escapes),
not every line InfluxDB accepts.
"""

from __future__ import annotations

from typing import Any

from handler.lineproto import Point


def _unescape(text: str, escapable: str) -> str:
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n and text[i + 1] in escapable:
            out.append(text[i + 1])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _split(text: str, seps: str, start: int = 0) -> int:
    """The index of the first separator in ``seps`` that no backslash escapes, from ``start``."""
    i, n = start, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c in seps:
            return i
        i += 1
    return n


def point_of(line: str) -> Point:
    """A line read back as a point: escapes undone, ``12i`` an int, ``true`` a bool, quoted text."""
    end = _split(line, ", ")
    point_tags: list[tuple[str, str]] = []
    measurement = _unescape(line[:end], ", ")
    while line[end] == ",":
        eq = _split(line, "=", end + 1)
        stop = _split(line, ", ", eq + 1)
        point_tags.append((_unescape(line[end + 1:eq], ",= "), _unescape(line[eq + 1:stop], ",= ")))
        end = stop
    fields: dict[str, Any] = {}
    i = end + 1
    while True:
        eq = _split(line, "=", i)
        key = _unescape(line[i:eq], ',= "')
        i = eq + 1
        if line[i] == '"':
            j = i + 1
            while line[j] != '"':
                j += 2 if line[j] == "\\" else 1
            fields[key] = _unescape(line[i + 1:j], '\\"')
            i = j + 1
        else:
            j = _split(line, ", ", i)
            raw = line[i:j]
            fields[key] = (int(raw[:-1]) if raw.endswith("i") else raw == "true" if raw in ("true", "false")
                           else float(raw))
            i = j
        if line[i] == " ":
            break
        i += 1
    return Point(measurement, point_tags, fields, int(line[i + 1:]))
