"""postroom: an email-first gateway and mail processing pipeline."""

__version__ = "0.1.0"
