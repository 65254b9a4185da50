"""The cost model of docs/performance.md (bench/model.py): its arithmetic and the claims its text makes."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_model", ROOT / "bench" / "model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up while being made
    spec.loader.exec_module(module)
    return module


def kind(model: ModuleType, cpu_us: float = 10.0, ingest_us: float = 7.0) -> object:
    return model.Kind("json", cpu_us / 1e6, 3 * cpu_us / 1e6, 390.0, ingest_us / 1e6)


def test_the_tail_is_the_handlers_last_piece(model):
    from handler.delivery import pieces

    assert model.last_piece() == 1000  # ten pieces of 1000 records for a 10,000-record batch
    assert model.last_piece(15) == 15 and model.last_piece(10_000, 1) == 1
    start, stop = list(pieces(10_000, 5000))[-1]
    assert model.last_piece() == stop - start


def test_batch_duration_stretches_the_cpu_part_below_one_vcpu_only(model):
    k = kind(model)
    tail = 1000 * 7e-6  # the last piece, at the ingest rate
    assert k.batch_s(1769) == pytest.approx(10_000 * 10e-6 + tail)
    assert k.batch_s(512) == pytest.approx(10_000 * 10e-6 * 1769 / 512 + tail)
    assert k.batch_s(3008) == pytest.approx(k.batch_s(1769))  # one thread maps: more memory is not faster


def test_below_one_vcpu_the_cpu_part_costs_the_same_gb_seconds(model):
    k = kind(model, ingest_us=0.0)  # no tail: only the CPU part
    assert k.gb_s_per_million(512) == pytest.approx(k.gb_s_per_million(1769))
    assert k.gb_s_per_million(1769) == pytest.approx(10e-6 * 1769 / 1024 * 1e6)


def test_cost_per_million_records_is_gb_seconds_and_invocations(model):
    k = kind(model)
    expected = k.gb_s_per_million(1024) * model.PRICE_GB_S + 100 * model.PRICE_REQUEST
    assert k.usd_per_million(1024) == pytest.approx(expected)


def test_scale_figures(model):
    k = kind(model)
    rate = 1_000_000
    assert k.concurrency(rate, 1769) == pytest.approx(100 * k.batch_s(1769))
    by_bytes = math.ceil(rate * 390 / 5_000_000)
    assert k.pollers(rate, 1769) == max(by_bytes, math.ceil(k.concurrency(rate, 1769) / 5))
    assert k.worker_vcpus(rate) == math.ceil(rate * 10e-6 / 0.7)
    assert k.worker_vcpus(1) == 1
