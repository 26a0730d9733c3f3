"""The service document, ``$metadata`` and ``EntityDefinitions`` (reference §4.1).

These are what schema discovery and Microsoft's client call before anything else: entity-set
resolution by ``$filter=LogicalName eq 'lead'``, the picklist cast with ``$expand=OptionSet``, and the
type casts that expose MaxLength, Targets and DateTimeBehavior. Metadata answers are never paged.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from mktdyn_sandbox.dataverse import errors, odata_filter
from mktdyn_sandbox.dataverse.metadata import (
    BASE_PROPERTIES,
    DERIVED_PROPERTIES,
    ENTITIES,
    OPTIONSET_TYPES,
    Attribute,
    Entity,
    attribute_json,
    csdl,
    entity_json,
    metadata_id,
    optionset_json,
)
from mktdyn_sandbox.dataverse.odata import API_PATH, api_base, odata_json
from mktdyn_sandbox.web import Request, Response, Router

_KEY = re.compile(r"^\s*(?:LogicalName\s*=\s*'(?P<name>[^']*)'|(?P<id>[0-9A-Fa-f-]{36}))\s*$")
_ATTRIBUTE_PATH = re.compile(r"^/Attributes(?:\((?P<key>[^)]*)\))?(?:/Microsoft\.Dynamics\.CRM\.(?P<cast>\w+))?$")


def split_top_level(text: str, separator: str) -> list[str]:
    """Split on ``separator`` outside parentheses and quotes (``$expand`` nests options)."""
    parts: list[str] = []
    current: list[str] = []
    depth, quoted = 0, False
    for char in text:
        if char == "'":
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        if char == separator and depth == 0 and not quoted:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    if "".join(current).strip():
        parts.append("".join(current).strip())
    return parts


def parse_expand(raw: str | None) -> dict[str, dict[str, str]]:
    """``Attributes($select=a,b;$filter=x),OptionSet`` -> ``{"Attributes": {"$select": "a,b", ...}, ...}``."""
    expanded: dict[str, dict[str, str]] = {}
    for item in split_top_level(raw or "", ","):
        name, _, rest = item.partition("(")
        options: dict[str, str] = {}
        if rest:
            for option in split_top_level(rest.removesuffix(")"), ";"):
                key, _, value = option.partition("=")
                options[key.strip()] = value.strip()
        expanded[name.strip()] = options
    return expanded


def _lookup(item: dict[str, Any]) -> Callable[[str], Any]:
    def get(path: str) -> Any:
        value: Any = item
        for part in path.split("/"):
            value = value.get(part) if isinstance(value, dict) else None
        return value

    return get


def _apply_filter(items: list[dict[str, Any]], raw: str | None) -> list[dict[str, Any]]:
    if not raw:
        return items
    try:
        node = odata_filter.parse(raw)
    except odata_filter.FilterError as exc:
        raise errors.bad_request(errors.UNKNOWN_PROPERTY, str(exc)) from exc
    return [item for item in items if odata_filter.evaluate(node, _lookup(item))]


def _select(
    body: dict[str, Any],
    raw: str | None,
    allowed: tuple[str, ...] | set[str],
    type_name: str,
    always: tuple[str, ...] = ("MetadataId",),
) -> dict[str, Any]:
    if not raw:
        return body
    names = [name.strip() for name in raw.split(",") if name.strip()]
    for name in names:
        if name not in allowed:
            raise errors.bad_request(
                errors.UNKNOWN_PROPERTY,
                f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{type_name}'.",
            )
    keep = set(names) | set(always) | {"@odata.type"}
    return {key: value for key, value in body.items() if key in keep}


class MetadataApi:
    """Handlers of the metadata routes."""

    def __init__(
        self, change_tracking: Callable[[str], bool], alternate_keys: Callable[[str], list[list[str]]]
    ) -> None:
        self._change_tracking = change_tracking
        self._alternate_keys = alternate_keys

    def register(self, router: Router) -> None:
        """Add the metadata routes."""
        add = router.add
        add("GET", rf"{API_PATH}/?", self.service_document, "dataverse service document", "metadata")
        add("GET", rf"{API_PATH}/\$metadata", self.csdl, "dataverse $metadata", "metadata")
        add("GET", rf"{API_PATH}/EntityDefinitions", self.entity_definitions, "dataverse EntityDefinitions", "metadata")
        add(
            "GET",
            rf"{API_PATH}/EntityDefinitions\((?P<key>[^)]*)\)(?P<rest>/.*)?",
            self.entity_definition,
            "dataverse EntityDefinitions(key)",
            "metadata",
        )

    def service_document(self, request: Request) -> Response:
        """``GET /api/data/v9.2/``: the entity sets (some clients call it as a connection check)."""
        return odata_json(
            {
                "@odata.context": f"{api_base(request)}/$metadata",
                "value": [
                    {"name": entity.entity_set, "kind": "EntitySet", "url": entity.entity_set}
                    for entity in ENTITIES.values()
                ]
                + [{"name": "EntityDefinitions", "kind": "EntitySet", "url": "EntityDefinitions"}],
            }
        )

    def csdl(self, request: Request) -> Response:
        """``$metadata`` as CSDL XML (``?annotations=true`` adds the change-tracking annotations)."""
        annotations = (request.param("annotations") or "").lower() == "true"
        tracking = {name: self._change_tracking(name) for name in ENTITIES}
        response = Response.text(csdl(tracking, annotations), content_type="application/xml")
        response.headers["OData-Version"] = "4.0"
        return response

    # -- tables -----------------------------------------------------------------------------------------
    def _entity_body(
        self, request: Request, entity: Entity, select: str | None, expand: dict[str, dict[str, str]]
    ) -> dict[str, Any]:
        full = entity_json(entity, self._change_tracking(entity.logical_name))
        body = _select(full, select, set(full), "EntityMetadata")
        for name, options in expand.items():
            if name != "Attributes":
                raise errors.bad_request(
                    errors.UNKNOWN_PROPERTY,
                    f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.EntityMetadata'.",
                )
            body["Attributes"] = self._attributes(entity, options, cast=None)
        return body

    def entity_definitions(self, request: Request) -> Response:
        """``EntityDefinitions`` with ``$select``, ``$filter`` and ``$expand=Attributes(...)``."""
        expand = parse_expand(request.param("$expand"))
        tables = [entity_json(e, self._change_tracking(e.logical_name)) for e in ENTITIES.values()]
        names = {item["LogicalName"] for item in _apply_filter(tables, request.param("$filter"))}
        select = request.param("$select")
        value = [
            self._entity_body(request, entity, select, expand)
            for entity in ENTITIES.values()
            if entity.logical_name in names
        ]
        context = f"{api_base(request)}/$metadata#EntityDefinitions" + (f"({select})" if select else "")
        return odata_json({"@odata.context": context, "value": value})

    def _entity(self, key: str) -> Entity:
        match = _KEY.match(key)
        if match is not None:
            for entity in ENTITIES.values():
                if match["name"] == entity.logical_name or (match["id"] or "").lower() == entity.metadata_id:
                    return entity
        raise errors.DataverseError(404, errors.NOT_FOUND, f"Could not find an entity with key '{key}'.")

    def entity_definition(self, request: Request, key: str, rest: str = "") -> Response:
        """``EntityDefinitions(<key>)`` and its ``/Attributes``, casts, relationships and keys."""
        entity = self._entity(key)
        base = f"{api_base(request)}/$metadata#EntityDefinitions('{entity.metadata_id}')"
        select = request.param("$select")
        if not rest:
            body = self._entity_body(request, entity, select, parse_expand(request.param("$expand")))
            return odata_json(
                {
                    "@odata.context": f"{api_base(request)}/$metadata#EntityDefinitions"
                    f"{'(' + select + ')' if select else ''}/$entity",
                    **body,
                }
            )
        if rest == "/ManyToOneRelationships":
            return odata_json(
                {
                    "@odata.context": f"{base}/ManyToOneRelationships",
                    "value": [
                        _select(relationship, select, set(relationship), "OneToManyRelationshipMetadata")
                        for relationship in self._relationships(entity)
                    ],
                }
            )
        if rest == "/Keys":
            keys = [
                {
                    "MetadataId": metadata_id(entity.logical_name, "key", *columns),
                    "LogicalName": f"{entity.logical_name}_{'_'.join(columns)}_key",
                    "KeyAttributes": columns,
                    "EntityLogicalName": entity.logical_name,
                    "EntityKeyIndexStatus": "Active",
                }
                for columns in self._alternate_keys(entity.logical_name)
            ]
            return odata_json({"@odata.context": f"{base}/Keys", "value": keys})
        match = _ATTRIBUTE_PATH.match(rest)
        if match is None:
            raise errors.DataverseError(404, errors.UNKNOWN_PROPERTY, f"Resource not found for the segment '{rest}'.")
        cast = match["cast"]
        if cast is not None and cast not in DERIVED_PROPERTIES:
            raise errors.bad_request(
                errors.UNKNOWN_PROPERTY,
                f"Type 'Microsoft.Dynamics.CRM.{cast}' cannot be "
                "used to cast attributes (use a concrete *AttributeMetadata type).",
            )
        options = {name: request.param(name) or "" for name in ("$select", "$filter", "$expand")}
        if match["key"] is None:
            value = self._attributes(entity, options, cast)
            suffix = f"/Microsoft.Dynamics.CRM.{cast}" if cast else ""
            return odata_json({"@odata.context": f"{base}/Attributes{suffix}", "value": value})
        attribute_key = _KEY.match(match["key"])
        found = [
            a
            for a in entity.attributes
            if attribute_key is not None
            and (
                a.logical_name == attribute_key["name"]
                or metadata_id(entity.logical_name, a.logical_name) == (attribute_key["id"] or "").lower()
            )
        ]
        if not found or (cast is not None and found[0].metadata_type != cast):
            raise errors.DataverseError(
                404,
                errors.NOT_FOUND,
                f"Could not find attribute {match['key']} of {entity.logical_name}{' as ' + cast if cast else ''}.",
            )
        index = entity.attributes.index(found[0])
        body = self._attribute(entity, found[0], index, options, cast)
        return odata_json({"@odata.context": f"{base}/Attributes/$entity", **body})

    # -- columns ----------------------------------------------------------------------------------------
    def _attributes(self, entity: Entity, options: dict[str, str], cast: str | None) -> list[dict[str, Any]]:
        chosen = [(i, a) for i, a in enumerate(entity.attributes) if cast is None or a.metadata_type == cast]
        full = [attribute_json(entity, a, i) for i, a in chosen]
        kept = {item["LogicalName"] for item in _apply_filter(full, options.get("$filter"))}
        return [self._attribute(entity, a, i, options, cast) for i, a in chosen if a.logical_name in kept]

    def _attribute(
        self, entity: Entity, attribute: Attribute, index: int, options: dict[str, str], cast: str | None
    ) -> dict[str, Any]:
        body = attribute_json(entity, attribute, index)
        allowed = set(BASE_PROPERTIES) | set(DERIVED_PROPERTIES.get(cast or "", ()))
        body = _select(body, options.get("$select"), allowed, cast or "AttributeMetadata")
        for name, nested in parse_expand(options.get("$expand")).items():
            if name not in ("OptionSet", "GlobalOptionSet") or cast not in OPTIONSET_TYPES:
                raise errors.bad_request(
                    errors.UNKNOWN_PROPERTY,
                    f"Could not find a property named '{name}' on "
                    f"type 'Microsoft.Dynamics.CRM.{cast or 'AttributeMetadata'}'.",
                )
            if attribute.metadata_type != cast:
                continue
            if name == "GlobalOptionSet":
                body["GlobalOptionSet"] = None  # every option set here is local to its column
                continue
            optionset = optionset_json(entity, attribute)
            body["OptionSet"] = _select(optionset, nested.get("$select"), set(optionset), "OptionSetMetadataBase")
        return body

    @staticmethod
    def _relationships(entity: Entity) -> list[dict[str, Any]]:
        relationships = []
        for nav, (attribute, targets) in entity.binds.items():
            for target in targets:
                relationships.append(
                    {
                        "MetadataId": metadata_id(entity.logical_name, nav, target),
                        "SchemaName": f"{entity.logical_name}_{nav}_{target}",
                        "ReferencingEntity": entity.logical_name,
                        "ReferencingAttribute": attribute.logical_name,
                        "ReferencedEntity": target,
                        "ReferencedAttribute": f"{target}id",
                        "ReferencingEntityNavigationPropertyName": nav,
                        "RelationshipType": "OneToManyRelationship",
                    }
                )
        return relationships
