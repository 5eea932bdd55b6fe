"""The version of parml (read by the build from here, without importing parml)."""

__version__ = "0.1.0.dev0"
