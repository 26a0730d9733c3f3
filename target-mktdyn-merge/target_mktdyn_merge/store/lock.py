"""The store's write lock: one run at a time merges and writes back (docs/architecture.md §7).

Meltano refuses to start a job whose state id is already running, but only with a shared state backend and
only for the same job name; a second scheduler, a manual run or a retried task gets past it. The store is
what two runs share, so the lock lives there. Either kind of lock dies with the run that holds it, so a
crashed run never leaves the store locked:

- PostgreSQL: a session advisory lock held on a dedicated connection; the server releases it when that
  connection closes, which it does when the process dies.
- SQLite file: ``flock`` on ``<database>.lock`` beside the database; the kernel releases it with the process.
- SQLite in memory: the database lives in this process only, so a process-local lock is enough.
"""

from __future__ import annotations

import fcntl
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from mktdyn_common.errors import MktdynError

from target_mktdyn_merge.store.connection import StoreError
from target_mktdyn_merge.store.database import Store

#: PostgreSQL advisory lock key of the write phase (advisory keys are per database, so per store).
WRITE_LOCK_KEY = 0x6D6B7464796E0002
POLL_SECONDS = 0.25

_LOGGER = logging.getLogger(__name__)
_memory_locks: weakref.WeakKeyDictionary[Store, threading.Lock] = weakref.WeakKeyDictionary()
_memory_locks_guard = threading.Lock()

#: Try to take the lock once, without blocking; True when taken.
Acquire = Callable[[], bool]
#: Give the lock back (``True``: it was taken) and close what was opened for it.
Release = Callable[[bool], None]


class StoreLockedError(MktdynError):
    """Another run holds the store's write lock; this run stops before it writes anything."""

    def __init__(self, store: Store, wait: bool, timeout_seconds: float) -> None:
        if wait:
            reason = f"it was still held after {timeout_seconds:g} s (setting 'lock_timeout_seconds')"
        else:
            reason = "setting 'lock_wait' is false, so this run does not wait for it"
        super().__init__(
            f"another run holds the write lock of the store at {store.safe_url}; {reason}; "
            "this run wrote nothing and exits"
        )


@contextmanager
def write_lock(
    store: Store,
    wait: bool,
    timeout_seconds: float,
    *,
    poll_seconds: float = POLL_SECONDS,
    logger: logging.Logger | None = None,
) -> Iterator[None]:
    """Hold the store's exclusive write lock for the ``with`` block.

    Args:
        store: the store both runs share.
        wait: wait for another run to finish (up to ``timeout_seconds``) instead of failing at once.
        timeout_seconds: how long to wait before giving up, when ``wait``.
        poll_seconds: how often to try again while waiting (no lock kind here can block with a timeout).
        logger: where to say that this run is waiting (the target passes its own).

    Raises:
        StoreLockedError: the lock is held by another run (and ``wait`` is false or the wait timed out).
    """
    log = logger or _LOGGER
    try:
        acquire, release = _lock_kind(store)
        try:
            deadline = time.monotonic() + max(0.0, timeout_seconds)
            said = False
            while not acquire():
                if not wait or time.monotonic() >= deadline:
                    raise StoreLockedError(store, wait, timeout_seconds)
                if not said:
                    log.warning("another run holds the store's write lock; waiting up to %g s", timeout_seconds)
                    said = True
                time.sleep(max(0.0, min(poll_seconds, deadline - time.monotonic())))
        except BaseException:
            release(False)
            raise
    except (sa.exc.SQLAlchemyError, OSError) as exc:
        raise StoreError(f"cannot take the write lock of the store at {store.safe_url}: {exc}") from exc
    if said:
        log.info("store write lock acquired")
    try:
        yield
    finally:
        release(True)


def _lock_kind(store: Store) -> tuple[Acquire, Release]:
    """The lock that fits the store's backend."""
    if not store.is_sqlite:
        return _postgres_lock(store)
    database = sa.engine.make_url(store.url).database
    if database in (None, "", ":memory:"):
        return _memory_lock(store)
    return _file_lock(Path(f"{database}.lock"))


def _postgres_lock(store: Store) -> tuple[Acquire, Release]:
    """A session advisory lock on a connection of its own, in autocommit (no transaction stays open)."""
    connection = store.engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    def acquire() -> bool:
        return bool(connection.execute(sa.select(sa.func.pg_try_advisory_lock(WRITE_LOCK_KEY))).scalar())

    def release(held: bool) -> None:
        try:
            if held:
                connection.execute(sa.select(sa.func.pg_advisory_unlock(WRITE_LOCK_KEY)))
        finally:
            # Never hand a connection that may still hold the lock back to the pool: close it for good.
            connection.invalidate()
            connection.close()

    return acquire, release


def _file_lock(path: Path) -> tuple[Acquire, Release]:
    """``flock`` on a lock file beside the database (not the database file: SQLite locks that itself)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a")

    def acquire() -> bool:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def release(held: bool) -> None:
        try:
            if held:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        finally:
            handle.close()

    return acquire, release


def _memory_lock(store: Store) -> tuple[Acquire, Release]:
    """One lock per in-memory store object (its database is private to it)."""
    with _memory_locks_guard:
        lock = _memory_locks.setdefault(store, threading.Lock())

    def release(held: bool) -> None:
        if held:
            lock.release()

    return lambda: lock.acquire(blocking=False), release
