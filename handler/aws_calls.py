"""AWS API calls (Glue's GetSchemaVersion, Parameter Store's GetParametersByPath) inside the deadline.

botocore's waits are set per client (``Config(connect_timeout, read_timeout)``) and by default
retried several times, and its DNS look-up has no timeout at all. So each call here:

- runs on a client whose connect and read timeouts are cut to the time left when the deadline
  is nearer than the usual timeouts (a fresh client then: a client's timeouts cannot change),
  with no retry of its own (one attempt: the event source, or the next invocation, retries);
- is waited for at most the time left (``deadline.call_within``), which also bounds the DNS
  look-up and a call made of several requests (pages).

botocore's timeouts become ``WaitTimedOut`` naming connect or read. boto3 is imported only here,
and this module only by the paths that talk to AWS.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from handler.deadline import BY_DEADLINE, call_within, process_limit
from handler.errors import WaitTimedOut

T = TypeVar("T")

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 10.0
_USUAL = f"the {CONNECT_TIMEOUT_S:g}s connect and {READ_TIMEOUT_S:g}s read timeouts of AWS calls"
_HEADROOM_S = 0.1  # botocore's own timeout fires first, so the error can say connect or read

_clients: dict[tuple[str, str | None, str | None], Any] = {}  # the usual-timeout clients, kept


def make_client(service: str, region: str | None, endpoint: str | None, connect_s: float, read_s: float) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=connect_s, read_timeout=read_s,
                    retries={"total_max_attempts": 1, "mode": "standard"})
    return boto3.client(service, region_name=region, endpoint_url=endpoint, config=config)


def usual_client(service: str, region: str | None = None, endpoint: str | None = None) -> Any:
    """The kept client of a service with the usual timeouts."""
    key = (service, region, endpoint)
    client = _clients.get(key)
    if client is None:
        client = _clients[key] = make_client(service, region, endpoint, CONNECT_TIMEOUT_S, READ_TIMEOUT_S)
    return client


def clear_clients() -> None:
    _clients.clear()


def call(service: str, peer: str, what: str, fn: Callable[[Any], T], *, region: str | None = None,
         endpoint: str | None = None) -> T:
    """``fn(client)`` for ``service``, every wait ending before the invocation's deadline.

    ``WaitTimedOut`` (naming ``peer``) when it does not finish in time, ``NoTimeLeft`` (naming
    ``what``) when no time is left to start; botocore's other errors pass through.
    """
    from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

    total = process_limit(CONNECT_TIMEOUT_S + READ_TIMEOUT_S, _USUAL, what)
    if total.reason == BY_DEADLINE:
        # Making a client takes time (boto3's import and service model: a second or more on a
        # busy cold start), and its timeouts are fixed when it is made: so the time left is read
        # again once it exists, and a client whose timeouts no longer fit is made again (faster:
        # the model is loaded by then).
        for _attempt in range(3):
            each = max(total.seconds - _HEADROOM_S, total.seconds / 2)
            connect = min(CONNECT_TIMEOUT_S, each)
            read = min(READ_TIMEOUT_S, each)
            client = make_client(service, region, endpoint, connect, read)
            total = process_limit(CONNECT_TIMEOUT_S + READ_TIMEOUT_S, _USUAL, what)
            if max(connect, read) <= total.seconds:
                break
        reason = BY_DEADLINE
    else:
        connect, read = CONNECT_TIMEOUT_S, READ_TIMEOUT_S
        client = usual_client(service, region, endpoint)
        reason = _USUAL
    try:
        return call_within(lambda: fn(client), total.seconds)
    except ConnectTimeoutError:
        raise WaitTimedOut("connect", peer, connect, reason) from None
    except ReadTimeoutError:
        raise WaitTimedOut("read", peer, read, reason) from None
    except TimeoutError:  # call_within's: DNS look-up, or several requests together
        raise WaitTimedOut("read", peer, total.seconds, total.reason, "the whole call") from None
