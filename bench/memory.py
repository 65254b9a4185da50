"""Child process of bench/run.py: peak memory of a process that handles 10,000-record batches.

    python bench/memory.py OUT.json EVENT.json [EVENT.json ...]

Like the Lambda runtime, it receives each event as JSON bytes and parses it, then calls the
handler; the first batch is the cold invocation. It reports the peak resident set size
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) and the resident size at each stage.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path


def rss_mb() -> float:
    """Current resident set size (VmRSS), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")  # pragma: no cover - Linux only


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


class Context:
    def __init__(self) -> None:
        self.end = time.monotonic() + 900

    def get_remaining_time_in_millis(self) -> int:
        return int((self.end - time.monotonic()) * 1000)


def main() -> int:
    out_path, events = sys.argv[1], sys.argv[2:]
    stages: dict[str, float] = {"interpreter": rss_mb()}
    from handler import app

    stages["imported"] = rss_mb()
    for i, path in enumerate(events):
        raw = Path(path).read_bytes()
        event = json.loads(raw)
        del raw
        if i == 0:
            stages["event parsed"] = rss_mb()
        response = app.lambda_handler(event, Context())
        if response != {"batchItemFailures": []}:
            raise SystemExit(f"handler reported failures: {str(response)[:300]}")
        del event, response
        stages[f"after batch {i + 1}"] = rss_mb()
    Path(out_path).write_text(json.dumps({"peak_mb": peak_mb(), "stages": stages}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
