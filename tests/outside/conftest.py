"""Outside tools against a real worker: the broker and Redis fixtures of the integration tests."""

import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/outside" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
