"""The `gapstream` command line: every command is a thin shell over `streams` (the wiring) and `benchmarks`."""
