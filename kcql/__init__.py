"""KCQL, the SQL-like mapping language of the Stream Reactor InfluxDB sink.

``parse(text)`` turns a ``connect.influx.kcql`` value into frozen statements (``kcql.ast``) or
raises ``KcqlSyntaxError`` naming line, column and what was expected. The package does no I/O
and knows nothing of InfluxDB or Lambda: the handler compiles the statements into a plan.
"""

from kcql.ast import ConstantTag, Path, PathTag, SelectField, Source, Statement, TimeUnit
from kcql.errors import KcqlError, KcqlSyntaxError
from kcql.grammar import parse

__all__ = [
    "ConstantTag",
    "KcqlError",
    "KcqlSyntaxError",
    "Path",
    "PathTag",
    "SelectField",
    "Source",
    "Statement",
    "TimeUnit",
    "parse",
]
