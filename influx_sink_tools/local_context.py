"""The Lambda context object for running the handler outside Lambda (``influx-sink invoke``, ``consume``)."""

from __future__ import annotations

import time
import uuid


class LocalContext:
    """The parts of Lambda's context object the handler and Powertools read.

    The clock starts at creation: ``get_remaining_time_in_millis`` counts down from ``timeout_s``
    as Lambda's does, so the handler's deadlines behave as they would in the function.
    """

    function_version = "$LATEST"
    log_stream_name = "local"

    def __init__(self, timeout_s: float, function_name: str = "influx-sink-local", memory_limit_in_mb: int = 1024
                 ) -> None:
        self.function_name = function_name
        self.memory_limit_in_mb = memory_limit_in_mb
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))
