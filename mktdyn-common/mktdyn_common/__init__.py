"""Shared by both API clients and the target, so retry, TLS and redaction rules exist once."""
