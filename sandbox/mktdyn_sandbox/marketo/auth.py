"""Marketo's identity service: client-credentials tokens that live ``token_ttl`` seconds.

Asking again before expiry returns the same token with its remaining lifetime (never a fresh one),
as Marketo does; marketorestpython relies on ``expires_in`` being honest, so a token is only ever
reported expired (602) once the sandbox clock has passed the lifetime it announced.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass

SCOPE = "mktdyn.api@sandbox.example"


@dataclass
class IssuedToken:
    """A token and when it stops working (sandbox-clock seconds)."""

    value: str
    client_id: str
    expires_at: float


class TokenIssuer:
    """Issues and checks access tokens; remembers expired ones so it can say 602 rather than 601."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: dict[str, IssuedToken] = {}
        self._known: dict[str, IssuedToken] = {}

    def issue(self, client_id: str, now: float, ttl: float) -> tuple[IssuedToken, bool]:
        """The client's live token (or a new one) and whether it was newly issued."""
        with self._lock:
            current = self._current.get(client_id)
            if current is not None and current.expires_at > now:
                return current, False
            token = IssuedToken(f"{uuid.uuid4()}:ab", client_id, now + ttl)
            self._current[client_id] = token
            self._known[token.value] = token
            return token, True

    def check(self, value: str | None, now: float) -> str | None:
        """None when the token is valid, else the error code: 601 unknown, 602 expired."""
        if not value:
            return "601"
        with self._lock:
            token = self._known.get(value)
        if token is None:
            return "601"
        return "602" if token.expires_at <= now else None
