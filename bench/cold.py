"""Child process of bench/run.py: one cold start, timed from inside the fresh process.

    python bench/cold.py handler   # import handler.app, handle a 1-record batch (settings from env)
    python bench/cold.py boto3     # import boto3, nothing else

Prints ``{"import": s, "first_call": s, "total": s, "heavy": [...]}`` to stderr; ``heavy`` says
which of boto3, botocore.client, fastavro, influxdb_client, urllib3, kafka got imported: none
should be on this path (Powertools imports the bare ``botocore`` package: 0.4 ms). The event is
passed in ``BENCH_EVENT`` (JSON), so building it costs this process nothing but one
``json.loads`` (which the Lambda runtime does too).
"""

import sys
import time

t0 = time.perf_counter()


def main() -> int:
    what = sys.argv[1]
    if what == "boto3":
        import boto3  # noqa: F401

        t1 = time.perf_counter()
        t2 = t1
    else:
        from handler import app

        t1 = time.perf_counter()
        import json
        import os

        response = app.lambda_handler(json.loads(os.environ["BENCH_EVENT"]), None)
        t2 = time.perf_counter()
        if response != {"batchItemFailures": []}:
            raise SystemExit(f"handler reported failures: {response}")
    heavy = [m for m in ("boto3", "botocore.client", "fastavro", "influxdb_client", "urllib3", "kafka")
             if m in sys.modules]
    sys.stderr.write(f'BENCH {{"import": {t1 - t0}, "first_call": {t2 - t1}, "total": {t2 - t0}, '
                     f'"heavy": {heavy!r}}}\n'.replace("'", '"'))
    return 0


if __name__ == "__main__":
    sys.exit(main())
