"""The real-time path next to the batch: a race, a kill with requests queued, a full queue, duplicates, a burst."""

from __future__ import annotations

import threading
import time
from typing import Any

import requests
import sqlalchemy as sa
from target_mktdyn_merge.store import schema as tables
from target_mktdyn_merge.store.database import Store
from target_mktdyn_merge.store.lock import StoreLockedError, write_lock

from tests.realtime.harness import HEADER, SECRET, Realtime, Serve
from tests.target.pipeline import Pipeline


def test_a_request_delivered_twice_in_one_burst_creates_one_lead(realtime: Realtime, served: Serve) -> None:
    person = realtime.new_person("twice@example.com")
    outcomes = realtime.trigger([person, person], concurrency=2)
    [lead] = realtime.leads_with("twice@example.com")
    assert [(o["status"], o["mapped"]) for o in outcomes] == [(200, {"dynamicsLeadId": lead["leadid"]})] * 2


def test_a_webhook_and_a_batch_run_on_the_same_new_persons_create_one_lead_each(
    realtime: Realtime, served: Serve
) -> None:
    """The batch would create the leads too (the persons are flagged); the store's write lock orders the two.

    Both extractions ran before either webhook: the batch's merge leg plans from a store where neither person
    has a lead. Person A's webhook fires and is answered before the merge leg starts (the webhook's pass goes
    first); B's once the merge leg holds the lock (the batch goes first, the webhook waits and then finds B's
    lead). Waiting for the merge leg's own run, not just any lock holder, keeps the two orders apart however fast
    the merge leg reaches the lock (it no longer reads field metadata first, issue 18).
    """
    emails = {"a": "race.a@example.com", "b": "race.b@example.com"}
    persons = {key: realtime.new_person(email) for key, email in emails.items()}
    for person in persons.values():
        realtime.admin.marketo.edit("person", person, {"syncToDynamics": True})
    pipeline = Pipeline(realtime.info, realtime.workdir / "batch", store_url=realtime.store_url)
    fired: dict[str, list[dict[str, Any]]] = {}

    def webhook_b() -> None:
        wait_until_a_merge_run_holds_the_lock(realtime.store_url, seconds=20)
        fired["b"] = realtime.trigger([persons["b"]])

    thread = threading.Thread(target=webhook_b)

    def before_merge() -> None:
        fired["a"] = realtime.trigger([persons["a"]])
        thread.start()

    pipeline.sync(before_merge=before_merge)
    thread.join(60)
    creators: dict[str, str] = {}
    for key, email in emails.items():
        [lead] = realtime.leads_with(email)
        assert [(o["status"], o["mapped"]) for o in fired[key]] == [(200, {"dynamicsLeadId": lead["leadid"]})]
        created = [a for a in realtime.activities(persons[key]) if a["action"] == "created"]
        assert [a["dynamics_id"] for a in created] == [lead["leadid"]]
        creators[key] = realtime.run_mode(created[0]["run_id"])
        verify = realtime.mktdyn("verify", "--person", str(persons[key]), config=realtime.config_file(), check=False)
        assert verify.returncode == 0, verify.stdout + verify.stderr
    assert creators == {"a": "realtime", "b": "merge"}  # each order happened once


def wait_until_a_merge_run_holds_the_lock(store_url: str, seconds: float) -> None:
    """Return once a batch merge run has started and the store's write lock is held (or after ``seconds``).

    The real-time worker is idle then (its request was answered before the merge leg started), so the holder is
    the merge leg.
    """
    store = Store(store_url)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            with store.transaction() as connection:
                running = connection.execute(
                    sa.select(tables.runs.c.run_id).where(
                        tables.runs.c.mode == "merge", tables.runs.c.status == "running"
                    )
                ).first()
            if running is not None:
                break
            time.sleep(0.02)
    finally:
        store.close()
    wait_until_the_lock_is_taken(store_url, max(0.0, deadline - time.monotonic()))


def wait_until_the_lock_is_taken(store_url: str, seconds: float) -> None:
    """Return once another process holds the store's write lock (or after ``seconds``)."""
    store = Store(store_url)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            try:
                with write_lock(store, wait=False, timeout_seconds=0):
                    pass
            except StoreLockedError:
                return
            time.sleep(0.02)
    finally:
        store.close()


def test_a_kill_with_requests_queued_loses_none_and_a_full_queue_answers_503(realtime: Realtime) -> None:
    world = Realtime(realtime.info, realtime.workdir / "kill")  # its own store: only the restarted process serves it
    persons = [world.new_person(f"queued.{n}@example.com") for n in range(3)]
    store = Store(world.store_url)
    serve = world.serve(serve_queue_limit=3, serve_answer_wait_seconds=0.5)
    world.define_webhook(serve, name="Queued")
    with write_lock(store, wait=False, timeout_seconds=0):  # a long batch run holds the store: nothing is processed
        outcomes = world.trigger(persons, name="Queued", concurrency=3)
        assert [o["status"] for o in outcomes] == [202] * 3
        full = requests.post(
            f"{serve.url}/webhook/sync-person", json={"personId": persons[0]}, headers={HEADER: SECRET}
        )
        assert (full.status_code, full.headers["Retry-After"]) == (503, "30")
        assert "serve_queue_limit" in full.json()["error"]
        assert requests.get(f"{serve.url}/readyz", timeout=10).status_code == 503
        assert sorted(r["status"] for r in world.queued() if r["person_id"] in map(str, persons)) == ["queued"] * 3
        serve.kill()
    store.close()
    restarted = world.serve()
    deadline = time.monotonic() + 60
    while any(r["status"] == "queued" for r in world.queued()) and time.monotonic() < deadline:
        time.sleep(0.2)
    rows = {r["person_id"]: r for r in world.queued() if r["person_id"] in map(str, persons)}
    assert sorted(r["status"] for r in rows.values()) == ["done"] * 3, restarted.log.read_text()[-3000:]
    for n, person in enumerate(persons):
        [lead] = world.leads_with(f"queued.{n}@example.com")
        assert '"dynamicsLeadId": "' + lead["leadid"] + '"' in rows[str(person)]["result"]
    world.close()
