"""Benchmarks: `gapstream bench pipeline|scaleout|generator` (run through `cli.bench`), standalone scripts, and the
simulated backends and fake services they inject, so none of it lives in the production path or in tests/."""
