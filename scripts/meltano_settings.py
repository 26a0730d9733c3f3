"""Print the ``settings:`` blocks of meltano.yml from each plugin's config_jsonschema.

Settings are declared once, in ``config_jsonschema``; meltano.yml mirrors them. Run this after changing a
setting and paste its output; ``tests/test_meltano_project.py`` fails while the two disagree.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml
from tap_dynamics_leads.tap import TapDynamicsLeads
from tap_marketo_leads.tap import TapMarketoLeads
from target_mktdyn_merge.plugin.target import TargetMktdynMerge

PLUGINS: dict[str, Any] = {
    "tap-marketo-leads": TapMarketoLeads,
    "tap-dynamics-leads": TapDynamicsLeads,
    "target-mktdyn-merge": TargetMktdynMerge,
}


def meltano_kind(schema: dict[str, Any]) -> str:
    """The Meltano setting kind of a JSON Schema property.

    A number that may also come as its text (``mktdyn_common.settings.number_setting``) is
    ``string``: Meltano 4.4 turns a ``decimal`` given by environment variable into a ``Decimal`` it cannot
    serialise, so the plugin reads the text instead.
    """
    types = schema.get("type", "string")
    types = [types] if isinstance(types, str) else [t for t in types if t != "null"]
    if {"number", "string"} <= set(types):
        return "string"
    kind = types[0] if types else "string"
    if schema.get("format") == "date-time":
        return "date_iso8601"
    if schema.get("enum"):
        return "options"
    return {
        "string": "string",
        "integer": "integer",
        "number": "decimal",
        "boolean": "boolean",
        "object": "object",
        "array": "array",
    }.get(kind, "string")


def sdk_builtin_settings(plugin: Any) -> set[str]:
    """Settings the SDK itself adds (stream maps, flattening, batch); Meltano knows them already.

    The SDK appends them to the class's ``config_jsonschema`` in place once a plugin has run in the process,
    so they are recognised by name rather than by the schema's state.
    """
    probe: dict[str, Any] = {"properties": {}}
    plugin.append_builtin_config(probe)
    return set(probe["properties"])


def settings_for(schema: dict[str, Any], exclude: set[str] | frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """Meltano setting definitions mirroring a config_jsonschema (without the ``exclude``d names)."""
    settings = []
    for name, prop in schema["properties"].items():
        if name in exclude:
            continue
        setting: dict[str, Any] = {"name": name, "label": prop.get("title", name), "kind": meltano_kind(prop)}
        if prop.get("description"):
            setting["description"] = prop["description"]
        if prop.get("enum"):
            setting["options"] = [{"label": str(v), "value": v} for v in prop["enum"] if v is not None]
        if prop.get("secret"):
            setting["sensitive"] = True
        if prop.get("default") is not None:
            setting["value"] = prop["default"]
        settings.append(setting)
    return settings


def declared_settings(plugin: Any) -> list[dict[str, Any]]:
    """What meltano.yml declares for ``plugin``: its own settings, then the SDK's (stream maps, flattening...).

    Meltano knows nothing of the SDK's settings, so undeclared they would be refused by ``meltano config``; the
    SDK's are taken from a fresh probe, since it may have appended them to ``config_jsonschema`` already.
    """
    builtins: dict[str, Any] = {"properties": {}}
    plugin.append_builtin_config(builtins)
    plain = json.loads(json.dumps(builtins))  # the SDK's defaults are str enums; YAML wants plain strings
    return settings_for(plugin.config_jsonschema, set(builtins["properties"])) + settings_for(plain)


def write(path: Path) -> None:
    """Rewrite the settings of our plugins in meltano.yml, keeping everything else."""
    project = yaml.safe_load(path.read_text())
    for group in project.get("plugins", {}).values():
        for plugin in group:
            if plugin["name"] in PLUGINS:
                plugin["settings"] = declared_settings(PLUGINS[plugin["name"]])
    path.write_text(yaml.safe_dump(project, sort_keys=False, allow_unicode=True, width=110))


def main() -> int:
    """Print one YAML document per plugin, or rewrite meltano.yml with --write."""
    if "--write" in sys.argv:
        write(Path(__file__).resolve().parent.parent / "meltano.yml")
        return 0
    for name, plugin in PLUGINS.items():
        sys.stdout.write(f"# {name}\n")
        sys.stdout.write(
            yaml.safe_dump({"settings": declared_settings(plugin)}, sort_keys=False, allow_unicode=True, width=110)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
