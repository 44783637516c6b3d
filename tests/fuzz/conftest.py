"""Fuzz tests: hypothesis and named bad-input classes; the worker test uses the real broker and Redis."""

from tests.integration.conftest import broker, redis_url, unique  # noqa: F401 - the same real-server fixtures
