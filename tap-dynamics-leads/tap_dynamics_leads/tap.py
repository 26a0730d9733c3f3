"""tap-dynamics-leads: Dynamics 365 leads and contacts as Singer streams (settings of docs/architecture.md §9.4)."""

from __future__ import annotations

from mktdyn_common.cli import plugin_main
from mktdyn_common.errors import ConfigurationError
from mktdyn_common.redact import protect_secrets
from mktdyn_common.settings import number_setting, proxy_property
from singer_sdk import Stream, Tap
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError

from tap_dynamics_leads.client import DataverseClient
from tap_dynamics_leads.connection import DataverseConnection
from tap_dynamics_leads.metadata import EntityDefinition
from tap_dynamics_leads.streams import STREAM_TYPES


class TapDynamicsLeads(Tap):
    """Streams Dynamics leads and contacts incrementally, with deletes, schema from Dataverse metadata."""

    name = "tap-dynamics-leads"

    config_jsonschema = th.PropertiesList(
        th.Property(
            "base_url",
            th.StringType,
            required=True,
            title="Organization URL",
            description="The environment URL, e.g. https://contoso.crm.dynamics.com (no /api/data).",
        ),
        th.Property(
            "tenant_id",
            th.StringType,
            required=True,
            title="Tenant ID",
            description="Microsoft Entra tenant (directory) ID or domain of the app registration.",
        ),
        th.Property(
            "client_id",
            th.StringType,
            required=True,
            title="Client ID",
            description="Application (client) ID of the Entra app registration.",
        ),
        th.Property(
            "client_secret",
            th.StringType,
            secret=True,
            title="Client secret",
            description="Client secret of the app registration (client_credentials flow; also sent "
            "with the password flow when set).",
        ),
        th.Property(
            "client_certificate_path",
            th.StringType,
            title="Client certificate (PEM)",
            description="PEM file with the private key and the certificate registered on the app registration "
            "(client_credentials with a certificate credential instead of client_secret; used when set).",
        ),
        th.Property(
            "client_certificate_thumbprint",
            th.StringType,
            title="Client certificate thumbprint",
            description="SHA-1 thumbprint of that certificate as Entra shows it (40 hex digits); empty computes it "
            "from the certificate in client_certificate_path.",
        ),
        th.Property(
            "auth_flow",
            th.StringType,
            default="client_credentials",
            allowed_values=["client_credentials", "password"],
            title="Authentication flow",
            description="client_credentials (an application user in Dataverse) or password (ROPC, "
            "a licensed user without MFA).",
        ),
        th.Property(
            "username",
            th.StringType,
            title="Username",
            description="User principal name for the password flow.",
        ),
        th.Property(
            "password",
            th.StringType,
            secret=True,
            title="Password",
            description="Password for the password flow.",
        ),
        th.Property(
            "authority_host",
            th.StringType,
            default="https://login.microsoftonline.com",
            title="Authority host",
            description="Entra authority host; the tenant's authority is {authority_host}/{tenant_id}.",
        ),
        th.Property(
            "start_date",
            th.DateTimeType,
            title="Start date",
            default="2000-01-01T00:00:00Z",
            description="With change tracking off: extract rows modified at or after this time on the first run.",
        ),
        th.Property(
            "ca_bundle",
            th.StringType,
            title="CA bundle",
            description="PEM file of extra certificate authorities to trust (the sandbox's CA).",
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
            default="mktdyn/0.1 (+tap-dynamics-leads)",
            title="User agent",
            description="User-Agent header sent with every request.",
        ),
        th.Property(
            "page_size",
            th.IntegerType,
            default=5000,
            title="Page size",
            description="Rows per page (odata.maxpagesize, at most 5000).",
        ),
        th.Property(
            "change_tracking",
            th.BooleanType,
            default=True,
            title="Use change tracking",
            description="Use Dataverse change tracking (delta tokens, deletes); when false or when a "
            "table has it off, use a modifiedon bookmark.",
        ),
        th.Property(
            "api_version",
            th.StringType,
            default="9.2",
            title="Web API version",
            description="Dataverse Web API version in /api/data/v{api_version}.",
        ),
    ).to_dict()

    _connection: DataverseConnection | None = None
    _client: DataverseClient | None = None
    _entities: dict[str, EntityDefinition] | None = None

    @property
    def connection(self) -> DataverseConnection:
        """The validated settings; secrets are registered for masking before anything is logged."""
        if self._connection is None:
            protect_secrets((self.config.get("client_secret"), self.config.get("password")))
            try:
                self._connection = DataverseConnection.from_config(self.config)
            except ConfigurationError as exc:
                raise ConfigValidationError(str(exc), errors=[str(exc)]) from exc
        return self._connection

    @property
    def client(self) -> DataverseClient:
        """One Dataverse client for every stream of this run (created without network I/O)."""
        if self._client is None:
            self._client = DataverseClient(self.connection)
        return self._client

    def entity(self, logical_name: str) -> EntityDefinition:
        """A table's definition with its columns: one metadata request for every stream's table, per process."""
        if self._entities is None:
            self._entities = {}
        if logical_name not in self._entities:
            # Every stream's table in the one request (discovery costs one metadata call).
            names = list(dict.fromkeys([logical_name, *(stream.logical_name for stream in STREAM_TYPES)]))
            self._entities.update(self.client.entity_definitions(names))
        return self._entities[logical_name]

    def discover_streams(self) -> list[Stream]:
        """``dynamics_leads`` and ``dynamics_contacts``, schemas from the tables' column metadata."""
        return [stream_type(self, self.entity(stream_type.logical_name)) for stream_type in STREAM_TYPES]


#: The console script (``[project.scripts]``): the SDK command line, a fatal error as one line (docs/architecture.md
#: §9.5).
main = plugin_main(TapDynamicsLeads)

if __name__ == "__main__":
    main()
