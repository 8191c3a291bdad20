"""The progress bar of ``refcam gradcam`` over several inputs."""
from __future__ import annotations

import sys
from typing import Any


class Progress:
    """A progress bar on standard error for several inputs: tqdm when installed, else a one-line counter.

    Both stay silent when standard error is not a terminal, and for a single input.
    ``write`` prints a log line on standard output without breaking the bar.
    """

    def __init__(self, total: int) -> None:
        self.total, self.count = total, 0
        self.active = total > 1 and sys.stderr.isatty()
        self.bar = None
        if self.active:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, unit="input", file=sys.stderr)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.active:
            sys.stderr.write("\n")

    def describe(self, name: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(name)
        elif self.active:
            sys.stderr.write(f"\r[{self.count + 1}/{self.total}] {name[:60]:<60}")
            sys.stderr.flush()

    def advance(self) -> None:
        self.count += 1
        if self.bar is not None:
            self.bar.update(1)

    def write(self, line: str, stream: Any = None) -> None:
        stream = stream or sys.stdout
        if self.bar is not None:
            self.bar.write(line, file=stream)
        else:
            if self.active:
                sys.stderr.write("\r" + " " * 70 + "\r")
            print(line, file=stream, flush=True)

