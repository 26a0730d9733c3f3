"""Keep secrets out of every log line, whatever library emits it and at whatever level."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

MASK = "***"


class SecretRedactor(logging.Filter):
    """A handler filter that masks registered secret values in the formatted message and arguments.

    Installed on handlers (not loggers), because a logger's filters do not see records propagated
    from child loggers such as ``urllib3.connectionpool`` or ``msal``.
    """

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, secrets: Iterable[str | None]) -> None:
        """Register values to mask (short values are ignored: they would mask ordinary text)."""
        with self._lock:
            self._secrets.update(s for s in secrets if s and len(s) >= 6)

    def redact(self, text: str) -> str:
        """``text`` with every registered secret replaced by a mask."""
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place so every handler after this one sees it masked."""
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to logging's own error path
            return True
        redacted = self.redact(message)
        if redacted != message or record.args:
            record.msg = redacted
            record.args = None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


_REDACTOR = SecretRedactor()


def protect_secrets(secrets: Iterable[str | None]) -> SecretRedactor:
    """Register secrets and make sure every handler of the root logger masks them.

    Called by each plugin once its configuration is known; handlers added later by the SDK are
    covered on the next call, and the redactor is also returned for explicit use on exception text.
    """
    _REDACTOR.add(secrets)
    root = logging.getLogger()
    for handler in root.handlers:
        if _REDACTOR not in handler.filters:
            handler.addFilter(_REDACTOR)
    return _REDACTOR


def redact(text: str) -> str:
    """Mask every registered secret in ``text`` (for exception messages and reports)."""
    return _REDACTOR.redact(text)
