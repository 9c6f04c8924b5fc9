"""diskrisk: predict hard-drive failures from Backblaze Drive Stats with survival models."""

__version__ = "0.1.0"
