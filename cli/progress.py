"""How `gapstream run` and `submit --wait` show each stage as it completes (`streams.progress` reads the topics).

Lines go to stderr, so stdout keeps only the result (`--json` stays machine-readable): on a terminal a styled line
per stage, otherwise plain lines a log file or CI can keep.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Optional

import click


class Printer:
    """Formats progress lines for a terminal (styled) or anything else (plain)."""

    def __init__(self, stream: Optional[IO[str]] = None, styled: Optional[bool] = None) -> None:
        self.stream = stream or sys.stderr
        self.styled = self.stream.isatty() if styled is None else styled
        self.started = time.monotonic()

    def __call__(self, stage: str, text: str) -> None:
        elapsed = time.monotonic() - self.started
        if self.styled:
            mark = click.style("✗" if stage == "dead letter" else "✓", fg="red" if stage == "dead letter" else "green")
            line = f"{mark} {click.style(f'{stage:<10}', bold=True)} {text} {click.style(f'({elapsed:.1f}s)', dim=True)}"
        else:
            line = f"[{elapsed:6.1f}s] {stage}: {text}"
        print(line, file=self.stream, flush=True)
