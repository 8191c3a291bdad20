"""The fuzzer's summary: counts by outcome, refcam error classes by count, and every failing case."""
from __future__ import annotations

from collections import Counter
from typing import Any

from .runner import FAILURES, OUTCOMES, Result, Run


def outcome_counts(results: list[Result]) -> dict[str, int]:
    """Cases per outcome, every outcome listed (zeros included), in OUTCOMES order."""
    counts = Counter(result.outcome for result in results)
    return {outcome: counts[outcome] for outcome in OUTCOMES}


def refcam_error_counts(results: list[Result]) -> dict[str, int]:
    """Cases per refcam error class, most frequent first."""
    counts = Counter(result.error_class for result in results if result.outcome == "refcam-error")
    return dict(counts.most_common())


def failure_lines(results: list[Result]) -> list[str]:
    """One entry per failing case: outcome, id, stage and message, then the mutation's description."""
    lines = []
    for result in results:
        if result.failed:
            error = f"{result.error_class}: " if result.error_class and result.outcome != "outside-read" else ""
            lines.append(f"  {result.outcome:<18} {result.id}  [{result.stage or '-'}] {error}{result.message}")
            lines.append(f"  {'':<18} ({result.description})")
    return lines


def summary(run: Run, heading: str) -> str:
    """The table printed by ``python -m tests.fuzz``."""
    results = run.results
    lines = [f"{heading}: {len(results)} cases in {run.seconds} s, refcam from {run.refcam_file}", "",
             f"  {'outcome':<18} {'cases':>6}"]
    lines += [f"  {outcome:<18} {count:>6}" for outcome, count in outcome_counts(results).items()]
    errors = refcam_error_counts(results)
    if errors:
        lines += ["", "  refcam errors by class"]
        lines += [f"    {name:<34} {count:>6}" for name, count in errors.items()]
    failing = failure_lines(results)
    failures = sum(result.failed for result in results)
    lines += ["", f"  failures ({failures}: {', '.join(FAILURES)})" if failing else "  no failures"]
    return "\n".join(lines + failing)


def as_json(run: Run, seed: int) -> dict[str, Any]:
    """Everything about a run, for ``--json``."""
    return {"seed": seed, "refcam_file": run.refcam_file, "seconds": run.seconds,
            "outcomes": outcome_counts(run.results), "refcam_errors": refcam_error_counts(run.results),
            "results": [result.as_dict() for result in run.results]}
