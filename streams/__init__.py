"""Wiring: the Faust app, the CLI and the embedded broker. The only place that builds backends from settings."""
