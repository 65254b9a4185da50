"""The writer with one protocol per database (statements' DATABASE clauses): one request per
database in each chunk, retries and refreshed credentials per request, exact unwritten lines.

The protocol here records what it is asked to send and answers from a script; it stands in for a
server only to count requests and order them (the integration tests use a real InfluxDB 1.x)."""

from __future__ import annotations

from collections.abc import Sequence

from handler.write.protocol import request_body
from handler.write.schedule import Writer
from handler.write.transport import Answer


class Scripted:
    """Answers 204 unless ``answers`` says otherwise for its next request."""

    def __init__(self, name: str, log: list[tuple[str, list[str], bytes | None]], answers: list[Answer] | None = None
                 ) -> None:
        self.name, self.log, self.answers = name, log, list(answers or [])
        self.credentials: tuple[str | None, str | None, str | None] | None = None

    def send(self, lines: Sequence[str], body: bytes | None, at: float | None) -> Answer:
        self.log.append((self.name, list(lines), body))
        return self.answers.pop(0) if self.answers else Answer(204, "")

    def refused_lines(self, answer: Answer, sent: int) -> dict[int, str] | None:
        return None

    def set_credentials(self, username: str | None, password: str | None, token: str | None) -> None:
        self.credentials = (username, password, token)

    def close(self) -> None:
        pass


LINES = ["a0", "b0", "a1", "c0", "b1", "a2"]
TARGETS = [0, 1, 0, 2, 1, 0]


def writer(log: list, answers: dict[str, list[Answer]] | None = None, chunk: int = 100) -> Writer:
    protos = [Scripted(n, log, (answers or {}).get(n)) for n in "abc"]
    return Writer(protos[0], chunk_lines=chunk, routes=protos)


def test_one_request_per_database_in_order_of_first_appearance():
    log: list = []
    session = writer(log).session(LINES, targets=TARGETS)
    session.flush()
    report = session.wait()
    assert [(n, ls) for n, ls, _ in log] == [("a", ["a0", "a1", "a2"]), ("b", ["b0", "b1"]), ("c", ["c0"])]
    assert report.requests == 3 and report.error is None


def test_a_chunk_of_one_database_keeps_its_ready_body():
    log: list = []
    session = writer(log).session(["a0", "a1"], targets=[1, 1])
    session.flush()
    session.wait()
    assert log == [("b", ["a0", "a1"], request_body(["a0", "a1"]))]


def test_a_retried_request_does_not_resend_the_databases_already_written():
    log: list = []
    w = writer(log, {"b": [Answer(503, "busy")]})
    session = w.session(LINES, targets=TARGETS, retries=True, retry_interval=0.0, sleep=lambda s: None)
    session.flush()
    report = session.wait()
    assert [n for n, _, _ in log] == ["a", "b", "b", "c"]
    assert report.retries == 1 and report.error is None


def test_a_batch_error_lists_the_failed_and_later_requests_lines_only():
    log: list = []
    session = writer(log, {"b": [Answer(404, "database not found")]}, chunk=6).session(
        [*LINES, "a3", "b2"], targets=[*TARGETS, 0, 1])
    session.offer()
    session.flush()
    report = session.wait()
    assert [n for n, _, _ in log] == ["a", "b"]  # c (same chunk) and the next chunk are not sent
    assert report.error is not None and report.error.status == 404
    assert report.unwritten == [1, 3, 4]  # b0, c0, b1: the a lines of the chunk are written
    assert report.unwritten_from == 6  # the next chunk: a3, b2


def test_refused_credentials_are_refreshed_once_for_every_database():
    log: list = []
    w = writer(log, {"a": [Answer(401, "unauthorized")], "b": [Answer(401, "unauthorized")]})
    calls = []

    def refresh() -> bool:
        calls.append(1)
        w.set_credentials("u", "p", None)
        return True

    w.refresh_credentials = refresh
    session = w.session(LINES, targets=TARGETS)
    session.flush()
    report = session.wait()
    # a: 401, refreshed, resent; b: 401 again — the session refreshes once, so b fails.
    assert [n for n, _, _ in log] == ["a", "a", "b"] and len(calls) == 1
    assert all(p.credentials == ("u", "p", None) for p in w.routes)
    assert report.error is not None and report.unwritten == [1, 3, 4]
