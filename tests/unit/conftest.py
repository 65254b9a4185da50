"""Unit tests start no server: the server fixtures of tests/conftest.py fail here, naming the fix."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def influx() -> None:
    pytest.fail("a unit test asked for a real InfluxDB: move it to tests/integration")


@pytest.fixture(scope="session")
def moto_server() -> None:
    pytest.fail("a unit test asked for moto's server: move it to tests/integration")
