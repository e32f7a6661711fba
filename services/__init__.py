"""The gateway, ingest and processor FastAPI services (they depend on `backends` only)."""
