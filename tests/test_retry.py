"""The shared retry state machine (``mktdyn_common.retry``) and its "never sent" rule, table-style.

Pure and fast: the loop is driven by scripted verdicts and a recording ``sleep``; ``never_sent`` is checked on
exceptions built the way requests and urllib3 build them, and on two real failures against loopback sockets
(a refused connection: never sent; a server that takes the request and never answers: in doubt).
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from mktdyn_common.backoff import Backoff
from mktdyn_common.retry import Budget, Done, Fail, Outcome, Refresh, Retry, Verdict, never_sent, run_with_retries
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
)
from urllib3.exceptions import SSLError as Urllib3SSLError


def _refused() -> NewConnectionError:
    return NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")  # type: ignore[arg-type]


def _wrapped(reason: Exception) -> MaxRetryError:
    return MaxRetryError(None, "/api/data/v9.2/leads", reason)  # type: ignore[arg-type]


def _chained_from(cause: Exception) -> requests.ConnectionError:
    try:
        raise requests.ConnectionError("wrapped") from cause
    except requests.ConnectionError as exc:
        return exc


def _in_handling_of(earlier: Exception) -> requests.ConnectionError:
    try:
        try:
            raise earlier
        except type(earlier):
            raise requests.ConnectionError("Connection reset by peer")  # noqa: B904  (the implicit context is the point)
    except requests.ConnectionError as exc:
        return exc


NEVER_SENT_CASES: list[tuple[str, BaseException, bool]] = [
    ("connect time-out", requests.ConnectTimeout(_wrapped(ConnectTimeoutError(None, "timed out"))), True),
    ("connect time-out, bare", requests.ConnectTimeout("timed out"), True),
    ("connection refused", requests.ConnectionError(_wrapped(_refused())), True),
    (
        "host name does not resolve",
        requests.ConnectionError(
            _wrapped(NameResolutionError("crm.example", None, socket.gaierror(-2, "Name or service not known")))  # type: ignore[arg-type]
        ),
        True,
    ),
    (
        "proxy unreachable",
        requests.exceptions.ProxyError(_wrapped(ProxyError("Unable to connect to proxy", _refused()))),
        True,
    ),
    ("refusal chained with raise-from", _chained_from(_refused()), True),
    (
        "reset after sending",
        requests.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))),
        False,
    ),
    ("read time-out", requests.ReadTimeout(ReadTimeoutError(None, "/", "Read timed out.")), False),  # type: ignore[arg-type]
    (
        "TLS failure (may come while the response is read)",
        requests.exceptions.SSLError(_wrapped(Urllib3SSLError("certificate verify failed"))),
        False,
    ),
    ("bare connection error", requests.ConnectionError("Connection reset by peer"), False),
    ("a refusal only in the implicit context", _in_handling_of(_refused()), False),
]


@pytest.mark.parametrize(("case", "exc", "expected"), NEVER_SENT_CASES, ids=[row[0] for row in NEVER_SENT_CASES])
def test_never_sent(case: str, exc: BaseException, expected: bool) -> None:
    assert never_sent(exc) is expected, case


def test_a_real_refused_connection_was_never_sent() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(requests.ConnectionError) as caught:
        requests.post(f"http://127.0.0.1:{port}/leads", json={"lastname": "x"}, timeout=2)
    assert never_sent(caught.value)


def test_a_real_request_left_unanswered_is_in_doubt() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)  # the kernel completes the handshake; the request is sent and never answered
        port = server.getsockname()[1]
        with pytest.raises(requests.ReadTimeout) as caught:
            requests.post(f"http://127.0.0.1:{port}/leads", json={"lastname": "x"}, timeout=(2, 0.2))
    assert not never_sent(caught.value)


# -- the loop ----------------------------------------------------------------------------------------
class GaveUpError(Exception):
    """The error a spent budget raises in these tests; it says how many tries were counted."""


def _give_up(n: int) -> GaveUpError:
    return GaveUpError(f"gave up at try {n}")


TRANSIENT = Budget("transient", limit=2, backoff=Backoff(base=1.0, cap=8.0, attempts=2), max_wait=30.0)
THROTTLE = Budget("throttle", limit=3, backoff=None)
TOKEN = Budget("token", limit=1)


def again(reason: str = "HTTP 503", **kwargs: Any) -> Retry:
    return Retry(TRANSIENT, reason, _give_up, **kwargs)


def throttled(**kwargs: Any) -> Retry:
    return Retry(THROTTLE, "code-606", _give_up, **kwargs)


REFRESH = Refresh(TOKEN, "code-601", _give_up)


@dataclass
class Script:
    """A classifier that answers with scripted verdicts, recording what the loop showed it."""

    verdicts: list[Verdict[str]]
    seen: list[tuple[object, dict[str, int]]] = field(default_factory=list)

    def __call__(self, outcome: Outcome[str], spent: Mapping[str, int]) -> Verdict[str]:
        self.seen.append((outcome, dict(spent)))
        return self.verdicts[len(self.seen) - 1]


@dataclass
class Run:
    sleeps: list[float] = field(default_factory=list)
    refreshes: int = 0
    sends: int = 0
    retries: Counter[str] = field(default_factory=Counter)

    def go(self, script: Script, outcomes: Iterator[str | Exception] | None = None) -> str:
        def send() -> str:
            self.sends += 1
            outcome = next(outcomes) if outcomes else "response"
            if isinstance(outcome, Exception):
                raise outcome
            return outcome

        def refresh() -> None:
            self.refreshes += 1

        return run_with_retries(
            send, script, label="GET leads", sleep=self.sleeps.append, refresh=refresh, retries=self.retries
        )


#: (case, verdicts, result or error text, sleeps, refreshes)
LOOP_CASES: list[tuple[str, list[Verdict[str]], str, list[float], int]] = [
    ("done at once", [Done("ok")], "ok", [], 0),
    ("the API's wait is honoured", [again(wait=2.0), again(wait=0.0), Done("ok")], "ok", [2.0, 0.0], 0),
    ("the API's wait has a ceiling", [again(wait=900.0), Done("ok")], "ok", [30.0], 0),
    ("never sooner than at_least", [again(wait=1.0, at_least=5.0), Done("ok")], "ok", [5.0], 0),
    ("no backoff and no wait: at once", [throttled(), Done("ok")], "ok", [0.0], 0),
    (
        "a spent budget gives up, counting the try",
        [again(wait=1.0)] * 3,
        "GaveUpError: gave up at try 3",
        [1.0, 1.0],
        0,
    ),
    (
        "budgets are counted apart",
        [again(wait=1.0), throttled(), throttled(), again(wait=1.0), throttled(), Done("ok")],
        "ok",
        [1.0, 0.0, 0.0, 1.0, 0.0],
        0,
    ),
    ("a refused token: refresh, no sleep", [REFRESH, Done("ok")], "ok", [], 1),
    ("a second refusal gives up", [REFRESH, REFRESH], "GaveUpError: gave up at try 2", [], 1),
    ("fail is final", [again(wait=1.0), Fail(ValueError("bad request"))], "ValueError: bad request", [1.0], 0),
]


@pytest.mark.parametrize(
    ("case", "verdicts", "expected", "sleeps", "refreshes"), LOOP_CASES, ids=[row[0] for row in LOOP_CASES]
)
def test_the_loop_does_what_the_verdicts_say(
    case: str, verdicts: list[Verdict[str]], expected: str, sleeps: list[float], refreshes: int
) -> None:
    run = Run()
    try:
        result = run.go(Script(verdicts))
    except (GaveUpError, ValueError) as exc:
        result = f"{type(exc).__name__}: {exc}"
    assert (result, run.sleeps, run.refreshes, run.sends) == (expected, sleeps, refreshes, len(verdicts)), case


def test_backoff_waits_follow_the_budget_schedule() -> None:
    run = Run()
    run.go(Script([again(), again(), Done("ok")]))
    first, second = run.sleeps
    assert 0.5 <= first <= 1.0  # base 1 s with jitter in the upper half
    assert 1.0 <= second <= 2.0


def test_the_classifier_sees_the_tries_spent_and_a_connection_failure_as_the_outcome() -> None:
    reset = requests.ConnectionError("Connection reset by peer")
    script = Script([again("connection", wait=0.0), again(wait=0.0), Done("ok")])
    run = Run()
    outcomes: list[str | Exception] = [reset, "503 page", "200 page"]
    assert run.go(script, iter(outcomes)) == "ok"
    assert script.seen == [(reset, {}), ("503 page", {"transient": 1}), ("200 page", {"transient": 2})]
    assert run.retries == {"connection": 1, "HTTP 503": 1}


def test_anything_else_send_raises_ends_the_loop_unclassified() -> None:
    script = Script([Done("never asked")])
    with pytest.raises(KeyError):
        Run().go(script, iter([KeyError("budget spent")]))
    assert script.seen == []


def test_fail_and_give_up_chain_their_cause() -> None:
    cause = requests.ConnectionError("reset")
    with pytest.raises(ValueError, match="in doubt") as failed:
        Run().go(Script([Fail(ValueError("in doubt"), cause)]))
    assert failed.value.__cause__ is cause
    with pytest.raises(GaveUpError) as gave_up:
        Run().go(Script([Retry(TRANSIENT, "connection", _give_up, cause, wait=0.0)] * 3))
    assert gave_up.value.__cause__ is cause


def test_the_log_line_names_the_request_the_failure_and_the_try(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="mktdyn_common.retry")
    Run().go(Script([again("http-5xx", wait=1.5, what="HTTP 502"), REFRESH, Done("ok")]))
    assert caplog.messages == [
        "GET leads: HTTP 502; retry 1 of 2 in 1.5 s",
        "GET leads: code-601; fetching a new token",
    ]
