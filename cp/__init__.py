"""The control plane: PostgreSQL store, Admin API, change log, cluster server."""
