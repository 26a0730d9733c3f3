"""The person field catalogue behind ``leads/describe.json`` and the write rules it implies.

Ids are stable (the ones seen in recorded responses where known: company 4, id 44, email 56, firstName
48, ...), so clients that key metadata by id keep working across restarts. The catalogue also decides
which fields are company fields (not writable through ``leads.json`` updates), which are custom (their
changes do not move the visible ``updatedAt``), and which are searchable (valid ``filterType`` and
``lookupField`` values).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from mktdyn_sandbox.clock import iso_z

STRING_LENGTH = 255
STRING_TYPES = frozenset({"string", "text", "email", "phone", "url"})
INTEGER_TYPES = frozenset({"integer", "reference"})
NUMBER_TYPES = frozenset({"float", "currency", "percent"})


@dataclass(frozen=True)
class FieldSpec:
    """One person field as describe.json reports it, plus the sandbox's write rules."""

    id: int
    name: str
    display_name: str
    data_type: str
    length: int | None = None
    read_only: bool = False
    company: bool = False
    custom: bool = False
    searchable: bool = False

    def describe(self) -> dict[str, Any]:
        """The describe.json item (``length`` only for string-like types, ``soap`` only for SOAP fields)."""
        item: dict[str, Any] = {"id": self.id, "displayName": self.display_name, "dataType": self.data_type}
        if self.length is not None:
            item["length"] = self.length
        item["rest"] = {"name": self.name, "readOnly": self.read_only}
        if self.name not in ("createdAt", "updatedAt"):
            item["soap"] = {"name": self.display_name.replace(" ", ""), "readOnly": self.read_only}
        return item

    def describe2(self) -> dict[str, Any]:
        """The describe2.json item."""
        item: dict[str, Any] = {"name": self.name, "displayName": self.display_name, "dataType": self.data_type}
        if self.length is not None:
            item["length"] = self.length
        item["updateable"] = not self.read_only and not self.company
        item["crmManaged"] = False
        return item


def _spec(field_id: int, name: str, display: str, data_type: str, *flags: str, length: int | None = None) -> FieldSpec:
    if length is None and data_type in ("string", "email", "phone", "url"):
        length = STRING_LENGTH
    return FieldSpec(
        field_id,
        name,
        display,
        data_type,
        length,
        read_only="ro" in flags,
        company="company" in flags,
        custom="custom" in flags,
        searchable="search" in flags,
    )


CATALOGUE: tuple[FieldSpec, ...] = (
    # string
    _spec(4, "company", "Company Name", "string", "company"),
    _spec(5, "site", "Site", "string", "company"),
    _spec(6, "billingCity", "Billing City", "string", "company"),
    _spec(7, "billingState", "Billing State", "string", "company"),
    _spec(8, "billingCountry", "Billing Country", "string", "company"),
    _spec(9, "billingPostalCode", "Billing Postal Code", "string", "company"),
    _spec(10, "mainPhone", "Main Phone", "string", "company"),
    _spec(11, "industry", "Industry", "string", "company"),
    _spec(12, "sicCode", "SIC Code", "string", "company"),
    _spec(13, "externalCompanyId", "External Company Id", "string", "company"),
    _spec(14, "mktoName", "Full Name", "string", "ro"),
    _spec(15, "personType", "Person Type", "string"),
    _spec(16, "salutation", "Salutation", "string"),
    _spec(48, "firstName", "First Name", "string"),
    _spec(49, "middleName", "Middle Name", "string"),
    _spec(50, "lastName", "Last Name", "string"),
    _spec(51, "title", "Job Title", "string"),
    _spec(52, "city", "City", "string"),
    _spec(53, "state", "State", "string"),
    _spec(54, "country", "Country", "string"),
    _spec(55, "postalCode", "Postal Code", "string"),
    _spec(57, "personTimeZone", "Person Time Zone", "string", "ro"),
    _spec(58, "originalSourceType", "Original Source Type", "string", "ro"),
    _spec(59, "originalSourceInfo", "Original Source Info", "string", "ro"),
    _spec(60, "registrationSourceType", "Registration Source Type", "string"),
    _spec(61, "registrationSourceInfo", "Registration Source Info", "string"),
    _spec(63, "originalSearchEngine", "Original Search Engine", "string", "ro"),
    _spec(64, "originalSearchPhrase", "Original Search Phrase", "string", "ro"),
    _spec(65, "emailInvalidCause", "Email Invalid Cause", "string"),
    _spec(66, "unsubscribedReason", "Unsubscribed Reason", "string"),
    _spec(67, "mktoDoNotCallCause", "Do Not Call Cause", "string"),
    _spec(68, "doNotCallReason", "Do Not Call Reason", "string"),
    _spec(69, "marketingSuspendedCause", "Marketing Suspended Cause", "string"),
    _spec(70, "blackListedCause", "Blocklisted Cause", "string"),
    _spec(71, "anonymousIP", "Anonymous IP", "string"),
    _spec(72, "inferredCompany", "Inferred Company", "string", "ro"),
    _spec(73, "inferredCountry", "Inferred Country", "string", "ro"),
    _spec(74, "inferredCity", "Inferred City", "string", "ro"),
    _spec(75, "inferredStateRegion", "Inferred State Region", "string", "ro"),
    _spec(76, "inferredPostalCode", "Inferred Postal Code", "string", "ro"),
    _spec(77, "inferredMetropolitanArea", "Inferred Metropolitan Area", "string", "ro"),
    _spec(78, "inferredPhoneAreaCode", "Inferred Phone Area Code", "string", "ro"),
    _spec(79, "emailSuspendedCause", "Email Suspended Cause", "string"),
    _spec(80, "department", "Department", "string"),
    _spec(81, "cookies", "Cookies", "string", "search"),
    _spec(82, "externalSalesPersonId", "External Sales Person Id", "string"),
    _spec(83, "leadRole", "Role", "string"),
    _spec(84, "leadSource", "Person Source", "string"),
    _spec(85, "leadStatus", "Person Status", "string"),
    _spec(86, "rating", "Person Rating", "string"),
    # text
    _spec(90, "billingStreet", "Billing Address", "text", "company"),
    _spec(91, "mktoCompanyNotes", "Company Notes", "text", "company"),
    _spec(92, "address", "Address", "text"),
    _spec(93, "mktoPersonNotes", "Person Notes", "text"),
    # url
    _spec(95, "website", "Website", "url", "company"),
    _spec(96, "originalReferrer", "Original Referrer", "url", "ro"),
    # currency, integer
    _spec(97, "annualRevenue", "Annual Revenue", "currency", "company"),
    _spec(98, "numberOfEmployees", "Num Employees", "integer", "company"),
    _spec(44, "id", "Id", "integer", "search"),
    _spec(146, "leadScore", "Lead Score", "integer"),
    _spec(147, "priority", "Priority", "integer"),
    _spec(148, "relativeScore", "Relative Score", "integer"),
    _spec(149, "relativeUrgency", "Relative Urgency", "integer"),
    # boolean
    _spec(100, "mktoIsPartner", "Is Partner", "boolean"),
    _spec(101, "isLead", "Is Lead", "boolean"),
    _spec(102, "mktoIsCustomer", "Is Customer", "boolean"),
    _spec(103, "isAnonymous", "Is Anonymous", "boolean"),
    _spec(104, "emailInvalid", "Email Invalid", "boolean"),
    _spec(105, "unsubscribed", "Unsubscribed", "boolean"),
    _spec(106, "doNotCall", "Do Not Call", "boolean"),
    _spec(107, "marketingSuspended", "Marketing Suspended", "boolean"),
    _spec(108, "blackListed", "Blocklisted", "boolean"),
    _spec(109, "emailSuspended", "Email Suspended", "boolean"),
    # email, phone
    _spec(56, "email", "Email Address", "email", "search"),
    _spec(110, "phone", "Phone Number", "phone"),
    _spec(111, "mobilePhone", "Mobile Phone Number", "phone"),
    _spec(112, "fax", "Fax Number", "phone"),
    # reference
    _spec(113, "contactCompany", "Contact Company", "reference", "ro"),
    _spec(114, "leadPerson", "Lead Person", "reference", "ro"),
    _spec(115, "personPrimaryLeadInterest", "Person Primary Lead Interest", "reference", "ro"),
    _spec(479, "leadPartitionId", "Lead Partition Id", "reference", "search"),
    _spec(480, "leadRevenueCycleModelId", "Lead Revenue Cycle Model Id", "reference"),
    _spec(481, "leadRevenueStageId", "Lead Revenue Stage Id", "reference"),
    _spec(482, "acquisitionProgramId", "Acquisition Program Id", "reference"),
    # date, datetime, float
    _spec(62, "dateOfBirth", "Date of Birth", "date"),
    _spec(120, "emailSuspendedAt", "Email Suspended At", "datetime"),
    _spec(130, "createdAt", "Created At", "datetime", "ro"),
    _spec(131, "updatedAt", "Updated At", "datetime", "ro"),
    _spec(132, "mktoAcquisitionDate", "Acquisition Date", "datetime"),
    _spec(140, "urgency", "Urgency", "float"),
    # custom fields of this integration (docs/architecture.md §9.2)
    _spec(10001, "syncToDynamics", "Sync to Dynamics", "boolean", "custom"),
    _spec(10002, "deletedInDynamics", "Deleted in Dynamics", "boolean", "custom"),
    _spec(10003, "dynamicsLeadId", "Dynamics Lead Id", "string", "custom", "search", length=36),
    _spec(10004, "dynamicsContactId", "Dynamics Contact Id", "string", "custom", "search", length=36),
)

FIELDS: dict[str, FieldSpec] = {spec.name: spec for spec in CATALOGUE}
#: Fields kept in their own columns rather than the JSON document.
CORE_FIELDS = frozenset({"id", "email", "createdAt", "updatedAt"})
#: What leads.json returns when the caller names no fields.
DEFAULT_READ_FIELDS = ("id", "email", "updatedAt", "createdAt", "firstName", "lastName")
FILTER_TYPES = tuple(spec.name for spec in CATALOGUE if spec.searchable)


class FieldValueError(ValueError):
    """A value the field cannot hold; ``code`` is the Marketo record-level code to answer with."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_datetime(text: str) -> datetime:
    """Parse the ISO-8601 forms clients send (``Z``, ``+0000``, ``+00:00``, date only); naive means UTC."""
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    if re.search(r"[+-]\d{4}$", value) and "T" in value:
        value = value[:-2] + ":" + value[-2:]
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def coerce(spec: FieldSpec, value: Any) -> Any:
    """The value as stored for ``spec``, or FieldValueError (1001 wrong type, 1003 invalid data)."""
    if value is None or value == "":
        return None
    kind = spec.data_type
    wrong_type = FieldValueError("1001", f"Invalid value type for field '{spec.name}'")
    if kind in STRING_TYPES:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise wrong_type
        text = str(value)
        if kind == "email" and (not text.isascii() or "@" not in text):
            raise FieldValueError("1003", f"Invalid value for field '{spec.name}': email must be ASCII")
        if spec.length is not None and len(text) > spec.length:
            raise FieldValueError("1003", f"Value for field '{spec.name}' exceeds the maximum length of {spec.length}")
        return text
    if kind in INTEGER_TYPES:
        if isinstance(value, bool):
            raise wrong_type
        if isinstance(value, int):
            return value
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            return int(value)
        raise wrong_type
    if kind in NUMBER_TYPES:
        if isinstance(value, bool):
            raise wrong_type
        try:
            return float(value)
        except (TypeError, ValueError):
            raise wrong_type from None
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        lowered = str(value).strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise wrong_type
    if kind == "date":
        if isinstance(value, str) and _DATE.match(value.strip()):
            return date.fromisoformat(value.strip()[:10]).isoformat()
        raise wrong_type
    if kind == "datetime":
        if not isinstance(value, str):
            raise wrong_type
        try:
            return iso_z(parse_datetime(value))
        except ValueError:
            raise wrong_type from None
    return value
