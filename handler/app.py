"""Lambda entry point: ``lambda_handler(event, context)``. It only wires the stages together."""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit

from handler import deadline
from handler import runtime as _runtime_mod
from handler.delivery import BatchResult, PartialItemFailureResponse, gc_paused, run_batch
from handler.errors import BatchFailed, ConfigError
from handler.records import parse_event

logger = Logger(service="influx-sink")
# Powertools copies its handler to top-level loggers only: "handler" takes it, and every module's
# logger below it (handler.delivery, handler.write.schedule, handler.decode.registry, handler.ssm, ...)
# propagates there, also those created later by lazy imports. So every line is the same JSON.
copy_config_to_registered_loggers(source_logger=logger, include={"handler"})
metrics = Metrics(namespace="InfluxSink", service="influx-sink")

SAFETY_MARGIN_S = 2.0  # every network wait ends this long before Lambda's own timeout (at most 1/10 of it)
# What Powertools' inject_lambda_context reads from the context, and the log keys it adds.
_CONTEXT_ATTRS = ("function_name", "memory_limit_in_mb", "invoked_function_arn", "aws_request_id")
_CONTEXT_KEYS = ["cold_start", "function_name", "function_memory_size", "function_arn", "function_request_id"]
_runtime: _runtime_mod.Runtime | None = None


def get_runtime() -> _runtime_mod.Runtime:
    """Build settings, plan and writer on the first call (cold start); reuse them after."""
    global _runtime
    if _runtime is None:
        rt = _runtime_mod.build()
        logger.info("influx-sink settings:\n  " + "\n  ".join(rt.settings.describe()))
        _runtime = rt
    elif _runtime.watched:  # Parameter Store or Secrets Manager
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
    """When every wait of this invocation must have ended: Lambda's remaining time less a safety
    margin, so the answer (RETRY's partial batch response, THROW's error) still gets out."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    left = remaining() / 1000
    return time.monotonic() + left - min(SAFETY_MARGIN_S, left / 10)


Handler = Callable[[dict[str, Any], Any], PartialItemFailureResponse]


def _with_request_id(handler: Handler) -> Handler:
    """Powertools' ``inject_lambda_context``: every log line of the invocation carries
    ``function_request_id`` (and ``cold_start``), so a failed record leads to its invocation.
    A context without those attributes (None from tests, a partial stand-in) runs the handler
    without them, and without the previous invocation's: the keys are removed."""
    injected = logger.inject_lambda_context(handler)

    @functools.wraps(handler)
    def run(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
        if all(hasattr(context, attr) for attr in _CONTEXT_ATTRS):
            result: PartialItemFailureResponse = injected(event, context)
            return result
        logger.remove_keys(_CONTEXT_KEYS)
        return handler(event, context)

    return run


def _records_in(event: Any) -> int:
    """How many records an event holds, without trusting its shape (it may be why we failed)."""
    try:
        return sum(len(group) for group in event["records"].values())
    except (KeyError, TypeError, AttributeError):
        return 0


def _emit_metrics(result: BatchResult) -> None:
    metrics.add_metric("RecordsReceived", MetricUnit.Count, result.received)
    metrics.add_metric("PointsWritten", MetricUnit.Count, result.points)
    metrics.add_metric("TombstonesSkipped", MetricUnit.Count, result.tombstones)
    metrics.add_metric("NonFiniteFieldsSkipped", MetricUnit.Count, result.non_finite)
    metrics.add_metric("PointsOverwrittenInRecord", MetricUnit.Count, result.overwritten)
    metrics.add_metric("WriteLatency", MetricUnit.Milliseconds, result.write_seconds * 1000)
    metrics.add_metric("WriteRetries", MetricUnit.Count, result.write_retries)
    for kind, n in Counter(f.kind for f in result.failures).items():
        metrics.add_metric(f"RecordsFailed_{kind}", MetricUnit.Count, n)


@metrics.log_metrics
@_with_request_id
def lambda_handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    deadline.set_deadline(_deadline(context))
    try:
        return _handle(event)
    finally:
        deadline.set_deadline(None)


def _handle(event: dict[str, Any]) -> PartialItemFailureResponse:
    # Every way out adds metrics: empty ones make Powertools warn on stderr, in plain text.
    try:
        rt = get_runtime()
    except Exception as err:
        n = _records_in(event)
        metrics.add_metric("RecordsReceived", MetricUnit.Count, n)
        if isinstance(err, ConfigError):  # every record fails with the settings
            metrics.add_metric("RecordsFailed_config", MetricUnit.Count, n)
            logger.error(str(err))
        else:
            logger.exception("the sink cannot start")
        raise
    # The batch's ~10,000 records and their lines hold no cycles: collections would find nothing,
    # and one right after parsing (its young objects past the threshold) delayed the first write.
    with gc_paused():
        return _batch(event, rt)


def _batch(event: dict[str, Any], rt: _runtime_mod.Runtime) -> PartialItemFailureResponse:
    try:
        records = parse_event(event)
    except Exception:
        metrics.add_metric("RecordsReceived", MetricUnit.Count, _records_in(event))
        logger.exception("the event cannot be read")
        raise
    settings = rt.settings
    try:
        result = run_batch(records, rt.plan, rt.writer, settings.error_policy,
                           deadline=deadline.current(), retry_interval=settings.retry_interval_ms / 1000)
    except BatchFailed as err:
        metrics.add_metric("RecordsReceived", MetricUnit.Count, len(records))
        for kind, n in Counter(f.kind for f in err.failures).items():
            metrics.add_metric(f"RecordsFailed_{kind}", MetricUnit.Count, n)
        logger.error(str(err), extra={"failures": [str(f) for f in err.failures[:50]]})
        raise
    except Exception:
        metrics.add_metric("RecordsReceived", MetricUnit.Count, len(records))
        logger.exception("the batch failed unexpectedly")
        raise
    _emit_metrics(result)
    if settings.progress_enabled:
        counts = Counter(r.topic for r in records)
        logger.info(f"Received {len(records)} record(s); written {result.written_records}",
                    extra={"per_topic": dict(counts)})
    return result.response
