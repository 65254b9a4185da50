"""Tests that need no server: run alone with ``pytest tests/unit``."""
