"""Runs fuzz cases in a small pool of persistent workers, with a time and a memory limit, and classifies them.

Starting a Python process that imports refcam and onnx takes about a second,
so :func:`run_cases` keeps ``workers`` (2) processes of
:mod:`tests.fuzz.worker` and hands them cases one after another. The parent
writes each case file, plants the canaries, sends the path, and waits at most
``timeout`` seconds (20) for the report; a worker past it is killed and
restarted and the case is a ``hang``. Each worker's run folder::

    worker-<k>/            canaries "above" the case file
    worker-<k>/case/       the case file (model.h5 or model.onnx), canaries next to it, and the
                           legit ONNX external data files (canary.LEGIT_RAW)
    worker-<k>/cwd/        the worker's working folder, with canaries
    worker-<k>/canaries/   the canary files, hard-linked into the three places above
    worker-<k>/stderr.log  what the worker and the libraries printed

Outcomes (:func:`classify`), the first that applies:

==================  ====================================================================
outside-read        inotify saw a canary opened or read, or a loaded array holds the canary value
hang                no report within the timeout
memory              MemoryError, the worker died (killed, out of memory, crashed), or a peak
                    RSS over 1 GiB for a file under 4 MiB (every corpus file is smaller)
generic-exception   an exception that is not a ``refcam.RefcamError`` (type, message, where)
refcam-error        a ``refcam.RefcamError`` subclass (its class name is recorded)
ok                  the file loaded, and predict and Grad-CAM ran
==================  ====================================================================

Every outcome after ``refcam-error`` in this list but ``ok`` is a failure
(:data:`FAILURES`).
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import canary
from .case import Case, Source
from .inotify import Inotify

OUTCOMES = ("ok", "refcam-error", "generic-exception", "hang", "memory", "outside-read")
FAILURES = ("generic-exception", "hang", "memory", "outside-read")
DEFAULT_WORKERS = 2
DEFAULT_TIMEOUT = 20.0
STARTUP_TIMEOUT = 120.0
ADDRESS_SPACE = 4 * 1024 ** 3
PEAK_RSS_LIMIT = 1024 ** 3
SMALL_FILE_BYTES = 4 * 1024 ** 2
REPO_ROOT = Path(__file__).resolve().parents[2]
SINGLE_THREADED = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass
class Result:
    """What one case did."""

    id: str
    outcome: str                   # one of OUTCOMES
    error_class: str = ""          # the exception's class (refcam-error, generic-exception, memory)
    message: str = ""
    stage: str = ""                # load, predict or gradcam: where the case ended
    description: str = ""          # the mutation
    seconds: float = 0.0
    peak_rss: int = 0              # bytes
    file_bytes: int = 0
    canaries_opened: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """Whether the outcome is one of FAILURES."""
        return self.outcome in FAILURES

    def as_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data."""
        return asdict(self)


@dataclass
class Run:
    """The results of :func:`run_cases`, in the order of the cases, and what ran them."""

    results: list[Result]
    refcam_file: str
    seconds: float


def classify(case: Case, report: dict[str, Any] | None, *, opened: list[str], file_bytes: int,
             timeout: float | None = None, death: str = "") -> Result:
    """The outcome of ``case`` from the worker's ``report`` (None when there is none: the worker passed
    ``timeout``, or died as ``death`` says) and the canaries inotify saw ``opened``."""
    result = Result(case.id, "ok", description=case.mutation.description, file_bytes=file_bytes,
                    canaries_opened=opened)
    if report is not None:
        result.error_class, result.message, result.stage = report["error_class"], report["message"], report["stage"]
        result.seconds, result.peak_rss = report["seconds"], report["peak_rss"]
    ended = "" if report is None or report["status"] == "ok" else f"; it ended in {result.error_class}: {result.message}"
    if opened or (report is not None and report["canary_value"]):
        seen = f"opened {', '.join(opened)}" if opened else "a loaded array holds the canary value"
        result.outcome, result.message = "outside-read", f"{seen}{ended}"
    elif report is None and timeout is not None:
        result.outcome, result.message, result.seconds = "hang", f"no report within {timeout:g} s", timeout
    elif report is None:
        result.outcome, result.message = "memory", death
    elif report["status"] != "ok":
        result.outcome = report["status"]
    if result.outcome in ("ok", "refcam-error") and file_bytes < SMALL_FILE_BYTES \
            and result.peak_rss > PEAK_RSS_LIMIT:
        result.outcome = "memory"
        result.message = f"peak RSS {result.peak_rss / 1024 ** 3:.2f} GiB for a {file_bytes}-byte file{ended}"
    return result


class Worker:
    """One worker process, its folders, its canaries and the inotify instance watching them."""

    def __init__(self, folder: Path, refcam_path: str | None, address_space: int) -> None:
        self.folder, self.refcam_path, self.address_space = folder, refcam_path, address_space
        self.case_folder, self.cwd, self.canaries = folder / "case", folder / "cwd", folder / "canaries"
        for path in (self.case_folder, self.cwd, self.canaries):
            path.mkdir(parents=True)
        self.inotify = Inotify()
        for raw in canary.write_raw_canaries(self.canaries):
            self._link_everywhere(raw, raw.name)
            self.inotify.watch(raw, raw.name)
        canary.write_legit_raw(self.case_folder)
        self.hdf5_canaries: dict[tuple[str, str], Path] = {}
        self.process: subprocess.Popen[bytes] | None = None
        self.buffer = b""
        self.case: Case | None = None
        self.file_bytes = 0
        self.deadline = 0.0
        self.refcam_file = ""

    # -- process ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the process and wait for its greeting (which names the refcam it imported)."""
        paths = ([self.refcam_path] if self.refcam_path else []) + [str(REPO_ROOT)]
        if os.environ.get("PYTHONPATH"):
            paths.append(os.environ["PYTHONPATH"])
        env = {**os.environ, **SINGLE_THREADED, "PYTHONPATH": os.pathsep.join(paths)}
        with open(self.folder / "stderr.log", "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.fuzz.worker", "--address-space", str(self.address_space)],
                cwd=self.cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
        self.buffer = b""
        greeting = self._wait_for_line(STARTUP_TIMEOUT)
        if greeting is None:
            raise RuntimeError(f"a fuzz worker did not start; its stderr:\n{self.stderr_tail()}")
        self.refcam_file = json.loads(greeting)["refcam"]

    def stop(self) -> None:
        """Close stdin (the worker exits), or kill it when it does not."""
        if self.process is None:
            return
        self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()
        self.process = None

    def kill(self) -> None:
        """Kill the process (it is past its deadline)."""
        self.process.kill()
        self.process.wait()
        self.process.stdin.close()
        self.process.stdout.close()
        self.process = None

    def stderr_tail(self, size: int = 2000) -> str:
        """The end of what the worker wrote to stderr."""
        return (self.folder / "stderr.log").read_bytes()[-size:].decode(errors="replace")

    def _wait_for_line(self, timeout: float) -> bytes | None:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.process.stdout], [], [], left)[0] or not self.receive():
                return None
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line

    def receive(self) -> bool:
        """Read what the worker sent into the buffer; False at end of file (the worker died)."""
        data = os.read(self.process.stdout.fileno(), 65536)
        self.buffer += data
        return bool(data)

    # -- cases ------------------------------------------------------------------------------------
    def submit(self, case: Case, timeout: float) -> None:
        """Write the case file, plant its HDF5 canary, forget earlier canary events, send the request."""
        path = case.write(self.case_folder)
        self._plant_hdf5_canary(case.source)
        self.inotify.opened()
        self.case, self.file_bytes = case, path.stat().st_size
        self.process.stdin.write((json.dumps({"path": str(path), "reader": case.reader}) + "\n").encode())
        self.process.stdin.flush()
        self.deadline = time.monotonic() + timeout

    def report(self) -> dict[str, Any] | None:
        """The report, once a whole line has arrived."""
        if b"\n" not in self.buffer:
            return None
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def finish(self, report: dict[str, Any] | None, *, timeout: float | None = None, death: str = "") -> Result:
        """Classify the current case and make the worker idle."""
        result = classify(self.case, report, opened=self.inotify.opened(), file_bytes=self.file_bytes,
                          timeout=timeout, death=death)
        self.case = None
        return result

    def death(self) -> str:
        """Why the process ended, after end of file on its stdout."""
        status = self.process.wait()
        self.process.stdin.close()
        self.process.stdout.close()
        self.process = None
        how = f"signal {signal.Signals(-status).name}" if status < 0 else f"exit status {status}"
        return f"the worker died ({how}); its stderr ends: {self.stderr_tail(600)!r}"

    # -- canaries ---------------------------------------------------------------------------------
    def _plant_hdf5_canary(self, source: Source) -> None:
        key = (source.kind, source.name) if source.kind != "onnx" else ("onnx", "")
        if key not in self.hdf5_canaries:
            path = self.canaries / f"{len(self.hdf5_canaries)}.h5"
            canary.write_hdf5_canary(None if source.kind == "onnx" else source.path, path)
            self.inotify.watch(path, canary.CANARY_HDF5)
            self.hdf5_canaries[key] = path
        self._link_everywhere(self.hdf5_canaries[key], canary.CANARY_HDF5)

    def _link_everywhere(self, path: Path, name: str) -> None:
        for folder in (self.case_folder, self.folder, self.cwd):
            (folder / name).unlink(missing_ok=True)
            os.link(path, folder / name)


def run_cases(cases: list[Case], *, workers: int = DEFAULT_WORKERS, timeout: float = DEFAULT_TIMEOUT,
              refcam_path: str | None = None, address_space: int = ADDRESS_SPACE,
              progress: Callable[[Result], None] | None = None) -> Run:
    """Run ``cases`` in ``workers`` processes; ``refcam_path`` is a folder put first on the workers'
    PYTHONPATH (one holding an older ``refcam`` package, for before/after numbers).

    >>> run = run_cases(corpus.sample(cases, 500, seed=0))     # doctest: +SKIP
    >>> [r.id for r in run.results if r.failed]                # doctest: +SKIP
    """
    start = time.monotonic()
    results: dict[str, Result] = {}
    queue = deque(cases)
    with tempfile.TemporaryDirectory(prefix="refcam-fuzz-") as root:
        pool = [Worker(Path(root) / f"worker-{k}", refcam_path, address_space) for k in range(workers)]
        try:
            for worker in pool:
                worker.start()
            while queue or any(worker.case for worker in pool):
                for worker in pool:
                    if worker.case is None and queue:
                        worker.submit(queue.popleft(), timeout)
                for result in _next_results(pool, timeout):
                    results[result.id] = result
                    if progress is not None:
                        progress(result)
        finally:
            for worker in pool:
                worker.stop()
                worker.inotify.close()
        refcam_file = pool[0].refcam_file
    return Run([results[case.id] for case in cases], refcam_file, round(time.monotonic() - start, 1))


def _next_results(pool: list[Worker], timeout: float) -> list[Result]:
    """Wait until a busy worker reports, dies or passes its deadline; the results that came of it."""
    busy = [worker for worker in pool if worker.case is not None]
    wait = max(0.0, min(worker.deadline for worker in busy) - time.monotonic())
    readable = select.select([worker.process.stdout for worker in busy], [], [], wait)[0]
    finished = []
    for worker in busy:
        if worker.process.stdout in readable:
            if not worker.receive():
                finished.append(worker.finish(None, death=worker.death()))
                worker.start()
                continue
            report = worker.report()
            if report is not None:
                finished.append(worker.finish(report))
        elif time.monotonic() >= worker.deadline:
            worker.kill()
            finished.append(worker.finish(None, timeout=timeout))
            worker.start()
    return finished
