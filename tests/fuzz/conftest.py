"""Fuzz tests: hypothesis and named bad-input classes; the worker test uses the real broker and Redis."""

