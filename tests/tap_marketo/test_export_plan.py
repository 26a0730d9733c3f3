"""The export planning of the first extraction as pure functions: where data begins, windows, pipeline depth, cost."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from tap_marketo_leads.export import (
    MAX_QUEUED,
    MB,
    allowance_day,
    allowance_note,
    data_begins,
    exported_bytes_on,
    jobs_to_start,
    month_start,
    plan_windows,
    projected_bytes,
)
from tap_marketo_leads.streams import DEFAULT_START, MarketoLeadsStream

from .fakes import ScriptedAdapter, envelope, make_client


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        ("2026-10-03T12:30:00", "2026-10-01T00:00:00"),
        ("2026-10-01T00:00:00", "2026-10-01T00:00:00"),
        ("2026-12-31T23:59:59", "2026-12-01T00:00:00"),
    ],
)
def test_month_start(moment: str, expected: str) -> None:
    assert month_start(at(moment)) == at(expected)


@pytest.mark.parametrize(
    ("start_date", "first_created", "expected", "why"),
    [
        ("2000-01-01", "2026-10-03T12:00:00", "2026-10-01", "the month of the oldest person"),
        ("2000-01-01", "2026-10-01T00:00:05", "2026-09-01", "a day's slack before a creation on the 1st"),
        ("2026-11-15", "2026-10-03T12:00:00", "2026-11-15", "never before start_date"),
        ("2026-10-02", "2026-10-20T00:00:00", "2026-10-02", "start_date inside the first person's month wins"),
        ("2000-01-01", None, "2000-01-01", "unknown oldest creation keeps start_date (slow, never lossy)"),
    ],
)
def test_data_begins(start_date: str, first_created: str | None, expected: str, why: str) -> None:
    created = at(first_created) if first_created else None
    assert data_begins(at(start_date), created) == at(expected), why


@pytest.mark.parametrize(
    ("start", "end", "days", "expected"),
    [
        ("2026-10-01", "2026-10-01", 30, []),
        ("2026-10-01", "2026-10-11", 30, [("2026-10-01", "2026-10-11")]),
        ("2026-10-01", "2026-10-31", 30, [("2026-10-01", "2026-10-31")]),
        (
            "2026-10-01",
            "2026-12-04",
            30,
            [("2026-10-01", "2026-10-31"), ("2026-10-31", "2026-11-30"), ("2026-11-30", "2026-12-04")],
        ),
        ("2026-10-01", "2026-10-03", 1, [("2026-10-01", "2026-10-02"), ("2026-10-02", "2026-10-03")]),
    ],
)
def test_plan_windows_cover_the_span_exactly(start: str, end: str, days: int, expected: list[tuple[str, str]]) -> None:
    windows = plan_windows(at(start), at(end), timedelta(days=days))
    assert windows == [(at(a), at(b)) for a, b in expected]


def test_plan_windows_refuses_a_non_positive_size() -> None:
    with pytest.raises(ValueError, match="positive"):
        plan_windows(at("2026-10-01"), at("2026-10-02"), timedelta(0))


def test_the_default_start_date_on_a_two_month_old_instance_plans_three_windows_not_three_hundred() -> None:
    now = at("2026-12-04T17:00:00")
    begins = data_begins(at("2006-01-01"), at("2026-10-03T08:00:00"))
    assert len(plan_windows(begins, now, timedelta(days=30))) == 3
    assert len(plan_windows(at("2000-01-01"), now, timedelta(days=30))) == 328  # what a calendar walk costs


@pytest.mark.parametrize(
    ("in_flight", "remaining", "depth", "expected", "why"),
    [
        (0, 3, 3, 3, "fill the pipeline at the start"),
        (0, 3, 1, 1, "depth 1: one window at a time"),
        (1, 5, 1, 0, "depth 1: nothing ahead while a file is read"),
        (1, 5, 3, 2, "two more queued while the head's file is read"),
        (3, 5, 3, 0, "full"),
        (0, 2, 5, 2, "no more than the windows left"),
        (2, 0, 3, 0, "nothing left to plan"),
        (0, 50, 99, MAX_QUEUED + 1, "never more than Marketo's queue plus the file being read"),
        (0, 4, 0, 1, "a depth below one still moves"),
    ],
)
def test_jobs_to_start(in_flight: int, remaining: int, depth: int, expected: int, why: str) -> None:
    assert jobs_to_start(in_flight, remaining, depth) == expected, why


@pytest.mark.parametrize(
    ("moment", "day"),
    [
        ("2026-12-04T05:59:59", "2026-12-03"),  # before midnight US Central
        ("2026-12-04T06:00:00", "2026-12-04"),
    ],
)
def test_allowance_day_is_us_central(moment: str, day: str) -> None:
    assert allowance_day(at(moment)) == day


def test_exported_bytes_count_completed_files_of_the_allowance_day_only() -> None:
    jobs: list[dict[str, Any]] = [
        {"status": "Completed", "finishedAt": "2026-12-04T10:00:00Z", "fileSize": 100},
        {"status": "Completed", "finishedAt": "2026-12-04T05:00:00Z", "fileSize": 1000},  # the day before
        {"status": "Failed", "finishedAt": "2026-12-04T10:00:00Z", "fileSize": 7},
        {"status": "Completed", "finishedAt": "2026-12-04T11:00:00+00:00", "fileSize": 20},
        {"status": "Completed", "finishedAt": "garbage", "fileSize": 5},
        {"status": "Completed", "fileSize": 5},
    ]
    assert exported_bytes_on(jobs, "2026-12-04") == 120


@pytest.mark.parametrize(
    ("done_bytes", "done", "total", "expected"),
    [(0, 0, 5, None), (300, 1, 3, 900), (300, 2, 3, 450), (300, 3, 3, 300), (10, 1, 0, None)],
)
def test_projected_bytes(done_bytes: int, done: int, total: int, expected: int | None) -> None:
    assert projected_bytes(done_bytes, done, total) == expected


def test_allowance_note_says_whether_the_projection_fits() -> None:
    assert allowance_note(None, 100 * MB, 500 * MB) == "400.0 MB of today's 500 MB export allowance left"
    fits = allowance_note(50 * MB, 100 * MB, 500 * MB)
    assert "50.0 MB fits in the 400.0 MB left" in fits
    assert "EXCEEDS the 0.0 MB left" in allowance_note(1 * MB, 600 * MB, 500 * MB)


class _OldestOnly:
    """A client that only answers the oldest-activity question, remembering where the search began."""

    def __init__(self, oldest: dict[str, Any] | None) -> None:
        self.oldest = oldest
        self.since: list[datetime] = []

    def oldest_activity(self, activity_type_id: int, since: datetime, max_pages: int = 20) -> dict[str, Any] | None:
        assert activity_type_id == 12  # New Lead
        self.since.append(since)
        return self.oldest


@pytest.mark.parametrize(
    ("start_date", "oldest", "expected"),
    [
        ("2006-01-01", {"activityDate": "2026-10-05T01:59:45Z", "leadId": 1}, "2026-10-01"),
        # A person created long before start_date may have changed just after it: start_date stays.
        ("2026-11-15", {"activityDate": "2019-03-02T00:00:00Z", "leadId": 1}, "2026-11-15"),
        ("2026-11-15", None, "2026-11-15"),
    ],
)
def test_the_first_extraction_looks_for_the_oldest_person_from_marketos_launch(
    start_date: str, oldest: dict[str, Any] | None, expected: str
) -> None:
    client = _OldestOnly(oldest)
    # The method needs only the client and a logger; no tap (whose construction would call Marketo).
    stream = SimpleNamespace(_client=client, logger=logging.getLogger("test"))
    assert MarketoLeadsStream._first_data(stream, at(start_date)) == at(expected)  # type: ignore[arg-type]
    assert client.since == [DEFAULT_START]  # never from start_date: that could skip persons created before it


# -- the client's two look-ups, at the network edge ----------------------------------------------------------
def test_oldest_activity_walks_empty_pages_to_the_first_new_lead_and_gives_up_after_max_pages() -> None:
    adapter = ScriptedAdapter()
    adapter.on("GET", "/rest/v1/activities/pagingtoken.json", [(200, envelope(nextPageToken="T0"))])
    empty = (200, envelope(nextPageToken="T1", moreResult=True))  # Marketo scans in blocks: empty pages happen
    first = {"leadId": 7, "activityDate": "2021-03-04T05:06:07Z", "activityTypeId": 12}
    later = {"leadId": 9, "activityDate": "2021-03-05T00:00:00Z", "activityTypeId": 12}
    adapter.on("GET", "/rest/v1/activities.json", [empty, empty, (200, envelope([later, first], moreResult=True))])
    client = make_client(adapter)
    assert client.oldest_activity(12, at("2006-01-01")) == first
    pages = adapter.calls_to("/rest/v1/activities.json")
    assert len(pages) == 3  # stops at the first page with an item
    assert pages[0].query["activityTypeIds"] == ["12"]
    assert adapter.calls_to("/rest/v1/activities/pagingtoken.json")[0].query["sinceDatetime"][0].startswith("2006")

    endless = ScriptedAdapter()
    endless.on("GET", "/rest/v1/activities/pagingtoken.json", [(200, envelope(nextPageToken="T0"))])
    endless.on("GET", "/rest/v1/activities.json", [empty])
    assert make_client(endless).oldest_activity(12, at("2006-01-01"), max_pages=4) is None
    assert len(endless.calls_to("/rest/v1/activities.json")) == 4


def test_lead_exports_pages_through_the_job_list() -> None:
    adapter = ScriptedAdapter()
    job = {"exportId": "a", "status": "Completed", "fileSize": 10, "finishedAt": "2026-12-04T10:00:00Z"}
    adapter.on(
        "GET",
        "/bulk/v1/leads/export.json",
        [(200, envelope([job], nextPageToken="P2")), (200, envelope([{**job, "exportId": "b"}]))],
    )
    jobs = list(make_client(adapter).lead_exports(["Completed"]))
    assert [j["exportId"] for j in jobs] == ["a", "b"]
    calls = adapter.calls_to("/bulk/v1/leads/export.json")
    assert calls[0].query["status"] == ["Completed"]
    assert calls[1].query["nextPageToken"] == ["P2"]
