"""Helpers shared by the example job handlers."""
