"""Webhooks and the "Call Webhook" flow step of trigger campaigns, as Marketo fires them.

What Marketo documents (developer docs "Webhooks" and "Response Mappings", experienceleague.adobe.com
/docs/marketo-developer/marketo/webhooks/) and the sandbox follows:

- A webhook has a URL, a request type (GET or POST), a payload template, a request token encoding
  (JSON, Form/Url or None), a response type (JSON or XML) and any number of custom headers.
- Tokens are filled in every outgoing part (URL, template, custom headers); lead and system tokens are
  always available, campaign tokens in a campaign's scope. Lead tokens name fields by display name
  (``{{lead.Email Address}}``, ``{{lead.Id}}``), optionally with ``:default=...`` for an empty value.
- "String-type tokens are automatically enclosed in double quotes" in the template: with JSON encoding
  the sandbox writes a string token as a JSON string literal (quotes, backslashes, control characters
  escaped; non-ASCII kept as UTF-8); with Form/Url encoding it percent-encodes the value (``&`` in a
  company name stays inside its field); with None it inserts the raw text. URL characters are passed
  as written (the docs: ``&`` goes as ``&``, ``%26`` as ``%26``), so URL and header tokens are raw.
- The Call Webhook flow step is valid only in trigger campaigns; it runs once per person who triggers
  the campaign. Marketo waits up to 30 seconds for the answer, then gives up (a timeout).
- Response mappings pair a response attribute (a path into the JSON answer: dot notation, integer-only
  array indexes such as ``orders[0].orderDate``; keys of letters, digits, ``-``, ``_``, ``:`` and
  spaces) with a person field (Marketo's UI uses the SOAP name; the sandbox accepts that or the REST
  name). They are applied only on a 2xx answer; any other status (or a timeout) writes nothing.

Where the docs are silent the sandbox chooses, and says so here:

- An empty token renders empty: ``""`` for a string token in JSON encoding (so the template stays
  valid JSON), ``null`` for a number/boolean token in JSON encoding, nothing in the other encodings.
- The body's Content-Type is ``application/json`` (JSON encoding), ``application/x-www-form-urlencoded``
  (Form/Url) or ``text/plain`` (None) unless a custom header sets it; GET sends no body.
- The timeout is the sandbox setting ``webhook_timeout`` (30, Marketo's limit), overridable per webhook
  name in ``webhook_timeouts`` so tests need not wait 30 s. It bounds connecting and each read
  (requests' semantics), which for a receiver that answers at once is the whole call.
- A trigger fires for its persons **in order, one call at a time** by default: Marketo documents no
  parallelism for a campaign's flow ("even if a service only takes 50 ms ..., that is 1.5 hours when
  executed 100,000 times" assumes sequential calls). ``concurrency`` (at most ``MAX_CONCURRENCY``) runs
  up to that many calls at once for load tests; outcomes are still reported in input order.
- XML responses are not emulated (a definition asking for them is refused). Redirects are not followed:
  a 3xx is a non-2xx answer and maps nothing. ``{{system.dateTime}}`` renders as ``YYYY-MM-DD HH:MM:SS``
  in UTC on the sandbox clock.
- Each call logs a Call Webhook activity (type 110) with the response code or the error type; mapped
  values are written as an edit by the flow (Change Data Value, reason ``Webhook: <name>``, source
  ``Webhook``), bumping ``updatedAt`` by the sandbox's usual rule (custom fields move only the internal
  change time, as every other edit does).
- HTTPS receivers are verified with the sandbox's CA, or with the webhook's ``ca_bundle``; plain HTTP is
  accepted only to a loopback host (a test receiver), never to anything reachable from outside.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, urlsplit

import requests

from mktdyn_sandbox.clock import SandboxClock
from mktdyn_sandbox.db import Database
from mktdyn_sandbox.marketo.activities import ActivityLog
from mktdyn_sandbox.marketo.fields import CATALOGUE, STRING_TYPES, FieldSpec, FieldValueError, coerce
from mktdyn_sandbox.marketo.persons import EditError, PersonService
from mktdyn_sandbox.marketo.store import PersonStore, run_script
from mktdyn_sandbox.stats import Stats

DEFAULT_TIMEOUT = 30.0
MAX_CONCURRENCY = 10
MAX_PERSONS_PER_TRIGGER = 10_000
ENCODINGS = {"json": "json", "form": "form", "form/url": "form", "none": "none"}
CONTENT_TYPES = {"json": "application/json", "form": "application/x-www-form-urlencoded", "none": "text/plain"}
SOURCE = "Webhook"

SCHEMA = """
CREATE TABLE IF NOT EXISTS webhooks (
    name TEXT PRIMARY KEY,
    id INTEGER NOT NULL UNIQUE,
    definition TEXT NOT NULL
);
"""

_TOKEN = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_PATH_SEGMENT = re.compile(r"([A-Za-z0-9_\-: ]+)((?:\[\d+\])*)")
_INDEX = re.compile(r"\[(\d+)\]")
#: Lead tokens by display name (what Marketo's Insert Token writes) and company tokens likewise.
_BY_DISPLAY: dict[str, FieldSpec] = {spec.display_name.lower(): spec for spec in CATALOGUE if not spec.company}
_COMPANY_BY_DISPLAY: dict[str, FieldSpec] = {spec.display_name.lower(): spec for spec in CATALOGUE if spec.company}
#: Mapping targets: the SOAP name Marketo's UI shows (display name without spaces) or the REST name.
_MAPPABLE: dict[str, FieldSpec] = {
    **{spec.display_name.replace(" ", "").lower(): spec for spec in CATALOGUE},
    **{spec.name.lower(): spec for spec in CATALOGUE},
}


class WebhookError(ValueError):
    """A webhook definition or trigger request the sandbox refuses (answered as 400 with the message)."""


@dataclass(frozen=True)
class Mapping:
    """One response mapping: a path into the JSON answer and the person field it writes."""

    attribute: str
    field: str  # the REST name


@dataclass(frozen=True)
class Webhook:
    """One validated webhook definition."""

    id: int
    name: str
    url: str
    request_type: str
    template: str
    encoding: str
    headers: dict[str, str]
    response_type: str
    mappings: tuple[Mapping, ...]
    ca_bundle: str | None

    def describe(self) -> dict[str, Any]:
        """The definition as ``GET /_sandbox/webhooks`` shows it (and as it is stored)."""
        return {
            "id": self.id,
            "name": self.name,
            "url": self.url,
            "request_type": self.request_type,
            "template": self.template,
            "encoding": self.encoding,
            "headers": self.headers,
            "response_type": self.response_type,
            "response_mappings": [{"attribute": m.attribute, "field": m.field} for m in self.mappings],
            "ca_bundle": self.ca_bundle,
        }


@dataclass
class Outcome:
    """What one call did for one person."""

    person: int
    status: int | None = None
    elapsed_ms: float = 0.0
    error: str | None = None
    mapped: dict[str, Any] = field(default_factory=dict)
    changed: list[str] = field(default_factory=list)
    unmapped: dict[str, str] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """The outcome as the trigger endpoint reports it."""
        return {
            "person": self.person,
            "status": self.status,
            "elapsed_ms": round(self.elapsed_ms, 1),
            "error": self.error,
            "mapped": self.mapped,
            "changed": self.changed,
            "unmapped": self.unmapped,
        }


# -- validation -----------------------------------------------------------------------------------
def _check_token(token: str, where: str) -> None:
    expression = token.split(":default=", 1)[0].strip()
    scope, _, name = expression.partition(".")
    lowered = name.strip().lower()
    if scope == "lead" and lowered in _BY_DISPLAY:
        return
    if scope == "company" and lowered in _COMPANY_BY_DISPLAY:
        return
    if expression in ("campaign.id", "campaign.name", "system.dateTime"):
        return
    raise WebhookError(f"webhook {where}: unknown token {{{{{token}}}}} (lead and company tokens use display names)")


def _check_tokens(text: str, where: str) -> None:
    for token in _TOKEN.findall(text):
        _check_token(token, where)


def _check_url(url: str) -> None:
    _check_tokens(url, "url")
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "https" and host:
        return
    if parts.scheme == "http" and host:
        loopback = host == "localhost"
        with contextlib.suppress(ValueError):
            loopback = loopback or ipaddress.ip_address(host).is_loopback
        if loopback:
            return
        raise WebhookError(f"webhook url: plain http is allowed only to a loopback host, not {host!r}")
    raise WebhookError(f"webhook url: {url!r} is not an https (or loopback http) URL")


def _check_path(path: str) -> None:
    if not path or not all(_PATH_SEGMENT.fullmatch(segment) for segment in path.split(".")):
        raise WebhookError(
            f"webhook response mapping attribute {path!r}: use dot notation and integer indexes (orders[0].id)"
        )


def _text(payload: dict[str, Any], key: str, default: str | None = None) -> str:
    value = payload.get(key, default)
    if not isinstance(value, str):
        raise WebhookError(f"webhook {key}: must be a string")
    return value


def parse_definition(payload: dict[str, Any], webhook_id: int) -> Webhook:
    """Validate an admin definition; WebhookError names the offending part."""
    known = {
        "name",
        "url",
        "request_type",
        "template",
        "encoding",
        "headers",
        "response_type",
        "response_mappings",
        "ca_bundle",
    }
    unknown = sorted(set(payload) - known)
    if unknown:
        raise WebhookError(f"webhook: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    name = _text(payload, "name", "").strip()
    if not name or len(name) > 255:
        raise WebhookError("webhook name: required, at most 255 characters")
    url = _text(payload, "url", "")
    _check_url(url)
    request_type = _text(payload, "request_type", "POST").upper()
    if request_type not in ("GET", "POST"):
        raise WebhookError(f"webhook request_type: GET or POST, not {request_type!r}")
    template = _text(payload, "template", "")
    _check_tokens(template, "template")
    encoding = ENCODINGS.get(_text(payload, "encoding", "json").strip().lower())
    if encoding is None:
        raise WebhookError(f"webhook encoding: one of json, form, none, not {payload.get('encoding')!r}")
    headers = payload.get("headers") or {}
    if not isinstance(headers, dict):
        raise WebhookError("webhook headers: must be an object of header name to value")
    for key, value in headers.items():
        if not _HEADER_NAME.fullmatch(key):
            raise WebhookError(f"webhook header {key!r}: not a valid header name")
        if not isinstance(value, str) or "\r" in value or "\n" in value:
            raise WebhookError(f"webhook header {key!r}: the value must be a one-line string")
        _check_tokens(value, f"header {key!r}")
    response_type = _text(payload, "response_type", "json").strip().lower()
    if response_type not in ("json", "none"):
        raise WebhookError(f"webhook response_type: json or none (XML is not emulated), not {response_type!r}")
    raw_mappings = payload.get("response_mappings") or []
    if not isinstance(raw_mappings, list):
        raise WebhookError("webhook response_mappings: must be a list of {attribute, field}")
    mappings: list[Mapping] = []
    for item in raw_mappings:
        if not isinstance(item, dict) or not isinstance(item.get("attribute"), str):
            raise WebhookError("webhook response_mappings: each item needs a string attribute and field")
        target = item.get("field")
        spec = _MAPPABLE.get(str(target).lower()) if isinstance(target, str) else None
        if spec is None:
            raise WebhookError(f"webhook response mapping field {target!r}: no such person field")
        if spec.read_only or spec.name == "id":
            raise WebhookError(f"webhook response mapping field {target!r}: read-only in Marketo")
        _check_path(item["attribute"])
        mappings.append(Mapping(item["attribute"], spec.name))
    if mappings and response_type != "json":
        raise WebhookError("webhook response_mappings: need response_type json")
    ca_bundle = payload.get("ca_bundle")
    if ca_bundle is not None and (not isinstance(ca_bundle, str) or not Path(ca_bundle).is_file()):
        raise WebhookError(f"webhook ca_bundle: {ca_bundle!r} is not a readable file")
    return Webhook(
        webhook_id,
        name,
        url,
        request_type,
        template,
        encoding,
        dict(headers),
        response_type,
        tuple(mappings),
        ca_bundle,
    )


# -- rendering ------------------------------------------------------------------------------------
def _token_value(token: str, person: dict[str, Any], campaign: dict[str, Any], now: float) -> tuple[Any, bool]:
    """The token's value and whether it is string-typed."""
    scope, _, name = token.partition(".")
    if scope in ("lead", "company"):
        table = _BY_DISPLAY if scope == "lead" else _COMPANY_BY_DISPLAY
        spec = table[name.strip().lower()]
        return person.get(spec.name), spec.data_type in STRING_TYPES or spec.data_type in ("date", "datetime")
    if token == "campaign.id":
        return campaign.get("id"), isinstance(campaign.get("id"), str)
    if token == "campaign.name":
        return campaign.get("name"), True
    return datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%d %H:%M:%S"), True  # system.dateTime


def _encode(value: Any, is_string: bool, encoding: str) -> str:
    if encoding == "json":
        if value is None or value == "":
            return '""' if is_string else "null"
        if isinstance(value, bool):
            return "true" if value else "false"
        return json.dumps(str(value) if is_string else value, ensure_ascii=False)
    if value is None:
        return ""
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return quote_plus(text) if encoding == "form" else text


def render(text: str, person: dict[str, Any], campaign: dict[str, Any], now: float, encoding: str) -> str:
    """Fill every ``{{token}}`` of ``text`` for one person (``encoding`` none for the URL and headers)."""

    def replace(match: re.Match[str]) -> str:
        expression, _, default = match.group(1).partition(":default=")
        value, is_string = _token_value(expression.strip(), person, campaign, now)
        if value in (None, "") and default:
            value = default
        return _encode(value, is_string, encoding)

    return _TOKEN.sub(replace, text)


def extract(document: Any, path: str) -> tuple[bool, Any]:
    """Follow a response attribute path; (False, None) when some step is missing."""
    current = document
    for segment in path.split("."):
        found = _PATH_SEGMENT.fullmatch(segment)
        assert found is not None  # validated at definition time
        if not isinstance(current, dict) or found.group(1) not in current:
            return False, None
        current = current[found.group(1)]
        for index in _INDEX.findall(found.group(2)):
            if not isinstance(current, list) or int(index) >= len(current):
                return False, None
            current = current[int(index)]
    return True, current


# -- the flow step --------------------------------------------------------------------------------
class WebhookEngine:
    """Stores definitions and fires them for persons of a triggered campaign."""

    def __init__(
        self,
        db: Database,
        store: PersonStore,
        persons: PersonService,
        log: ActivityLog,
        stats: Stats,
        clock: SandboxClock,
        settings: Callable[[], dict[str, Any]],
        ca_bundle: Path,
    ) -> None:
        self.db = db
        self.store = store
        self.persons = persons
        self.log = log
        self.stats = stats
        self.clock = clock
        self.settings = settings
        self.ca_bundle = ca_bundle
        self._local = threading.local()
        self._define_lock = threading.Lock()
        run_script(db, SCHEMA)

    # -- definitions --------------------------------------------------------------------------------
    def define(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Create or replace a webhook by name (a replaced one keeps its id, as an edit in the UI does)."""
        with self._define_lock:
            name = payload.get("name")
            row = (
                self.db.query_one("SELECT id FROM webhooks WHERE name = ?", (name,)) if isinstance(name, str) else None
            )
            if row is not None:
                webhook_id = int(row[0])
            else:
                top = self.db.query_one("SELECT COALESCE(MAX(id), 0) FROM webhooks")
                webhook_id = int(top[0] if top is not None else 0) + 1
            webhook = parse_definition(payload, webhook_id)
            self.db.execute(
                "INSERT INTO webhooks (name, id, definition) VALUES (?,?,?) "
                "ON CONFLICT(name) DO UPDATE SET definition = excluded.definition",
                (webhook.name, webhook.id, json.dumps(webhook.describe())),
            )
        return webhook.describe()

    def listing(self) -> list[dict[str, Any]]:
        """Every definition, by id."""
        return [json.loads(row[0]) for row in self.db.query("SELECT definition FROM webhooks ORDER BY id")]

    def get(self, name: str) -> Webhook:
        """A stored definition by name."""
        row = self.db.query_one("SELECT id, definition FROM webhooks WHERE name = ?", (name,))
        if row is None:
            raise WebhookError(f"no webhook named {name!r}")
        stored = json.loads(row[1])
        stored.pop("id")
        return parse_definition(stored, int(row[0]))

    # -- triggering ---------------------------------------------------------------------------------
    def trigger(self, payload: dict[str, Any]) -> dict[str, Any]:
        """``POST /_sandbox/campaigns/trigger``: the Call Webhook step for each person, outcomes in order."""
        name = payload.get("webhook")
        if not isinstance(name, str):
            raise WebhookError("trigger: webhook (a name) is required")
        webhook = self.get(name)
        campaign = payload.get("campaign") or {}
        if not isinstance(campaign, dict) or set(campaign) - {"id", "name"}:
            raise WebhookError("trigger: campaign must be an object with id and name")
        ids = payload.get("persons")
        if not isinstance(ids, list) or not ids or len(ids) > MAX_PERSONS_PER_TRIGGER:
            raise WebhookError(f"trigger: persons must be a list of 1..{MAX_PERSONS_PER_TRIGGER} person ids")
        for raw in ids:
            if isinstance(raw, bool) or not isinstance(raw, int) or self.store.get(raw) is None:
                raise WebhookError(f"trigger: no person {raw!r}")
        concurrency = payload.get("concurrency", 1)
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or not 1 <= concurrency <= MAX_CONCURRENCY:
            raise WebhookError(f"trigger: concurrency must be an integer 1..{MAX_CONCURRENCY}")
        if concurrency == 1:
            outcomes = [self._fire(webhook, campaign, person_id) for person_id in ids]
        else:
            with ThreadPoolExecutor(concurrency, thread_name_prefix="sandbox-webhook") as pool:
                outcomes = list(pool.map(lambda person_id: self._fire(webhook, campaign, person_id), ids))
        return {"webhook": webhook.name, "concurrency": concurrency, "outcomes": [o.describe() for o in outcomes]}

    def _timeout(self, name: str) -> float:
        settings = self.settings()
        by_name = settings.get("webhook_timeouts") or {}
        value = by_name.get(name, settings.get("webhook_timeout", DEFAULT_TIMEOUT))
        return float(value)

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False  # no proxies or REQUESTS_CA_BUNDLE from the environment
            self._local.session = session
        return session

    def _fire(self, webhook: Webhook, campaign: dict[str, Any], person_id: int) -> Outcome:
        outcome = Outcome(person_id)
        person = self.store.get(person_id)
        if person is None:  # deleted since the trigger was checked
            outcome.error = "person deleted"
            return outcome
        now = self.clock.time()
        url = render(webhook.url, person, campaign, now, "none")
        headers = {"Content-Type": CONTENT_TYPES[webhook.encoding]} if webhook.request_type == "POST" else {}
        headers.update({key: render(value, person, campaign, now, "none") for key, value in webhook.headers.items()})
        body = render(webhook.template, person, campaign, now, webhook.encoding).encode("utf-8")
        timeout = self._timeout(webhook.name)
        self.stats.count_event("webhook_calls")
        answer: requests.Response | None = None
        started = time.monotonic()
        try:
            answer = self._session().request(
                webhook.request_type,
                url,
                data=body if webhook.request_type == "POST" else None,
                headers=headers,
                timeout=timeout,
                verify=webhook.ca_bundle or str(self.ca_bundle),
                allow_redirects=False,
            )
        except requests.Timeout:
            outcome.error = "timeout"
            self.stats.count_event("webhook_timeouts")
        except requests.RequestException as exc:
            outcome.error = f"{type(exc).__name__}"
            self.stats.count_event("webhook_errors")
        outcome.elapsed_ms = (time.monotonic() - started) * 1000
        values: dict[str, Any] = {}
        if answer is not None:
            outcome.status = answer.status_code
            self.stats.count_event(f"webhook_status_{answer.status_code // 100}xx")
            if 200 <= answer.status_code < 300 and webhook.mappings:
                values = self._mapped_values(webhook, answer, outcome)
        self._record(webhook, campaign, person_id, outcome, values)
        return outcome

    def _mapped_values(self, webhook: Webhook, answer: requests.Response, outcome: Outcome) -> dict[str, Any]:
        try:
            document = answer.json()
        except ValueError:
            outcome.error = "response is not JSON"
            return {}
        specs = {spec.name: spec for spec in CATALOGUE}
        values: dict[str, Any] = {}
        for mapping in webhook.mappings:
            found, value = extract(document, mapping.attribute)
            if not found:
                outcome.unmapped[mapping.field] = f"no {mapping.attribute!r} in the response"
                continue
            if isinstance(value, dict | list):
                outcome.unmapped[mapping.field] = f"{mapping.attribute!r} is not a scalar"
                continue
            try:
                values[mapping.field] = coerce(specs[mapping.field], value)
            except FieldValueError as exc:
                outcome.unmapped[mapping.field] = str(exc)
        return values

    def _record(
        self, webhook: Webhook, campaign: dict[str, Any], person_id: int, outcome: Outcome, values: dict[str, Any]
    ) -> None:
        """The Call Webhook activity and the mapped values, in one transaction."""
        attributes: list[dict[str, Any]] = [
            {"name": "Campaign Name", "value": campaign.get("name")},
            {"name": "Response Code", "value": outcome.status},
            {"name": "Error Type", "value": outcome.error},
        ]

        def log_call(conn: Any) -> None:
            self.log.webhook_call(conn, person_id, webhook.id, webhook.name, self.clock.time(), attributes)

        try:
            changed = self.persons.flow_edit(person_id, values, f"Webhook: {webhook.name}", SOURCE, log_call)
        except EditError as exc:  # coerced values always fit; kept for a clear outcome if not
            outcome.error = str(exc)
            return
        if changed is None:
            outcome.error = "person deleted"
            return
        outcome.mapped = values
        outcome.changed = changed
        if changed:
            self.stats.count_event("webhook_mapped_values", len(changed))
