"""Validation, OWL inference and trust scoring."""
