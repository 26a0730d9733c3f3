"""Shared by both API clients and all three plugins, so retry, TLS, redaction and fatal-error rules exist once."""
