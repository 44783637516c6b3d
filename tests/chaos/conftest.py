"""Chaos tests: the real broker and a Redis of their own that they stop and start; run by default (CI runs them)."""

import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/chaos" in str(item.fspath):
            item.add_marker(pytest.mark.chaos)
