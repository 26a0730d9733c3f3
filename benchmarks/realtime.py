"""Scenario 7: the real-time path (issue 19), with the sandbox's rate limits on.

`mktdyn serve` runs as a process on its own store; the sandbox's Call Webhook step calls it over real HTTP, as
Marketo would. Three measurements, on persons created in Marketo just before (none is in the store yet):

- **single triggers**: one person per trigger, one at a time; the latency is the webhook call's duration as the
  sandbox measured it, from sending the call to receiving the answer, which comes after the lead was created
  (and its id is what the response mapping stores): trigger to lead. Target p95 < 2 s.
- **a burst of 1,000 triggers answered with the id**: one trigger campaign firing for 1,000 persons, 10 calls
  at a time (the sandbox's most; Marketo documents no parallelism), each call waiting for its lead's id. At
  most 10 requests can be waiting together, so a worker pass holds at most 10 persons.
- **the same burst acknowledged at once** (``serve_answer_wait_seconds`` 0.01: the call is answered 202 once
  the request is durable; the id is not mapped back, the next scheduled run stores nothing on the person but
  the lead is linked): requests pile up and the worker takes up to ``serve_batch_size`` (300) per pass.

Calls made are counted by the sandbox and compared with the fewest the APIs allow for 1,000 persons: 4
``leads.json`` reads (300 ids per call), 40 Dataverse lookups by email (50 emails per request, leads and
contacts), 10 ``$batch`` (100 creates each). ``marketo_activity_type`` stays empty, as in the other scenarios.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa
from mktdyn_sandbox.marketo.testing import WebhookAdmin
from tap_marketo_leads.client import MarketoClient
from tap_marketo_leads.connection import MarketoConnection

from benchmarks.common import BIN, ApiCalls, SandboxServer, SeedSpec, log, target_config, write_json

SEED = SeedSpec(persons=50, dynamics_only=10, seed=19)
SINGLES = 20
BURST = 1000
SECRET = "bench-secret-0123456789abcdef"
TEMPLATE = '{"personId": {{lead.Id}}, "email": {{lead.Email Address}}}'


@dataclass
class RealtimeResult:
    """One measured part of scenario 7."""

    name: str
    seconds: float
    persons: int
    calls: ApiCalls
    target: str
    met: bool | None
    note: str


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def realtime_scenarios(work: Path) -> list[RealtimeResult]:
    """Run scenario 7 on a fresh, small sandbox (limits on)."""
    directory = work / "sandbox-realtime"
    directory.mkdir(parents=True)
    with SandboxServer(directory, SEED, limits=True, export_delay=0.1) as sandbox:
        marketo = MarketoClient(MarketoConnection.from_config(target_config(sandbox.info, ""), "marketo_"))
        hooks = WebhookAdmin(sandbox.info)
        try:
            singles = _new_persons(marketo, "single", SINGLES)
            burst = _new_persons(marketo, "burst", BURST)
            quick = _new_persons(marketo, "quick", BURST)
            return [
                _singles(sandbox, hooks, work, singles),
                _burst(sandbox, hooks, work, burst, answer_wait=25, name="answered"),
                _burst(sandbox, hooks, work, quick, answer_wait=0.01, name="acknowledged"),
            ]
        finally:
            hooks.close()
            marketo.close()


def _new_persons(client: MarketoClient, label: str, count: int) -> list[int]:
    records = [
        {"email": f"rt.{label}.{n}@example.com", "firstName": "Real", "lastName": f"Time {n}"} for n in range(count)
    ]
    outcomes = client.sync_leads("createOnly", records, "email")
    return [int(str(o.id)) for o in outcomes if o.status == "created"]


class _Serve:
    """`mktdyn serve` on its own store, with the webhook defined in the sandbox."""

    def __init__(self, sandbox: SandboxServer, hooks: WebhookAdmin, work: Path, name: str, **settings: Any) -> None:
        store_url = f"sqlite:///{work / f'realtime-{name}.db'}"
        upgrade = [str(BIN / "mktdyn"), "--store-url", store_url, "db", "upgrade"]
        subprocess.run(upgrade, check=True, capture_output=True)
        config = target_config(sandbox.info, store_url, serve_secret=SECRET, **settings)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        self.url = f"http://127.0.0.1:{port}"
        self.store_url = store_url
        self.log = work / f"serve-{name}.log"
        env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
        command = [str(BIN / "mktdyn"), "--store-url", store_url, "serve", "--port", str(port)]
        command += ["--config", str(write_json(work / f"serve-{name}.json", config))]
        with self.log.open("w") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise SystemExit(f"mktdyn serve did not start: {self.log.read_text()[-2000:]}") from None
                time.sleep(0.1)
        status, body = hooks.define(
            {
                "name": name,
                "url": f"{self.url}/webhook/sync-person",
                "template": TEMPLATE,
                "headers": {"X-Mktdyn-Secret": SECRET},
                "response_mappings": [{"attribute": "dynamicsLeadId", "field": "dynamicsLeadId"}],
            }
        )
        if status != 200:
            raise SystemExit(f"webhook definition refused: {body}")

    def waiting(self) -> int:
        engine = sa.create_engine(self.store_url)
        try:
            with engine.connect() as connection:
                query = "SELECT count(*) FROM realtime_requests WHERE status = 'queued'"
                return int(connection.execute(sa.text(query)).scalar() or 0)
        finally:
            engine.dispose()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)


def _singles(sandbox: SandboxServer, hooks: WebhookAdmin, work: Path, persons: list[int]) -> RealtimeResult:
    serve = _Serve(sandbox, hooks, work, "single")
    hooks.trigger("single", persons[:1], {"id": 1, "name": "warm-up"})  # token, metadata: read once per worker
    sandbox.reset_stats()
    latencies: list[float] = []
    statuses: list[int] = []
    started = time.perf_counter()
    for person in persons[1:]:
        _, body = hooks.trigger("single", [person], {"id": 1, "name": "single"})
        outcome = body["outcomes"][0]
        statuses.append(int(outcome["status"] or 0))
        latencies.append(float(outcome["elapsed_ms"]) / 1000)
    seconds = time.perf_counter() - started
    serve.stop()
    p50, p95 = percentile(latencies, 0.5), percentile(latencies, 0.95)
    log(f"7: single triggers p50 {p50:.2f} s, p95 {p95:.2f} s")
    return RealtimeResult(
        f"7. real time: {len(latencies)} single triggers, trigger to lead p50 {p50:.2f} s / p95 {p95:.2f} s",
        seconds,
        len(latencies),
        ApiCalls.from_stats(sandbox.stats()),
        "p95 < 2 s",
        p95 < 2 and all(s == 200 for s in statuses),
        f"latencies (s): max {max(latencies):.2f}; answers {sorted(set(statuses))} (first trigger, which reads the "
        "token and both systems' metadata, left out)",
    )


def _burst(
    sandbox: SandboxServer, hooks: WebhookAdmin, work: Path, persons: list[int], answer_wait: float, name: str
) -> RealtimeResult:
    serve = _Serve(sandbox, hooks, work, name, serve_answer_wait_seconds=answer_wait)
    sandbox.reset_stats()
    started = time.perf_counter()
    _, body = hooks.trigger(name, persons, {"id": 2, "name": f"burst {name}"}, concurrency=10)
    fired = time.perf_counter() - started
    while serve.waiting():
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    serve.stop()
    calls = ApiCalls.from_stats(sandbox.stats())
    statuses: dict[str, int] = {}
    for outcome in body["outcomes"]:
        key = str(outcome["status"] or outcome["error"])
        statuses[key] = statuses.get(key, 0) + 1
    reads = calls.endpoint_calls("marketo", ["leads by filter"])
    lookups = calls.endpoint_calls("dynamics", ["GET collection"])
    batches = calls.endpoint_calls("dynamics", ["$batch"])
    created = calls.written.get("dynamics", {}).get("created", 0)
    refused = {s: r for s, r in calls.rejected.items() if r}
    minimum = (math.ceil(len(persons) / 300), 2 * math.ceil(len(persons) / 50), math.ceil(len(persons) / 100))
    note = (
        f"{len(persons)} triggers fired in {fired:.1f} s (answers {json.dumps(statuses, sort_keys=True)}), all "
        f"processed after {seconds:.1f} s; {created} leads created. Calls made vs minimum: leads.json reads "
        f"{reads}/{minimum[0]}, Dataverse lookups {lookups}/{minimum[1]}, $batch {batches}/{minimum[2]}; "
        f"refused by the rate limits (and retried): {json.dumps(refused, sort_keys=True)}"
    )
    log(f"7: burst ({name}): {note}")
    kind = "answered with the id" if answer_wait > 1 else "acknowledged at once (202)"
    return RealtimeResult(
        f"7. real time: burst of {len(persons):,} triggers, {kind}",
        seconds,
        len(persons),
        calls,
        "every person one lead; within the limits" + (", calls <= 1.5 x minimum" if answer_wait <= 1 else ""),
        created == len(persons) and (answer_wait > 1 or (reads + lookups + batches) <= 1.5 * sum(minimum)),
        note,
    )
