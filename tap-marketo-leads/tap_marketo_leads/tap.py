"""tap-marketo-leads: Marketo Engage persons as a Singer stream (settings contract of docs/architecture.md §9.4)."""

from __future__ import annotations

from typing import Any

from mktdyn_common.cli import plugin_main
from mktdyn_common.errors import ConfigurationError
from mktdyn_common.redact import protect_secrets
from mktdyn_common.settings import number_setting, proxy_property
from singer_sdk import Stream, Tap
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError

from tap_marketo_leads.client import MarketoClient
from tap_marketo_leads.connection import MarketoConnection
from tap_marketo_leads.export import MAX_QUEUED
from tap_marketo_leads.schema import build_lead_schema
from tap_marketo_leads.streams import MarketoLeadsStream


class TapMarketoLeads(Tap):
    """Streams Marketo persons incrementally, with deletes, schema from Marketo's field metadata."""

    name = "tap-marketo-leads"

    config_jsonschema = th.PropertiesList(
        th.Property(
            "base_url",
            th.StringType,
            required=True,
            title="REST endpoint",
            description="The subscription's REST endpoint (Admin > Web Services), e.g. "
            "https://123-ABC-456.mktorest.com; the /rest and /identity forms are accepted.",
        ),
        th.Property(
            "client_id",
            th.StringType,
            required=True,
            title="Client ID",
            description="Client ID of the custom service (LaunchPoint) of the API-only user.",
        ),
        th.Property(
            "client_secret",
            th.StringType,
            required=True,
            secret=True,
            title="Client secret",
            description="Client secret of the custom service.",
        ),
        th.Property(
            "start_date",
            th.DateTimeType,
            title="Start date",
            default="2006-01-01T00:00:00Z",
            description="Extract persons changed at or after this time on the first run. The first "
            "extraction starts at the month of the oldest person's creation when that is later (found "
            "from its New Lead activity), so an early date costs nothing; the default (Marketo's launch "
            "year) covers every person.",
        ),
        th.Property(
            "ca_bundle",
            th.StringType,
            title="CA bundle",
            description="PEM file of extra certificate authorities to trust (the sandbox's CA); "
            "empty uses the system store.",
        ),
        proxy_property(),
        th.Property(
            "request_timeout",
            th.CustomType(number_setting()),
            default=120,
            title="Request timeout",
            description="Seconds to wait for one HTTP response.",
        ),
        th.Property(
            "user_agent",
            th.StringType,
            default="mktdyn/0.1 (+tap-marketo-leads)",
            title="User agent",
            description="User-Agent header sent with every request.",
        ),
        th.Property(
            "page_size",
            th.IntegerType,
            default=300,
            title="Page size",
            description="Records per REST call (Marketo's maximum is 300).",
        ),
        th.Property(
            "extract_method",
            th.StringType,
            default="auto",
            allowed_values=["auto", "bulk", "activities"],
            title="Extraction method",
            description="bulk: Bulk Lead Extract with the updatedAt filter; activities: the activity "
            "change feed; auto: bulk, falling back to activities where the subscription "
            "lacks the updatedAt export filter (error 1035).",
        ),
        th.Property(
            "null_text_check",
            th.BooleanType,
            default=True,
            title="Tell the word null from empty",
            description='A bulk export writes an empty text field and the word "null" alike; on, persons '
            "whose export shows an empty text field are re-read through leads.json (one call per 300 such "
            "persons, nearly every person of a real instance) so the word survives. Off saves those calls "
            "(a first sync of 100,000 persons: about 340 calls, over a minute of Marketo's rate limit) and "
            'reads the word "null" in a text field as empty.',
        ),
        th.Property(
            "window_days",
            th.IntegerType,
            default=30,
            title="Export window (days)",
            description="Days per bulk export window (Marketo allows at most 31).",
        ),
        th.Property(
            "export_pipeline_depth",
            th.IntegerType,
            default=3,
            title="Export windows in flight",
            description="Export jobs created ahead while a file is read (1 = one window at a time; at most "
            "10, Marketo's queue, which it shares with every integration of the subscription). Marketo "
            "processes two at once; a third queued behind them keeps both slots busy.",
        ),
        th.Property(
            "export_daily_allowance_mb",
            th.CustomType(number_setting()),
            default=500,
            title="Daily export allowance (MB)",
            description="The subscription's daily bulk export allowance, to judge the first extraction's "
            "projected size against (Marketo's default is 500 MB; the API does not report it).",
        ),
        th.Property(
            "poll_interval_seconds",
            th.CustomType(number_setting()),
            default=60,
            title="Export poll interval",
            description="Seconds between bulk export status polls (Marketo updates status at most once a minute).",
        ),
        th.Property(
            "max_daily_calls",
            th.IntegerType,
            default=10000,
            title="Daily call budget",
            description="Stop before this run spends more than this many REST calls (the "
            "subscription's quota is shared with every other integration).",
        ),
    ).to_dict()

    _client: MarketoClient | None = None

    @property
    def client(self) -> MarketoClient:
        """The run's Marketo client, built on first use from the validated settings.

        Raises:
            ConfigValidationError: A setting is malformed (the entry point names it in one line, exit 1).
        """
        if self._client is None:
            protect_secrets([self.config.get("client_secret")])
            try:
                connection = MarketoConnection.from_config(self.config)
            except ConfigurationError as exc:
                raise ConfigValidationError(str(exc), errors=[str(exc)]) from exc
            for setting in ("window_days", "poll_interval_seconds"):
                value = self.config.get(setting)
                if value is not None and (isinstance(value, bool) or float(value) < 0):
                    message = f"setting {setting!r}: must not be negative (got {value!r})"
                    raise ConfigValidationError(message, errors=[message])
            depth = self.config.get("export_pipeline_depth")
            if depth is not None and (isinstance(depth, bool) or not 1 <= int(depth) <= MAX_QUEUED):
                message = f"setting 'export_pipeline_depth': must be 1 to {MAX_QUEUED} (got {depth!r})"
                raise ConfigValidationError(message, errors=[message])
            self._client = MarketoClient(connection)
        return self._client

    def discover_streams(self) -> list[Stream]:
        """The ``marketo_leads`` stream; its schema from the input catalog when given, else one describe call.

        Meltano discovers before every run and passes the result as the catalog: reusing it keeps
        a run to one metadata call in total (docs/architecture.md §8).
        """
        client = self.client
        catalog_schema = self._catalog_schema(MarketoLeadsStream.name)
        if catalog_schema is not None:
            return [MarketoLeadsStream(self, catalog_schema, None, client)]
        lead_schema = build_lead_schema(client.describe_leads())
        return [MarketoLeadsStream(self, lead_schema.schema, lead_schema, client)]

    def _catalog_schema(self, stream_name: str) -> dict[str, Any] | None:
        catalog = self.input_catalog
        entry = catalog.get_stream(stream_name) if catalog is not None else None
        if entry is None:
            return None
        schema: dict[str, Any] = entry.schema.to_dict()
        return schema if schema.get("properties") else None


#: The console script (``[project.scripts]``): the SDK command line, a fatal error as one line (docs/architecture.md
#: §9.5).
main = plugin_main(TapMarketoLeads)

if __name__ == "__main__":
    main()
