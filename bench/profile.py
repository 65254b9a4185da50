"""Child process of bench/run.py: where a warm 10,000-record batch spends its time.

    python bench/profile.py KIND STAGES.json [TREE.txt]   (settings from the environment)

Stages are timed without a profiler (median of 7, each stage on its own over the whole batch,
garbage collector paused as it is not in the way of any one stage in particular):
parse_event, the decoder alone (as the mapping stage calls it: a Protobuf value of a known type is
its message, whose fields the mapping writes straight), decoder + mapping and encoding (``Plan.lines``, what the handler
runs), the request bodies, and the whole handler: its wall time and its CPU time
(``time.process_time``, every thread of the process), which is the cost model's input
(docs/performance.md). With TREE.txt, pyinstrument's tree of one more handler call goes there
too (a sampling profiler's own overhead inflates the many small calls: read it for proportions,
the stage table for times).
"""

from __future__ import annotations

import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workload
from warm import Context


def timed(fn: Callable[[], Any], n: int = 7) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(n):
        gc.collect()
        gc.disable()
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
        gc.enable()
    return statistics.median(times), out


def main() -> int:
    kind, stages_out = sys.argv[1], sys.argv[2]
    tree_out = sys.argv[3] if len(sys.argv) > 3 else None
    from handler import app
    from handler.delivery import gc_paused
    from handler.records import parse_event

    app.lambda_handler(workload.make_event(kind, 900)[0], Context())
    plan = app.get_runtime().plan
    event = workload.make_event(kind, 901)[0]
    def parse() -> list[Any]:
        with gc_paused():  # as the handler parses an event
            return parse_event(event)

    t_parse, records = timed(parse)
    t_decode, _ = timed(lambda: [plan.decoder.value_or_message(r) for r in records])  # as the mapping asks
    t_lines, lines = timed(lambda: [line for r in records for line in plan.lines(r)])
    t_body, _ = timed(lambda: ("\n".join(lines) + "\n").encode())
    handler_times, cpu_times = [], []
    event_bytes = len(json.dumps(event))
    for rep in range(7):
        ev = workload.make_event(kind, 910 + rep)[0]
        gc.collect()
        c0, t0 = time.process_time(), time.perf_counter()
        app.lambda_handler(ev, Context())
        handler_times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)  # every thread of this process: the writer's too
    Path(stages_out).write_text(json.dumps({
        "parse_event": t_parse, "decode": t_decode, "lines": t_lines - t_decode,
        "bodies": t_body, "handler": statistics.median(handler_times),
        "handler_cpu": statistics.median(cpu_times), "records": workload.BATCH, "event_bytes": event_bytes}))
    if tree_out:
        from pyinstrument import Profiler

        event = workload.make_event(kind, 920)[0]
        profiler = Profiler(interval=0.0005)
        profiler.start()
        app.lambda_handler(event, Context())
        profiler.stop()
        Path(tree_out).write_text(profiler.output_text(unicode=False, color=False, show_all=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
