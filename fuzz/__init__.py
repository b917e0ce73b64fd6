"""Fuzz harnesses for the parsers of untrusted bytes (``python -m fuzz.run``)."""
