"""The pure rules and the record types: no store, no SQLAlchemy, no SDK, no network."""
