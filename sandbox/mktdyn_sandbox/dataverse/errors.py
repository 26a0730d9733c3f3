"""Dataverse error bodies and codes (reference §6), raised anywhere and answered by the frame.

:class:`DataverseError` is a :class:`RequestError`, so a validation failure deep in the record code
becomes the documented ``{"error": {"code", "message"}}`` answer without every layer translating it;
the ``$batch`` dispatcher catches the same exception per part.
"""

from __future__ import annotations

import uuid

from mktdyn_sandbox.web import RequestError, Response

ODATA_JSON = "application/json; odata.metadata=minimal"

# Codes as Dataverse reports them (hex strings, unrelated to the HTTP status).
INVALID_ARGUMENT = "0x80040203"
NOT_FOUND = "0x80040217"
DUPLICATE_RECORD = "0x80040237"
ATTRIBUTE_TOO_LONG = "0x80044331"
OPTION_OUT_OF_RANGE = "0x8004431A"
EXPIRED_VERSION_STAMP = "0x80044352"
INVALID_STATUS_FOR_STATE = "0x80048408"
PAYLOAD_ERROR = "0x80048d19"
CONCURRENCY_MISMATCH = "0x80060882"
UNKNOWN_PROPERTY = "0x80060888"
DUPLICATE_KEY = "0x80060892"
REQUEST_LIMIT = "0x80072322"
CONCURRENCY_LIMIT = "0x80072326"
UNEXPECTED = "0x80040216"

PAYLOAD_PREFIX = (
    "Error identified in Payload provided by the user for Entity :'{entity_set}', For more information on "
    "this error please follow this help link https://go.microsoft.com/fwlink/?linkid=2195293  ----> "
    "InnerException : Microsoft.OData.ODataException: "
)


def odata_headers(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Headers every Web API answer carries (clients log the request id when reporting errors)."""
    request_id = str(uuid.uuid4())
    return {"OData-Version": "4.0", "REQ_ID": request_id, "x-ms-service-request-id": request_id, **(extra or {})}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    """The Web API's error body: ``{"error": {"code": ..., "message": ...}}``."""
    return Response.json(
        {"error": {"code": code, "message": message}},
        status=status,
        headers=odata_headers(headers),
        content_type=ODATA_JSON,
    )


class DataverseError(RequestError):
    """A Web API error; raising it anywhere under a handler answers with the Dataverse body."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(error_response(status, code, message, headers))
        self.status = status
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


def bad_request(code: str, message: str) -> DataverseError:
    """A 400 with the given code."""
    return DataverseError(400, code, message)


def payload_error(entity_set: str, detail: str) -> DataverseError:
    """The 0x80048d19 payload error, worded as the OData reader's inner exception."""
    return DataverseError(400, PAYLOAD_ERROR, PAYLOAD_PREFIX.format(entity_set=entity_set) + detail)


def unknown_property(name: str, entity: str) -> DataverseError:
    """A ``$select``/``$filter``/``$orderby`` naming a property the type does not have."""
    return bad_request(
        UNKNOWN_PROPERTY, f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{entity}'."
    )


def not_found(entity: str, record_id: str) -> DataverseError:
    """The documented 404 for a missing row."""
    return DataverseError(404, NOT_FOUND, f"{entity} With Id = {record_id} Does Not Exist")


def version_mismatch() -> DataverseError:
    """The 412 of an ``If-Match`` that no longer matches (someone else wrote the row)."""
    return DataverseError(
        412, CONCURRENCY_MISMATCH, "The version of the existing record doesn't match the RowVersion property provided."
    )


def already_exists() -> DataverseError:
    """The 412 of ``If-None-Match: *`` (create only) hitting an existing row, or a duplicate primary key."""
    return DataverseError(412, DUPLICATE_RECORD, "A record with matching key values already exists.")
