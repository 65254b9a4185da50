"""Lambda entry point: ``lambda_handler(event, context)``. It only wires the stages together."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit

from handler import runtime as _runtime_mod
from handler.delivery import BatchResult, run_batch
from handler.errors import BatchFailed
from handler.records import parse_event

logger = Logger(service="influx-sink")
copy_config_to_registered_loggers(source_logger=logger, include={"handler", "handler.delivery",
                                                                 "handler.mapping"})
metrics = Metrics(namespace="InfluxSink", service="influx-sink")

SAFETY_MARGIN_S = 2.0  # stop retrying this long before Lambda's own timeout
_runtime: _runtime_mod.Runtime | None = None


def get_runtime() -> _runtime_mod.Runtime:
    """Build settings, plan and writer on the first call (cold start); reuse them after."""
    global _runtime
    if _runtime is None:
        rt = _runtime_mod.build()
        logger.info("influx-sink settings:\n  " + "\n  ".join(rt.settings.describe()))
        _runtime = rt
    elif _runtime.ssm_values is not None:
        rt = _runtime_mod.refresh(_runtime)
        if rt is not _runtime:
            logger.info("influx-sink settings:\n  " + "\n  ".join(rt.settings.describe()))
            _runtime = rt
    return _runtime


def reset_runtime() -> None:
    """Forget the warm runtime (tests, and the local runner after settings change)."""
    global _runtime
    if _runtime is not None:
        _runtime.writer.close()
    _runtime = None


def _deadline(context: Any) -> float | None:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    margin = min(SAFETY_MARGIN_S, remaining() / 1000 / 10)
    return time.monotonic() + remaining() / 1000 - margin


def _emit_metrics(result: BatchResult) -> None:
    metrics.add_metric("RecordsReceived", MetricUnit.Count, result.received)
    metrics.add_metric("PointsWritten", MetricUnit.Count, result.points)
    metrics.add_metric("TombstonesSkipped", MetricUnit.Count, result.tombstones)
    metrics.add_metric("NonFiniteFieldsSkipped", MetricUnit.Count, result.non_finite)
    metrics.add_metric("WriteLatency", MetricUnit.Milliseconds, result.write_seconds * 1000)
    metrics.add_metric("WriteRetries", MetricUnit.Count, result.write_retries)
    for kind, n in Counter(f.kind for f in result.failures).items():
        metrics.add_metric(f"RecordsFailed_{kind}", MetricUnit.Count, n)


@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    rt = get_runtime()
    records = parse_event(event)
    settings = rt.settings
    try:
        result = run_batch(records, rt.plan, rt.writer, settings.error_policy,
                           deadline=_deadline(context), retry_interval=settings.retry_interval_ms / 1000)
    except BatchFailed as err:
        metrics.add_metric("RecordsReceived", MetricUnit.Count, len(records))
        for kind, n in Counter(f.kind for f in err.failures).items():
            metrics.add_metric(f"RecordsFailed_{kind}", MetricUnit.Count, n)
        logger.error(str(err), extra={"failures": [str(f) for f in err.failures[:50]]})
        raise
    _emit_metrics(result)
    if settings.progress_enabled:
        counts = Counter(r.topic for r in records)
        logger.info(f"Received {len(records)} record(s); written {result.written_records}",
                    extra={"per_topic": dict(counts)})
    return result.response
