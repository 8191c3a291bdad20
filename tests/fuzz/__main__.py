"""``python -m tests.fuzz``: run the fuzz corpus, or a seeded sample of it, and print the summary.

    python -m tests.fuzz                          # 500 cases drawn with seed 0
    python -m tests.fuzz --seed 3 --count 2000
    python -m tests.fuzz --all --json fuzz.json   # the whole corpus, results to a file
    python -m tests.fuzz --case refcam/e2_digits_regression/property-junk/7
    python -m tests.fuzz --case ID --save /tmp/x  # write the case file (to debug it) instead of running it
    python -m tests.fuzz --all --refcam-path /tmp/refcam-before   # another refcam tree

The exit status is 1 when any case is a generic exception, a hang, a memory
case or an outside read (tests/fuzz/runner.py), else 0.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from . import corpus, report
from .runner import DEFAULT_TIMEOUT, DEFAULT_WORKERS, Result, run_cases

DEFAULT_COUNT = 500
PROGRESS_EVERY = 250


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run the chosen cases, print the summary; the exit status."""
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="corpus and sample seed (default 0)")
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--count", type=int, default=DEFAULT_COUNT, help=f"sample size (default {DEFAULT_COUNT})")
    chosen.add_argument("--all", action="store_true", help="run the whole corpus")
    chosen.add_argument("--case", action="append", metavar="ID", help="run this case (repeatable)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write every result to FILE")
    parser.add_argument("--save", type=Path, metavar="DIR", help="write the chosen case files to DIR, run nothing")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help=f"default {DEFAULT_WORKERS}")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds per case before it is a hang (default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--refcam-path", metavar="DIR",
                        help="a folder holding the refcam package to test, put first on the workers' PYTHONPATH")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="refcam-fuzz-corpus-") as work:
        cases = corpus.generate(args.seed, Path(work))
        if args.case:
            cases = [corpus.find(cases, case_id) for case_id in args.case]
        elif not args.all:
            cases = corpus.sample(cases, args.count, args.seed)
        if args.save:
            for case in cases:
                folder = args.save / case.id.replace("/", "__")
                folder.mkdir(parents=True, exist_ok=True)
                print(case.write(folder))
            return 0
        run = run_cases(cases, workers=args.workers, timeout=args.timeout, refcam_path=args.refcam_path,
                        progress=Progress(len(cases)))
    print(report.summary(run, f"refcam fuzz (seed {args.seed})"))
    if args.json:
        args.json.write_text(json.dumps(report.as_json(run, args.seed), indent=1))
    return 1 if any(result.failed for result in run.results) else 0


class Progress:
    """Prints ``250/3935 cases`` to stderr every PROGRESS_EVERY results."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0

    def __call__(self, result: Result) -> None:
        self.done += 1
        if self.done % PROGRESS_EVERY == 0:
            print(f"{self.done}/{self.total} cases", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
