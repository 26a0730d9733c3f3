"""One retry state machine for both API clients: what "never sent" means, and when a request may go again.

Both clients send one request at a time and must decide, after each outcome, between four things: it is
done, it failed for good, wait and send again, or fetch a new token and send again. The loop here owns the
mechanics every API shares (counting tries per kind, the backoff schedule, honouring an API's own wait with
a ceiling, sleeping, refreshing, giving up with the error the API client chose); each client keeps only
its API's *classification* of an outcome (Marketo's error codes, Dataverse's statuses).

Resending is the dangerous part: a request that reached the server may have been processed even if the
answer never came back, so a create sent twice creates two records. A request is resent when it is
``resend_safe`` (the caller says repeating it cannot duplicate anything: reads, upserts by key, updates by
id) or when :func:`never_sent` proves it never left this machine.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Generic, NoReturn, TypeAlias, TypeVar

import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from mktdyn_common.backoff import Backoff

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

#: Failures raised before any byte of the request was written: the connection itself was never made.
_BEFORE_SENDING = (requests.ConnectTimeout, NewConnectionError, ConnectTimeoutError)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it wraps, as requests and urllib3 wrap them.

    requests wraps urllib3's ``MaxRetryError`` in ``args[0]``, which names its cause in ``reason``; a
    proxy failure names its own in ``original_error``; ``raise ... from`` sets ``__cause__``. The implicit
    ``__context__`` is *not* followed: it records what was being handled when the error happened, not
    what caused it, so an earlier, unrelated connect failure must not make a later one look unsent.
    """
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        links = (current.__cause__, getattr(current, "reason", None), getattr(current, "original_error", None))
        pending.extend(link for link in (*links, *current.args) if isinstance(link, BaseException))


def never_sent(exc: BaseException) -> bool:
    """Whether a failed request certainly never reached the server, so sending it again cannot double it.

    True only when the connection was never established: a connect time-out, a refused connection, a host
    name that does not resolve (urllib3's ``NameResolutionError`` is a ``NewConnectionError``), a proxy that
    could not be reached. Anything later is in doubt: a reset or read time-out can come after the server
    applied the request. A TLS failure (``SSLError``) is in doubt too: most happen in the handshake, but the
    same exception reports a TLS record error while the response is read, after the request went out; the
    clients never retry one anyway (it is a configuration error, see ``transport.tls_failure``).
    """
    return any(isinstance(link, _BEFORE_SENDING) for link in _causes(exc))


@dataclass(frozen=True)
class Budget:
    """One kind of retry (transient failure, rate limit, new token...) and how many of it one request may use.

    Attributes:
        name: What the tries are counted under (per request).
        limit: Tries of this kind allowed; the next one gives up.
        backoff: The waits before each try (1-based); None resends at once.
        max_wait: Ceiling of a wait the API asks for itself (``Retry-After``).
    """

    name: str
    limit: int
    backoff: Backoff | None = None
    max_wait: float = math.inf


@dataclass(frozen=True)
class Done(Generic[T]):
    """The outcome is the answer."""

    value: T


@dataclass(frozen=True)
class Fail:
    """The outcome is final: raise ``error`` (chained to ``cause`` when given)."""

    error: BaseException
    cause: BaseException | None = None


@dataclass(frozen=True)
class Retry:
    """Send again after a wait: the API's own (``wait``) or the budget's backoff, and never before ``at_least``.

    ``reason`` is what the caller's retry counter calls it, ``what`` (default: the reason) what the log line
    says; ``give_up(n)`` builds the error raised when this is try ``n`` of a budget already spent.
    """

    budget: Budget
    reason: str
    give_up: Callable[[int], BaseException]
    cause: BaseException | None = None
    wait: float | None = None
    at_least: float = 0.0
    level: int = logging.WARNING
    what: str = ""


@dataclass(frozen=True)
class Refresh:
    """The credentials were refused: drop the token and send again at once, within ``budget``."""

    budget: Budget
    reason: str
    give_up: Callable[[int], BaseException]
    cause: BaseException | None = None


#: What a per-API classifier says an outcome means.
Verdict: TypeAlias = Done[T] | Fail | Retry | Refresh
#: One try's outcome: the response, or the connection failure that stood in for it.
Outcome: TypeAlias = R | requests.ConnectionError | requests.Timeout


def _raise(error: BaseException, cause: BaseException | None) -> NoReturn:
    if cause is None:
        raise error
    raise error from cause


def run_with_retries(
    send: Callable[[], R],
    classify: Callable[[Outcome[R], Mapping[str, int]], Verdict[T]],
    *,
    label: str,
    sleep: Callable[[float], None],
    refresh: Callable[[], None],
    retries: Counter[str] | None = None,
) -> T:
    """Send until ``classify`` says done or fail, or a retry budget is spent.

    Args:
        send: One try; a connection failure or time-out it raises is classified like a response.
            Anything else it raises (a spent call budget, a refused token request) ends the loop as is.
        classify: The API's reading of one outcome, given the retries this request has used per budget
            (an error message may say how many tries were made).
        label: The request as log lines name it.
        sleep: Waits (tests pass a recorder).
        refresh: Drops the current token (:class:`Refresh`).
        retries: Counts every retry asked for by reason, across requests (the client's statistics).
    """
    spent: Counter[str] = Counter()
    while True:
        outcome: Outcome[R]
        try:
            outcome = send()
        except (requests.ConnectionError, requests.Timeout) as exc:
            outcome = exc
        verdict = classify(outcome, spent)
        if isinstance(verdict, Done):
            return verdict.value
        if isinstance(verdict, Fail):
            _raise(verdict.error, verdict.cause)
        budget = verdict.budget
        spent[budget.name] += 1
        if retries is not None:
            retries[verdict.reason] += 1
        tries = spent[budget.name]
        if tries > budget.limit:
            _raise(verdict.give_up(tries), verdict.cause)
        if isinstance(verdict, Refresh):
            logger.info("%s: %s; fetching a new token", label, verdict.reason)
            refresh()
            continue
        delay = _delay(verdict, tries)
        what = verdict.what or verdict.reason
        logger.log(verdict.level, "%s: %s; retry %d of %d in %.1f s", label, what, tries, budget.limit, delay)
        sleep(delay)


def _delay(verdict: Retry, tries: int) -> float:
    budget = verdict.budget
    if verdict.wait is not None:
        delay = min(verdict.wait, budget.max_wait)
    elif budget.backoff is not None:
        delay = budget.backoff.delay(tries)
    else:
        delay = 0.0
    return max(delay, verdict.at_least)
