"""The client paces itself under Marketo's 100 calls per 20 s with a margin for Marketo's later metering.

Marketo meters a call when it arrives; a call sent the instant our oldest one leaves our own window could still
find it in Marketo's and be refused (606), and a 606 costs a wait of up to the whole window. Issue 18's
benchmark saw such refusals (7 in a no-change rerun); the pacer keeps ``PACE_MARGIN`` in hand.
"""

from __future__ import annotations

import threading

import pytest
from tap_marketo_leads.connection import MarketoConnection
from tap_marketo_leads.transport import PACE_MARGIN, MarketoTransport, RetryPolicy


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _transport(clock: FakeClock, calls: int = 3) -> MarketoTransport:
    connection = MarketoConnection.from_config(
        {"base_url": "https://123-abc-456.mktorest.com", "client_id": "cid", "client_secret": "s3cret-value"}
    )
    policy = RetryPolicy(rate_limit_calls=calls, rate_window_seconds=20.0)
    return MarketoTransport(connection, policy, clock=clock, sleep=clock.sleep)


def test_the_call_past_the_limit_waits_for_the_oldest_to_leave_marketos_window_with_a_margin() -> None:
    clock = FakeClock()
    transport = _transport(clock)
    for _ in range(3):
        transport._pace()
        clock.now += 1.0
    assert clock.sleeps == []
    transport._pace()  # t = +3: the oldest call (t = 0) leaves Marketo's window after 20 s and the margin
    assert clock.sleeps == [20.0 + PACE_MARGIN - 3.0]
    clock.now += 0.1
    transport._pace()  # the window holds three calls again: the next waits for the second one
    assert clock.sleeps[1] == pytest.approx(1.0 + 20.0 + PACE_MARGIN - (3.0 + 20.0 + PACE_MARGIN - 3.0 + 0.1))
    clock.now += 60.0
    transport._pace()  # a quiet minute later nothing waits
    assert len(clock.sleeps) == 2


def test_threads_of_one_client_never_take_more_than_the_window_allows() -> None:
    clock = FakeClock()
    transport = _transport(clock, calls=5)
    threads = [threading.Thread(target=transport._pace) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # five calls per window: each wait lets the next five go (the fake clock jumps past the first five at once)
    assert clock.sleeps == [20.0 + PACE_MARGIN] * 3
