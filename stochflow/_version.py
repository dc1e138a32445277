"""The package version, in a leaf module: what needs it imports it from here, not from the package root."""

__version__ = "0.1.0"
