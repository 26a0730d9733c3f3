"""The Entra ID (v2.0) authority in front of the sandbox's Dataverse: OIDC discovery, tokens, bearer checks.

It answers what msal 1.39 actually asks (reference §1.1, §1.5): tenant discovery, instance discovery,
user-realm discovery for the password grant, and the token POST for the client-credentials and
password grants (a client secret or a signed client assertion from a registered certificate), with Entra's
error bodies for the mistakes people make (wrong secret, wrong key, unknown tenant, wrong password, unknown
client). Access tokens are JWT-shaped and HMAC-signed with a key kept under
DIR, so they survive a restart and need no server-side table; expiry is measured on the sandbox clock so
tests can expire them without sleeping.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mktdyn_sandbox.app import Credentials
from mktdyn_sandbox.clock import SandboxClock
from mktdyn_sandbox.web import Request, Response, Router

SETTINGS_TOKEN_TTL = "token_ttl"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
RESERVED_SCOPES = {"openid", "profile", "offline_access"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature_matches(certificate: x509.Certificate, algorithm: str, signed: str, signature: bytes) -> bool:
    """Whether ``signature`` over ``signed`` verifies with the certificate's RSA key (RS256 or PS256)."""
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    if algorithm == "RS256":
        scheme: padding.AsymmetricPadding = padding.PKCS1v15()
    elif algorithm == "PS256":
        scheme = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
    else:
        return False
    try:
        key.verify(signature, signed.encode(), scheme, hashes.SHA256())
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class Principal:
    """Who a valid bearer token was issued to (the unit service protection limits count by)."""

    subject: str
    audience: str
    expires: float


class TokenError(Exception):
    """Why a bearer token was refused (missing, malformed, expired, wrong audience)."""


class Authority:
    """Entra-style endpoints and bearer-token checks for one sandbox."""

    def __init__(
        self,
        credentials: Credentials,
        clock: SandboxClock,
        signing_key: bytes,
        settings: Callable[[], dict[str, Any]],
        certificates: Sequence[x509.Certificate] = (),
    ) -> None:
        self.credentials = credentials
        self.certificates = list(certificates)
        self.clock = clock
        self._key = signing_key
        self._settings = settings
        self.tokens_issued = 0

    # -- routes -----------------------------------------------------------------------------------------
    def register(self, router: Router) -> None:
        """Add the authority's routes (they share the Web API's host and port)."""
        add = router.add
        add(
            "GET",
            r"/(?P<tenant>[^/_][^/]*)/v2\.0/\.well-known/openid-configuration",
            self.openid_configuration,
            "authority openid-configuration",
            "auth",
        )
        add("POST", r"/(?P<tenant>[^/_][^/]*)/oauth2/v2\.0/token", self.token, "authority token", "auth")
        add("GET", r"/common/userrealm/(?P<upn>[^/]+)", self.user_realm, "authority userrealm", "auth")
        add("GET", r"/common/discovery/instance", self.instance_discovery, "authority instance discovery", "auth")

    @property
    def domain(self) -> str:
        """The tenant's verified domain (the sandbox user's UPN suffix)."""
        return self.credentials.dynamics_username.rpartition("@")[2].lower()

    def _known_tenant(self, tenant: str) -> bool:
        return tenant.lower() in (self.credentials.dynamics_tenant_id.lower(), self.domain, "organizations")

    def _error(self, request: Request, status: int, error: str, code: int, description: str) -> Response:
        trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
        stamp = self.clock.now().strftime("%Y-%m-%d %H:%M:%SZ")
        return Response.json(
            {
                "error": error,
                "error_description": f"AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {correlation} "
                f"Timestamp: {stamp}",
                "error_codes": [code],
                "timestamp": stamp,
                "trace_id": trace,
                "correlation_id": correlation,
                "error_uri": f"{request.base_url}/error?code={code}",
            },
            status=status,
            content_type="application/json; charset=utf-8",
        )

    def _unknown_tenant(self, request: Request, tenant: str) -> Response:
        return self._error(
            request,
            400,
            "invalid_request",
            90002,
            f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are "
            "signing into the correct cloud. Check with your subscription administrator, this may "
            "happen if there are no active subscriptions for the tenant.",
        )

    def openid_configuration(self, request: Request, tenant: str) -> Response:
        """Tenant discovery: the endpoints msal reads, all on the sandbox's own https base."""
        if not self._known_tenant(tenant):
            return self._unknown_tenant(request, tenant)
        base, tid = request.base_url, self.credentials.dynamics_tenant_id
        return Response.json(
            {
                "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": f"{base}/{tid}/v2.0",
                "request_uri_parameter_supported": False,
                "userinfo_endpoint": f"{base}/oidc/userinfo",
                "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/devicecode",
                "http_logout_supported": True,
                "frontchannel_logout_supported": True,
                "end_session_endpoint": f"{base}/{tenant}/oauth2/v2.0/logout",
                "claims_supported": [
                    "sub",
                    "iss",
                    "aud",
                    "exp",
                    "iat",
                    "nonce",
                    "preferred_username",
                    "name",
                    "tid",
                    "ver",
                    "email",
                ],
                "kerberos_endpoint": f"{base}/{tenant}/kerberos",
                "tenant_region_scope": "NA",
                "cloud_instance_name": "microsoftonline.com",
                "cloud_graph_host_name": "graph.windows.net",
                "msgraph_host": "graph.microsoft.com",
                "rbac_url": "https://pas.windows.net",
            }
        )

    def instance_discovery(self, request: Request) -> Response:
        """``/common/discovery/instance``: this host is its own (only) alias."""
        host = urlsplit(request.base_url).netloc
        endpoint = request.param("authorization_endpoint") or ""
        tenant = urlsplit(endpoint).path.strip("/").split("/")[0] or "common"
        return Response.json(
            {
                "tenant_discovery_endpoint": f"{request.base_url}/{tenant}/v2.0/.well-known/openid-configuration",
                "api-version": "1.1",
                "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
            }
        )

    def user_realm(self, request: Request, upn: str) -> Response:
        """User-realm discovery before a password grant: the tenant's users are cloud-only (Managed)."""
        domain = upn.rpartition("@")[2].lower()
        if domain != self.domain:
            return Response.json(
                {"ver": "1.0", "account_type": "Unknown", "cloud_instance_name": "microsoftonline.com"}
            )
        return Response.json(
            {
                "ver": "1.0",
                "account_type": "Managed",
                "domain_name": self.domain,
                "cloud_instance_name": "microsoftonline.com",
                "cloud_audience_urn": "urn:federation:MicrosoftOnline",
            }
        )

    # -- the token endpoint -----------------------------------------------------------------------------
    def token(self, request: Request, tenant: str) -> Response:
        """``POST /<tenant>/oauth2/v2.0/token`` for ``client_credentials`` and ``password``."""
        if not self._known_tenant(tenant):
            return self._unknown_tenant(request, tenant)
        form = {key: values[0] for key, values in request.form().items() if values}
        grant = form.get("grant_type", "")
        client_id = form.get("client_id", "")
        secret = form.get("client_secret")
        if grant not in ("client_credentials", "password"):
            return self._error(
                request, 400, "unsupported_grant_type", 70003, f"The app requested an unsupported grant type '{grant}'."
            )
        if client_id.lower() != self.credentials.dynamics_client_id.lower():
            return self._error(
                request,
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{tenant}'. This can happen if the application has not been installed by the "
                "administrator of the tenant or consented to by any user in the tenant.",
            )
        assertion = form.get("client_assertion")
        if assertion is not None:
            refused = self._check_assertion(
                request, tenant, client_id, form.get("client_assertion_type", ""), assertion
            )
            if refused is not None:
                return refused
        elif grant == "client_credentials" and secret is None:
            return self._error(
                request,
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            )
        if secret is not None and not hmac.compare_digest(secret, self.credentials.dynamics_client_secret):
            return self._error(
                request,
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the "
                f"client secret value, not the client secret ID, for a secret added to app "
                f"'{client_id}'.",
            )
        scopes = form.get("scope", "").split()
        resources = [scope for scope in scopes if scope not in RESERVED_SCOPES]
        if not resources:
            return self._error(
                request,
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'scope'.",
            )
        if grant == "client_credentials" and not resources[0].endswith("/.default"):
            return self._error(
                request,
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {resources[0]} is not valid. Client credential flows "
                "must have a scope value with /.default suffixed to the resource identifier "
                "(application ID URI).",
            )
        audience = resources[0].rpartition("/")[0].rstrip("/").lower()
        if grant == "password":
            username, password = form.get("username", ""), form.get("password", "")
            if username.lower() != self.credentials.dynamics_username.lower() or not hmac.compare_digest(
                password, self.credentials.dynamics_password
            ):
                return self._error(
                    request,
                    400,
                    "invalid_grant",
                    50126,
                    "Error validating credentials due to invalid username or password.",
                )
            return Response.json(self._user_tokens(request, client_id, audience, scopes))
        return Response.json(self._token_body(self._mint(audience, subject=client_id, app=True)))

    # -- certificate credentials ------------------------------------------------------------------------
    def _check_assertion(
        self, request: Request, tenant: str, client_id: str, assertion_type: str, assertion: str
    ) -> Response | None:
        """Verify a signed client assertion (reference §1: private_key_jwt) as Entra does; None when it is good.

        The JWT must name a certificate registered on the app by its thumbprint (``x5t``: SHA-1, or
        ``x5t#S256``), be signed by that certificate's key (RS256, or PS256 as msal signs with a SHA-256
        thumbprint), be addressed to this token endpoint, come from the client itself (``iss`` = ``sub`` =
        client id) and not be expired. Its time is checked against real time: the client signs it with its
        own clock, not the sandbox's.
        """
        if assertion_type != CLIENT_ASSERTION_TYPE:
            return self._error(
                request, 400, "invalid_request", 50027, f"Invalid client_assertion_type '{assertion_type}'."
            )
        try:
            header_part, payload_part, signature_part = assertion.split(".")
            header = json.loads(_unb64(header_part))
            claims = json.loads(_unb64(payload_part))
            signature = _unb64(signature_part)
        except (ValueError, TypeError):
            return self._error(request, 401, "invalid_client", 50027, "JWT token is invalid or malformed.")
        used = str(header.get("x5t#S256") or header.get("x5t") or "")
        certificate = self._registered(header)
        if certificate is None:
            thumbprint = _unb64(used).hex().upper() if used else "none"
            return self._invalid_signature(
                request, client_id, f"The key was not found., Thumbprint of key used by client: '{thumbprint}'"
            )
        if not _signature_matches(certificate, str(header.get("alg")), f"{header_part}.{payload_part}", signature):
            return self._invalid_signature(
                request, client_id, "The provided signature value did not match the expected signature value."
            )
        endpoint = f"{request.base_url}/{tenant}/oauth2/v2.0/token".lower()
        if str(claims.get("aud", "")).lower() != endpoint:
            return self._error(
                request,
                401,
                "invalid_client",
                700212,
                f"No matching federated identity record found for presented assertion audience '{claims.get('aud')}'.",
            )
        if str(claims.get("iss", "")).lower() != client_id.lower() or str(claims.get("sub", "")).lower() != (
            client_id.lower()
        ):
            return self._error(
                request,
                401,
                "invalid_client",
                700021,
                "Client assertion application identifier doesn't match 'client_id' parameter.",
            )
        now = time.time()
        if not float(claims.get("nbf", 0)) - 300 <= now < float(claims.get("exp", 0)) + 300:
            return self._error(
                request, 401, "invalid_client", 700024, "Client assertion is not within its valid time range."
            )
        return None

    def _registered(self, header: dict[str, Any]) -> x509.Certificate | None:
        """The registered certificate the assertion's thumbprint header names."""
        sha256 = str(header.get("x5t#S256") or "").rstrip("=")  # msal keeps base64's padding, JOSE drops it
        sha1 = str(header.get("x5t") or "").rstrip("=")
        for certificate in self.certificates:
            if sha256 and sha256 == _b64(certificate.fingerprint(hashes.SHA256())):
                return certificate
            if sha1 and sha1 == _b64(certificate.fingerprint(hashes.SHA1())):  # noqa: S303 - Entra's x5t
                return certificate
        return None

    def _invalid_signature(self, request: Request, client_id: str, reason: str) -> Response:
        return self._error(
            request,
            401,
            "invalid_client",
            700027,
            f"Client assertion contains an invalid signature. [Reason - {reason}, Please visit the Azure Portal, "
            f"Graph Explorer or directly use MS Graph to see configured keys for app Id '{client_id}'.]",
        )

    def _token_body(self, access_token: str) -> dict[str, Any]:
        ttl = int(self._settings().get(SETTINGS_TOKEN_TTL, 3599))
        self.tokens_issued += 1
        return {"token_type": "Bearer", "expires_in": ttl, "ext_expires_in": ttl, "access_token": access_token}

    def _user_tokens(self, request: Request, client_id: str, audience: str, scopes: list[str]) -> dict[str, Any]:
        tid = self.credentials.dynamics_tenant_id
        user = self.credentials.dynamics_username
        oid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"user:{user.lower()}"))
        now = int(self.clock.time())
        id_token = self._sign(
            {
                "aud": client_id,
                "iss": f"{request.base_url}/{tid}/v2.0",
                "iat": now,
                "nbf": now,
                "exp": now + 3600,
                "name": "Sync User",
                "oid": oid,
                "preferred_username": user,
                "sub": oid,
                "tid": tid,
                "ver": "2.0",
            }
        )
        body = self._token_body(self._mint(audience, subject=user.lower(), app=False))
        body.update(
            scope=" ".join(s for s in scopes if s not in ("openid", "profile")) or audience + "/.default",
            refresh_token=secrets.token_urlsafe(48),
            id_token=id_token,
            client_info=_b64(json.dumps({"uid": oid, "utid": tid}).encode()),
        )
        return body

    def _mint(self, audience: str, subject: str, app: bool) -> str:
        now = int(self.clock.time())
        ttl = int(self._settings().get(SETTINGS_TOKEN_TTL, 3599))
        claims = {
            "aud": audience,
            "iss": f"https://sts.windows.net/{self.credentials.dynamics_tenant_id}/",
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "appid": self.credentials.dynamics_client_id,
            "tid": self.credentials.dynamics_tenant_id,
            "sub": subject,
            "idtyp": "app" if app else "user",
            "ver": "1.0",
            "uti": secrets.token_urlsafe(16),
        }
        if not app:
            claims["upn"] = subject
        return self._sign(claims)

    def _sign(self, claims: dict[str, Any]) -> str:
        header = _b64(json.dumps({"typ": "JWT", "alg": "HS256"}).encode())
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        signature = hmac.new(self._key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{_b64(signature)}"

    # -- bearer checks ----------------------------------------------------------------------------------
    def principal(self, request: Request) -> Principal:
        """The principal of the request's bearer token; raises TokenError saying why it is refused."""
        header = request.header("Authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenError("The user is not authenticated: the Authorization header with a Bearer token is missing.")
        try:
            header_part, payload_part, signature = token.strip().split(".")
            expected = hmac.new(self._key, f"{header_part}.{payload_part}".encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(_unb64(signature), expected):
                raise ValueError("signature")
            claims = json.loads(_unb64(payload_part))
        except (ValueError, TypeError) as exc:
            raise TokenError("The access token is invalid: it was not issued by this tenant.") from exc
        if float(claims.get("exp", 0)) <= self.clock.time():
            raise TokenError("The access token has expired. Acquire a new token and retry.")
        audience = str(claims.get("aud", "")).rstrip("/").lower()
        if audience != request.base_url.rstrip("/").lower():
            raise TokenError(
                f"The access token's audience '{audience}' is not this organization ('{request.base_url}')."
            )
        return Principal(str(claims.get("sub", "")), audience, float(claims["exp"]))

    def challenge(self, request: Request) -> dict[str, str]:
        """The ``WWW-Authenticate`` header of a 401 (clients read the authority from it)."""
        tid = self.credentials.dynamics_tenant_id
        return {
            "WWW-Authenticate": f"Bearer authorization_uri={request.base_url}/{tid}/oauth2/authorize, "
            f"resource_id={request.base_url}/"
        }
