"""The Marketo REST API half of the sandbox."""
