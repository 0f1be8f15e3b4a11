"""The Kong-compatible Admin API (aiohttp), generated from the shared entity schema."""
