"""The write layer's pure parts: where redelivery starts, what an answer means, URL credentials."""

from __future__ import annotations

from typing import Any

import pytest

from handler.delivery import first_failed_offsets
from handler.write.protocol import TOO_LARGE, about_points, batch_error, refusal
from handler.write.transport import Answer, HttpTarget, url_credentials


def test_first_failed_offset_is_the_lowest_per_partition_whatever_the_order():
    failed = [("t", 0, 7), ("t", 1, 3), ("t", 0, 5), ("u", 0, 9), ("t", 0, 6)]
    assert first_failed_offsets(failed) == {("t", 0): 5, ("t", 1): 3, ("u", 0): 9}
    assert first_failed_offsets([]) == {}


@pytest.mark.parametrize(("answer", "points"), [
    (Answer(400, 'partial write: field type conflict: input field "v"'), True),
    (Answer(400, "unable to parse 'm v=': missing field value"), True),
    (Answer(413, ""), True),
    (Answer(422, "points beyond retention policy"), True),
    (Answer(400, "invalid consistency level"), False),  # about the request: splitting cannot help
    (Answer(404, "database not found"), False),
    (Answer(503, ""), False),
])
def test_only_answers_about_points_split_the_request(answer, points):
    assert about_points(answer) is points


def test_a_refused_point_alone_keeps_the_servers_reason():
    assert refusal(Answer(400, "  partial write: field type conflict  ")) == "partial write: field type conflict"
    assert refusal(Answer(413, "Request Entity Too Large")) == TOO_LARGE
    assert refusal(Answer(422, "")) == "HTTP 422"


@pytest.mark.parametrize(("answer", "retryable"), [
    (Answer(400, "invalid consistency level"), False),
    (Answer(500, "retention policy not found: nope"), False),
    (Answer(401, "authorization failed"), False),
    (Answer(404, "database not found"), False),
    (Answer(429, "", retry_after=2.0), True),
    (Answer(503, ""), True),
])
def test_batch_errors_say_whether_a_retry_can_help(answer, retryable):
    err = batch_error(answer)
    assert err.status == answer.status and err.retryable is retryable
    assert err.retry_after == (answer.retry_after if retryable else None)


def test_url_credentials_are_percent_decoded_and_never_in_a_bad_url_error():
    assert url_credentials("http://ad%40min:p%2Fss@db:8086") == ("ad@min", "p/ss")
    assert url_credentials("http://db:8086") is None
    with pytest.raises(ValueError) as raised:
        HttpTarget("ftp://admin:s3cret@db")
    assert "s3cret" not in str(raised.value)


class _HeldProtocol:
    """A protocol whose first request waits until the test lets it go, recording each body."""

    def __init__(self) -> None:
        import threading

        self.bodies: list[bytes] = []
        self.first_sent = threading.Event()
        self.release = threading.Event()

    def send(self, lines: Any, body: bytes | None, at: float | None) -> Any:
        from handler.write.protocol import request_body
        from handler.write.transport import Answer

        self.bodies.append(body if body is not None else request_body(list(lines)))
        if len(self.bodies) == 1:
            self.first_sent.set()
            assert self.release.wait(10)
        return Answer(204, "")

    def refused_lines(self, answer: Any, sent: int) -> None:
        return None

    def set_credentials(self, username: str | None, password: str | None, token: str | None) -> None:
        pass

    def close(self) -> None:
        pass


def test_pieces_handed_on_while_a_request_is_out_go_as_one_request_of_up_to_a_chunk():
    """The writer thread joins the waiting pieces, in order, never past a chunk; every line is
    sent once."""
    from handler.write.schedule import Writer

    proto = _HeldProtocol()
    lines: list[str] = []
    session = Writer(proto, chunk_lines=5).session(lines, deadline=None, overlap=True)  # type: ignore[arg-type]

    def piece(n: int) -> None:
        lines.extend(f"m v={len(lines) + i}i" for i in range(n))
        session.offer_rest()

    piece(2)
    assert proto.first_sent.wait(10)
    for n in (2, 2, 2, 1):  # waiting while the first request is out: 2+2 join, 2+1 join
        piece(n)
    proto.release.set()
    session.flush()
    report = session.wait()
    sent = [body.decode().splitlines() for body in proto.bodies]
    assert [len(b) for b in sent] == [2, 4, 3]
    assert [line for b in sent for line in b] == lines
    assert report.requests == 3 and report.error is None
