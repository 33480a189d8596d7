"""AQPL Studio: entry points (the `aqpl` command) and definitions shared by every package."""

__version__ = "0.1.0"
