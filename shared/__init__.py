"""What both planes need, defined once: the entity schema, declarative config, events, CLI."""

__version__ = "0.1.0"
