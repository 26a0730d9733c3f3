"""Setting types shared by the plugins' ``config_jsonschema``."""

from __future__ import annotations

from typing import Any

from singer_sdk import typing as th

#: A non-negative decimal number such as ``0.5`` or ``30``.
DECIMAL_TEXT = r"^\s*[0-9]+(\.[0-9]+)?\s*$"


def number_setting() -> dict[str, Any]:
    """The JSON Schema of a numeric setting (seconds, intervals) that also accepts its decimal text.

    Meltano 4.4 reads a ``kind: decimal`` setting given by environment variable as a ``Decimal`` and then
    fails to serialise it ("Object of type Decimal is not JSON serializable"). The mirror in meltano.yml
    therefore declares such settings ``kind: string`` (see ``scripts/meltano_settings.py``); the plugin gets
    ``"30"`` from the environment, ``30`` from meltano.yml, and reads both with ``float()``. The pattern keeps
    any other text out, with the setting named by the SDK's validation.
    """
    return {"type": ["number", "string"], "pattern": DECIMAL_TEXT}  # a pattern applies to strings only


def proxy_property() -> th.Property[Any]:
    """The ``proxy`` setting, the same in both taps (the target mirrors it as ``marketo_``/``dynamics_proxy``)."""
    return th.Property(
        "proxy",
        th.StringType,
        secret=True,
        title="HTTPS proxy",
        description="URL of the HTTP(S) proxy for this connection, e.g. http://proxy.example.com:3128 "
        "(credentials in the URL are kept out of logs); empty uses HTTPS_PROXY/HTTP_PROXY/NO_PROXY from the "
        "environment. HTTPS is tunnelled and still verified against ca_bundle.",
    )
