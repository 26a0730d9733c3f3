"""The lead and contact tables as Dataverse describes them: columns, option sets, writability.

One declaration drives everything else: write validation (types, MaxLength, option values,
IsValidForCreate/Update), what a row GET returns (IsValidForRead, lookups as ``_x_value``), the
``EntityDefinitions`` answers (reference §4.1, with the ``@odata.type`` casts clients need for
type-specific properties), and the CSDL of ``$metadata``. Values follow the generated table reference
(reference §2.4); ``new_*``/``mkt_*`` columns are the custom ones docs/architecture.md §9.2 promises.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import quoteattr

_NAMESPACE = uuid.UUID("6f1c1f5e-2b9a-4b8e-9a55-9d0c4f1e2a10")

#: AttributeType -> the derived metadata type of its ``@odata.type`` (and of the URL casts).
METADATA_TYPES = {
    "String": "StringAttributeMetadata",
    "Memo": "MemoAttributeMetadata",
    "Integer": "IntegerAttributeMetadata",
    "BigInt": "BigIntAttributeMetadata",
    "Boolean": "BooleanAttributeMetadata",
    "DateTime": "DateTimeAttributeMetadata",
    "Picklist": "PicklistAttributeMetadata",
    "State": "StateAttributeMetadata",
    "Status": "StatusAttributeMetadata",
    "Lookup": "LookupAttributeMetadata",
    "Customer": "LookupAttributeMetadata",
    "Owner": "LookupAttributeMetadata",
    "Uniqueidentifier": "UniqueIdentifierAttributeMetadata",
    "Virtual": "AttributeMetadata",
}
#: Properties each derived metadata type adds to the base ``AttributeMetadata``.
DERIVED_PROPERTIES: dict[str, tuple[str, ...]] = {
    "StringAttributeMetadata": ("MaxLength", "DatabaseLength", "Format", "FormatName", "IsLocalizable"),
    "MemoAttributeMetadata": ("MaxLength", "DatabaseLength", "Format"),
    "IntegerAttributeMetadata": ("MinValue", "MaxValue", "Format"),
    "BigIntAttributeMetadata": ("MinValue", "MaxValue"),
    "BooleanAttributeMetadata": ("DefaultValue",),
    "DateTimeAttributeMetadata": ("Format", "DateTimeBehavior", "MinSupportedValue", "MaxSupportedValue"),
    "PicklistAttributeMetadata": ("DefaultFormValue",),
    "StateAttributeMetadata": ("DefaultFormValue",),
    "StatusAttributeMetadata": ("DefaultFormValue",),
    "LookupAttributeMetadata": ("Targets", "Format"),
    "UniqueIdentifierAttributeMetadata": (),
    "AttributeMetadata": (),
}
#: Navigation properties of the option-set types, only present when ``$expand``-ed.
OPTIONSET_TYPES = {
    "PicklistAttributeMetadata",
    "StateAttributeMetadata",
    "StatusAttributeMetadata",
    "BooleanAttributeMetadata",
}
BASE_PROPERTIES = (
    "MetadataId",
    "LogicalName",
    "SchemaName",
    "EntityLogicalName",
    "AttributeType",
    "AttributeTypeName",
    "AttributeOf",
    "ColumnNumber",
    "DisplayName",
    "Description",
    "RequiredLevel",
    "IsValidForCreate",
    "IsValidForUpdate",
    "IsValidForRead",
    "IsValidODataAttribute",
    "IsCustomAttribute",
    "IsPrimaryId",
    "IsPrimaryName",
    "IsLogical",
    "IsManaged",
    "IsValidForAdvancedFind",
    "IsAuditEnabled",
    "SourceType",
)
#: AttributeType -> the Edm type of the property in CSDL.
EDM_TYPES = {
    "String": "Edm.String",
    "Memo": "Edm.String",
    "Integer": "Edm.Int32",
    "BigInt": "Edm.Int64",
    "Boolean": "Edm.Boolean",
    "DateTime": "Edm.DateTimeOffset",
    "Picklist": "Edm.Int32",
    "State": "Edm.Int32",
    "Status": "Edm.Int32",
    "Lookup": "Edm.Guid",
    "Customer": "Edm.Guid",
    "Owner": "Edm.Guid",
    "Uniqueidentifier": "Edm.Guid",
}
LOOKUP_TYPES = ("Lookup", "Customer", "Owner")
OPTION_TYPES = ("Picklist", "State", "Status")
#: Entity sets of lookup targets; only leads and contacts are stored (and checked for existence).
ENTITY_SETS = {
    "lead": "leads",
    "contact": "contacts",
    "account": "accounts",
    "systemuser": "systemusers",
    "team": "teams",
}
DEFAULT_OWNER_ID = "5f2a1d3c-0b7e-4c11-9a2e-8d3c0f6b1a01"


def metadata_id(*parts: str) -> str:
    """A stable MetadataId, so repeated metadata reads (and restarts) agree."""
    return str(uuid.uuid5(_NAMESPACE, "/".join(parts)))


@dataclass(frozen=True)
class Option:
    """One option of a choice, state or status column."""

    value: int
    label: str
    state: int | None = None
    default_status: int | None = None
    invariant_name: str | None = None


@dataclass(frozen=True)
class Attribute:
    """One column of a table, with the properties validation and metadata answers need."""

    logical_name: str
    schema_name: str
    attribute_type: str
    display_name: str = ""
    required: str = "None"
    max_length: int | None = None
    format_name: str | None = None
    options: tuple[Option, ...] = ()
    targets: tuple[str, ...] = ()
    behavior: str | None = None
    valid_for_create: bool = True
    valid_for_update: bool = True
    valid_for_read: bool = True
    custom: bool = False
    attribute_of: str | None = None
    type_name: str | None = None
    default: Any = None

    @property
    def is_lookup(self) -> bool:
        """Lookups are read as ``_x_value`` and written as ``x@odata.bind``."""
        return self.attribute_type in LOOKUP_TYPES

    @property
    def read_name(self) -> str:
        """The property name rows carry for this column."""
        return f"_{self.logical_name}_value" if self.is_lookup else self.logical_name

    @property
    def metadata_type(self) -> str:
        """The derived metadata type (``StringAttributeMetadata`` ...)."""
        return METADATA_TYPES[self.attribute_type]

    @property
    def date_only(self) -> bool:
        """DateOnly columns read and write ``YYYY-MM-DD``."""
        return self.behavior == "DateOnly"

    def bind_names(self) -> dict[str, tuple[str, ...]]:
        """``navigation property -> target logical names`` accepted as ``<nav>@odata.bind``.

        Customer columns have one navigation property per target (``parentcustomerid_contact``); an
        owner takes either a user or a team through ``ownerid``.
        """
        if self.attribute_type == "Customer":
            return {f"{self.logical_name}_{target}": (target,) for target in self.targets}
        return {self.logical_name: self.targets}

    def option(self, value: int) -> Option | None:
        """The option with this value, if the column has it."""
        return next((option for option in self.options if option.value == value), None)


@dataclass(frozen=True)
class Entity:
    """One table: names, keys and columns."""

    logical_name: str
    schema_name: str
    entity_set: str
    primary_id: str
    primary_name: str
    object_type_code: int
    display_name: str
    attributes: tuple[Attribute, ...]
    by_name: dict[str, Attribute] = field(init=False, compare=False, hash=False)
    by_read_name: dict[str, Attribute] = field(init=False, compare=False, hash=False)
    binds: dict[str, tuple[Attribute, tuple[str, ...]]] = field(init=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {a.logical_name: a for a in self.attributes})
        object.__setattr__(self, "by_read_name", {a.read_name: a for a in self.attributes if a.valid_for_read})
        binds = {nav: (a, targets) for a in self.attributes if a.is_lookup for nav, targets in a.bind_names().items()}
        object.__setattr__(self, "binds", binds)

    @property
    def metadata_id(self) -> str:
        """The table's MetadataId."""
        return metadata_id(self.logical_name)

    def readable(self) -> list[Attribute]:
        """Columns a row GET returns (virtual and unreadable columns skipped)."""
        return [a for a in self.attributes if a.valid_for_read and a.attribute_type != "Virtual"]


def _string(
    name: str, schema: str, length: int, display: str, required: str = "None", fmt: str = "Text", **kw: Any
) -> Attribute:
    return Attribute(name, schema, "String", display, required, max_length=length, format_name=fmt, **kw)


def _options(*labels: str, start: int = 1) -> tuple[Option, ...]:
    return tuple(Option(start + i, label) for i, label in enumerate(labels))


def _boolean(
    name: str,
    schema: str,
    display: str,
    true: str = "Yes",
    false: str = "No",
    custom: bool = True,
    default: bool = False,
) -> Attribute:
    return Attribute(
        name, schema, "Boolean", display, options=(Option(1, true), Option(0, false)), custom=custom, default=default
    )


def _address(prefix: str) -> tuple[Attribute, ...]:
    return (
        _string(f"{prefix}_line1", "Address1_Line1", 250, "Street 1"),
        _string(f"{prefix}_city", "Address1_City", 80, "City"),
        _string(f"{prefix}_stateorprovince", "Address1_StateOrProvince", 50, "State/Province"),
        _string(f"{prefix}_postalcode", "Address1_PostalCode", 20, "ZIP/Postal Code"),
        _string(f"{prefix}_country", "Address1_Country", 80, "Country/Region"),
    )


LEAD_SOURCES = _options(
    "Advertisement",
    "Employee Referral",
    "External Referral",
    "Partner",
    "Public Relations",
    "Seminar",
    "Trade Show",
    "Web",
    "Word of Mouth",
    "Other",
)


def _system_columns() -> tuple[Attribute, ...]:
    return (
        Attribute(
            "createdon",
            "CreatedOn",
            "DateTime",
            "Created On",
            behavior="UserLocal",
            valid_for_create=False,
            valid_for_update=False,
        ),
        Attribute(
            "modifiedon",
            "ModifiedOn",
            "DateTime",
            "Modified On",
            behavior="UserLocal",
            valid_for_create=False,
            valid_for_update=False,
        ),
        Attribute(
            "versionnumber", "VersionNumber", "BigInt", "Version Number", valid_for_create=False, valid_for_update=False
        ),
        Attribute("ownerid", "OwnerId", "Owner", "Owner", "SystemRequired", targets=("systemuser", "team")),
        _string("fullname", "FullName", 160, "Name", valid_for_create=False, valid_for_update=False),
        _boolean("new_synctomkto", "new_SyncToMkto", "Sync to Marketo"),
        _boolean("mkt_deletedinmarketo", "mkt_DeletedInMarketo", "Deleted in Marketo"),
        _boolean("donotbulkemail", "DoNotBulkEMail", "Do not allow Bulk Emails", "Do Not Allow", "Allow", custom=False),
        Attribute("leadsourcecode", "LeadSourceCode", "Picklist", "Lead Source", options=LEAD_SOURCES),
    )


LEAD = Entity(
    logical_name="lead",
    schema_name="Lead",
    entity_set="leads",
    primary_id="leadid",
    primary_name="fullname",
    object_type_code=4,
    display_name="Lead",
    attributes=(
        Attribute("leadid", "LeadId", "Uniqueidentifier", "Lead", "SystemRequired", valid_for_update=False),
        _string("subject", "Subject", 300, "Topic", "ApplicationRequired"),
        _string("firstname", "FirstName", 50, "First Name", "Recommended"),
        _string("lastname", "LastName", 50, "Last Name", "ApplicationRequired"),
        _string("companyname", "CompanyName", 100, "Company Name", "Recommended"),
        _string("jobtitle", "JobTitle", 100, "Job Title"),
        _string("emailaddress1", "EMailAddress1", 100, "Email", fmt="Email"),
        _string("emailaddress2", "EMailAddress2", 100, "Email Address 2", fmt="Email"),
        _string("emailaddress3", "EMailAddress3", 100, "Email Address 3", fmt="Email"),
        _string("telephone1", "Telephone1", 50, "Business Phone", fmt="Phone"),
        _string("telephone2", "Telephone2", 50, "Home Phone", fmt="Phone"),
        _string("telephone3", "Telephone3", 50, "Other Phone", fmt="Phone"),
        _string("mobilephone", "MobilePhone", 50, "Mobile Phone", fmt="Phone"),
        _string("websiteurl", "WebSiteUrl", 200, "Website", fmt="Url"),
        *_address("address1"),
        Attribute("leadqualitycode", "LeadQualityCode", "Picklist", "Rating", options=_options("Hot", "Warm", "Cold")),
        Attribute(
            "statecode",
            "StateCode",
            "State",
            "Status",
            "SystemRequired",
            valid_for_create=False,
            options=(
                Option(0, "Open", default_status=1, invariant_name="Open"),
                Option(1, "Qualified", default_status=3, invariant_name="Qualified"),
                Option(2, "Disqualified", default_status=4, invariant_name="Disqualified"),
            ),
        ),
        Attribute(
            "statuscode",
            "StatusCode",
            "Status",
            "Status Reason",
            options=(
                Option(1, "New", state=0),
                Option(2, "Contacted", state=0),
                Option(3, "Qualified", state=1),
                Option(4, "Lost", state=2),
                Option(5, "Cannot Contact", state=2),
                Option(6, "No Longer Interested", state=2),
                Option(7, "Canceled", state=2),
            ),
        ),
        Attribute("parentcontactid", "ParentContactId", "Lookup", "Existing Contact", targets=("contact",)),
        Attribute("parentaccountid", "ParentAccountId", "Lookup", "Existing Account", targets=("account",)),
        Attribute("customerid", "CustomerId", "Customer", "Customer", targets=("account", "contact")),
        Attribute(
            "new_lastcontacteddate",
            "new_LastContactedDate",
            "DateTime",
            "Last Contacted",
            behavior="DateOnly",
            custom=True,
        ),
        Attribute(
            "leadsourcecodename",
            "LeadSourceCodeName",
            "Virtual",
            valid_for_create=False,
            valid_for_update=False,
            valid_for_read=False,
            attribute_of="leadsourcecode",
            type_name="VirtualType",
        ),
        *_system_columns(),
    ),
)

CONTACT = Entity(
    logical_name="contact",
    schema_name="Contact",
    entity_set="contacts",
    primary_id="contactid",
    primary_name="fullname",
    object_type_code=2,
    display_name="Contact",
    attributes=(
        Attribute("contactid", "ContactId", "Uniqueidentifier", "Contact", "SystemRequired", valid_for_update=False),
        _string("firstname", "FirstName", 50, "First Name", "Recommended"),
        _string("lastname", "LastName", 50, "Last Name", "ApplicationRequired"),
        _string("emailaddress1", "EMailAddress1", 100, "Email", fmt="Email"),
        _string("jobtitle", "JobTitle", 100, "Job Title"),
        _string("telephone1", "Telephone1", 50, "Business Phone", fmt="Phone"),
        _string("mobilephone", "MobilePhone", 50, "Mobile Phone", fmt="Phone"),
        _string("websiteurl", "WebSiteUrl", 200, "Website", fmt="Url"),
        *_address("address1"),
        Attribute(
            "statecode",
            "StateCode",
            "State",
            "Status",
            "SystemRequired",
            valid_for_create=False,
            options=(
                Option(0, "Active", default_status=1, invariant_name="Active"),
                Option(1, "Inactive", default_status=2, invariant_name="Inactive"),
            ),
        ),
        Attribute(
            "statuscode",
            "StatusCode",
            "Status",
            "Status Reason",
            options=(Option(1, "Active", state=0), Option(2, "Inactive", state=1)),
        ),
        Attribute("parentcustomerid", "ParentCustomerId", "Customer", "Company Name", targets=("account", "contact")),
        Attribute("originatingleadid", "OriginatingLeadId", "Lookup", "Originating Lead", targets=("lead",)),
        Attribute("birthdate", "BirthDate", "DateTime", "Birthday", behavior="DateOnly"),
        Attribute(
            "leadsourcecodename",
            "LeadSourceCodeName",
            "Virtual",
            valid_for_create=False,
            valid_for_update=False,
            valid_for_read=False,
            attribute_of="leadsourcecode",
            type_name="VirtualType",
        ),
        *_system_columns(),
    ),
)

ENTITIES: dict[str, Entity] = {"lead": LEAD, "contact": CONTACT}
BY_ENTITY_SET: dict[str, Entity] = {entity.entity_set: entity for entity in ENTITIES.values()}


# -- JSON renderings ----------------------------------------------------------------------------------
def label(text: str, *parts: str) -> dict[str, Any]:
    """A ``Label`` complex value in English (1033), as metadata answers carry them."""
    if not text:
        return {"LocalizedLabels": [], "UserLocalizedLabel": None}
    localized = {
        "Label": text,
        "LanguageCode": 1033,
        "IsManaged": True,
        "MetadataId": metadata_id("label", *parts),
        "HasChanged": None,
    }
    return {"LocalizedLabels": [localized], "UserLocalizedLabel": localized}


def _managed(value: Any, name: str) -> dict[str, Any]:
    return {"Value": value, "CanBeChanged": True, "ManagedPropertyLogicalName": name}


def option_json(entity: Entity, attribute: Attribute, option: Option) -> dict[str, Any]:
    """One option as ``OptionSet.Options[]`` renders it (State/DefaultStatus on status and state)."""
    body: dict[str, Any] = {
        "Value": option.value,
        "Color": None,
        "IsManaged": True,
        "ExternalValue": None,
        "ParentValues": [],
        "Tag": None,
        "IsHidden": False,
        "MetadataId": None,
        "HasChanged": None,
        "Label": label(option.label, entity.logical_name, attribute.logical_name, str(option.value)),
        "Description": label(""),
    }
    if attribute.attribute_type == "Status":
        body["State"] = option.state
    if attribute.attribute_type == "State":
        body["DefaultStatus"] = option.default_status
        body["InvariantName"] = option.invariant_name
    return body


def optionset_json(entity: Entity, attribute: Attribute) -> dict[str, Any]:
    """The local option set of a choice/state/status/two-option column."""
    body: dict[str, Any] = {
        "MetadataId": metadata_id(entity.logical_name, attribute.logical_name, "optionset"),
        "Name": f"{entity.logical_name}_{attribute.logical_name}",
        "IsGlobal": False,
        "IsCustomOptionSet": attribute.custom,
        "IsManaged": True,
        "ParentOptionSetName": None,
        "ExternalTypeName": None,
        "DisplayName": label(attribute.display_name, entity.logical_name, attribute.logical_name, "optionset"),
        "Description": label(""),
        "HasChanged": None,
    }
    if attribute.attribute_type == "Boolean":
        by_value = {o.value: o for o in attribute.options}
        body["OptionSetType"] = "Boolean"
        body["TrueOption"] = option_json(entity, attribute, by_value[1])
        body["FalseOption"] = option_json(entity, attribute, by_value[0])
    else:
        body["OptionSetType"] = attribute.attribute_type
        body["Options"] = [option_json(entity, attribute, option) for option in attribute.options]
    return body


def attribute_json(entity: Entity, attribute: Attribute, index: int) -> dict[str, Any]:
    """Every property of a column, base and derived (navigation properties excluded)."""
    type_name = attribute.type_name or {"Uniqueidentifier": "UniqueidentifierType"}.get(
        attribute.attribute_type, f"{attribute.attribute_type}Type"
    )
    body: dict[str, Any] = {
        "@odata.type": f"#Microsoft.Dynamics.CRM.{attribute.metadata_type}",
        "MetadataId": metadata_id(entity.logical_name, attribute.logical_name),
        "LogicalName": attribute.logical_name,
        "SchemaName": attribute.schema_name,
        "EntityLogicalName": entity.logical_name,
        "AttributeType": attribute.attribute_type,
        "AttributeTypeName": {"Value": type_name},
        "AttributeOf": attribute.attribute_of,
        "ColumnNumber": index + 1,
        "DisplayName": label(attribute.display_name, entity.logical_name, attribute.logical_name),
        "Description": label(""),
        "RequiredLevel": _managed(attribute.required, "canmodifyrequirementlevelsettings"),
        "IsValidForCreate": attribute.valid_for_create,
        "IsValidForUpdate": attribute.valid_for_update,
        "IsValidForRead": attribute.valid_for_read,
        "IsValidODataAttribute": attribute.attribute_type != "Virtual",
        "IsCustomAttribute": attribute.custom,
        "IsPrimaryId": attribute.logical_name == entity.primary_id,
        "IsPrimaryName": attribute.logical_name == entity.primary_name,
        "IsLogical": False,
        "IsManaged": True,
        "IsValidForAdvancedFind": _managed(attribute.valid_for_read, "canmodifysearchsettings"),
        "IsAuditEnabled": _managed(True, "canmodifyauditsettings"),
        "SourceType": 1 if attribute.logical_name == "fullname" else 0,
    }
    kind = attribute.metadata_type
    if kind in ("StringAttributeMetadata", "MemoAttributeMetadata"):
        body.update(
            MaxLength=attribute.max_length,
            DatabaseLength=(attribute.max_length or 0) * 2,
            Format=attribute.format_name,
            FormatName={"Value": attribute.format_name},
            IsLocalizable=False,
        )
    elif kind == "BigIntAttributeMetadata":
        body.update(MinValue=-9223372036854775808, MaxValue=9223372036854775807)
    elif kind == "BooleanAttributeMetadata":
        body.update(DefaultValue=bool(attribute.default))
    elif kind == "DateTimeAttributeMetadata":
        body.update(
            Format="DateOnly" if attribute.date_only else "DateAndTime",
            DateTimeBehavior={"Value": attribute.behavior or "UserLocal"},
            MinSupportedValue="1753-01-01T00:00:00Z",
            MaxSupportedValue="9999-12-30T23:59:59Z",
        )
    elif kind in ("PicklistAttributeMetadata", "StateAttributeMetadata", "StatusAttributeMetadata"):
        body.update(DefaultFormValue=-1)
    elif kind == "LookupAttributeMetadata":
        body.update(Targets=list(attribute.targets), Format="None")
    return body


def entity_json(entity: Entity, change_tracking: bool) -> dict[str, Any]:
    """A table's definition as ``EntityDefinitions`` returns it (attributes only when expanded)."""
    return {
        "MetadataId": entity.metadata_id,
        "LogicalName": entity.logical_name,
        "SchemaName": entity.schema_name,
        "EntitySetName": entity.entity_set,
        "LogicalCollectionName": entity.entity_set,
        "CollectionSchemaName": entity.schema_name + "s",
        "PrimaryIdAttribute": entity.primary_id,
        "PrimaryNameAttribute": entity.primary_name,
        "ObjectTypeCode": entity.object_type_code,
        "OwnershipType": "UserOwned",
        "IsCustomEntity": False,
        "IsActivity": False,
        "IsManaged": True,
        "IsValidForAdvancedFind": True,
        "IsOptimisticConcurrencyEnabled": True,
        "ChangeTrackingEnabled": change_tracking,
        "CanChangeTrackingBeEnabled": _managed(True, "canchangetrackingbeenabled"),
        "DisplayName": label(entity.display_name, entity.logical_name),
        "DisplayCollectionName": label(entity.display_name + "s", entity.logical_name, "collection"),
        "Description": label(""),
        "HasChanged": None,
    }


def csdl(change_tracking: dict[str, bool], annotations: bool) -> str:
    """A small but valid CSDL document for the two tables (what ``$metadata`` serves)."""
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">',
        '<edmx:Reference Uri="http://vocabularies.odata.org/OData.Community.Keys.V1.xml">'
        '<edmx:Include Namespace="OData.Community.Keys.V1" Alias="Keys"/></edmx:Reference>',
        '<edmx:Reference Uri="http://docs.oasis-open.org/odata/odata/v4.0/os/vocabularies/'
        'Org.OData.Capabilities.V1.xml"><edmx:Include Namespace="Org.OData.Capabilities.V1" Alias="Capabilities"/>'
        "</edmx:Reference>",
        "<edmx:DataServices>",
        '<Schema Namespace="Microsoft.Dynamics.CRM" Alias="mscrm" xmlns="http://docs.oasis-open.org/odata/ns/edm">',
        '<EntityType Name="crmbaseentity" Abstract="true"/>',
    ]
    for entity in ENTITIES.values():
        lines.append(f'<EntityType Name="{entity.logical_name}" BaseType="mscrm.crmbaseentity">')
        lines.append(f'<Key><PropertyRef Name="{entity.primary_id}"/></Key>')
        for attribute in entity.readable():
            edm = EDM_TYPES[attribute.attribute_type]
            if attribute.date_only:
                edm = "Edm.Date"
            extra = f' MaxLength="{attribute.max_length}"' if attribute.max_length else ""
            lines.append(f'<Property Name={quoteattr(attribute.read_name)} Type="{edm}"{extra}/>')
        for nav, (_, targets) in entity.binds.items():
            if targets[0] in ENTITIES:
                lines.append(f'<NavigationProperty Name="{nav}" Type="mscrm.{targets[0]}"/>')
        lines.append("</EntityType>")
    lines.append('<EntityContainer Name="System">')
    for entity in ENTITIES.values():
        lines.append(
            f'<EntitySet Name="{entity.entity_set}" EntityType="Microsoft.Dynamics.CRM.{entity.logical_name}">'
        )
        if annotations and change_tracking.get(entity.logical_name, True):
            lines.append(
                '<Annotation Term="Org.OData.Capabilities.V1.ChangeTracking"><Record>'
                '<PropertyValue Property="Supported" Bool="true"/></Record></Annotation>'
            )
        lines.append("</EntitySet>")
    lines += ["</EntityContainer>", "</Schema>", "</edmx:DataServices>", "</edmx:Edmx>"]
    return "\n".join(lines)
