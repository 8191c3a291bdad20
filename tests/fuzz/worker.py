"""A fuzz worker: runs cases one after another for the runner (:mod:`tests.fuzz.runner`).

Started as ``python -m tests.fuzz.worker --address-space BYTES`` in a folder
of its own. It limits its address space (so a runaway allocation raises
MemoryError or kills it), imports refcam, answers ``{"refcam": <refcam's
__init__.py>}``, then reads one request per line on stdin, ``{"path": ...,
"reader": "network" | "golden"}``, and answers one report per line::

    {"status": "ok" | "refcam-error" | "generic-exception" | "memory",
     "stage": "load" | "predict" | "gradcam", "error_class": "...", "message": "...",
     "canary_value": false, "peak_rss": 81234944, "seconds": 0.02}

A case is: read the file (``refcam.load`` or ``refcam.golden.read``); then,
on the network, ``predict`` on a small valid input (uniform in [0, 1), the
input layer's size, time steps ``max(8, min_length)``), then one Grad-CAM of
label 0. ``canary_value`` says whether a parameter, a golden array, the
prediction or the map holds the canary value (:mod:`tests.fuzz.canary`).
``peak_rss`` is the case's peak resident size (VmHWM, reset before the case
through /proc/self/clear_refs).

Only ``refcam.load``, ``refcam.golden.read``, ``refcam.RefcamError``,
``refcam.gradcam`` and the objects they return are used, so the worker runs
against older refcam trees too (the runner's ``refcam_path``). Anything a case
prints goes to stderr: stdout carries the reports only.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import time
import traceback
from typing import Any, Iterator

import numpy as np

from .canary import holds_canary

MAX_INPUT_ELEMENTS = 2 ** 22      # a network declaring a larger input is loaded but not run
SEQUENCE_STEPS = 8


def main() -> None:
    """Serve requests until stdin closes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address-space", type=int, required=True, help="RLIMIT_AS in bytes")
    limit = parser.parse_args().address_space
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    reports = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)                                   # stray prints go to stderr, not into the reports
    import refcam
    import refcam.golden
    _send(reports, {"refcam": refcam.__file__})
    for line in sys.stdin:
        request = json.loads(line)
        _send(reports, run_case(refcam, request["path"], request["reader"]))


def _send(stream: Any, message: dict[str, Any]) -> None:
    stream.write(json.dumps(message) + "\n")
    stream.flush()


def run_case(refcam: Any, path: str, reader: str) -> dict[str, Any]:
    """Read, predict and Grad-CAM one case file; the report described in the module docstring."""
    gc.collect()
    _reset_peak_rss()
    start = time.monotonic()
    stage, arrays = "load", []
    report: dict[str, Any] = {"status": "ok", "error_class": "", "message": ""}
    try:
        loaded = refcam.golden.read(path) if reader == "golden" else refcam.load(path)
        net = loaded.network if reader == "golden" else loaded
        arrays = list(_loaded_arrays(loaded, net))
        stage = "predict"
        x, input_format = _valid_input(net)
        if x is not None:
            arrays.append(net.predict(x, format=input_format))
            stage = "gradcam"
            arrays.append(refcam.gradcam(net, x, 0, format=input_format).map)
    except MemoryError as err:
        report.update(status="memory", error_class="MemoryError", message=_describe(err))
    except refcam.RefcamError as err:
        report.update(status="refcam-error", error_class=type(err).__name__, message=str(err)[:500])
    except Exception as err:  # noqa: BLE001 - any other exception is exactly what the fuzzer looks for
        report.update(status="generic-exception", error_class=type(err).__name__, message=_describe(err))
    report.update(stage=stage, canary_value=any(holds_canary(array) for array in arrays),
                  peak_rss=_peak_rss(), seconds=round(time.monotonic() - start, 4))
    return report


def _loaded_arrays(loaded: Any, net: Any) -> Iterator[Any]:
    """Every parameter of every layer, and for a golden its arrays too."""
    for layer in net.layers:
        yield from layer.params().values()
    if loaded is not net:
        yield from (value for value in vars(loaded).values() if isinstance(value, np.ndarray))


def _valid_input(net: Any) -> tuple[np.ndarray | None, str]:
    """A valid observation for ``net`` in format C then S... (or CT), or None when it would be too large."""
    input_layer = net.input_layer
    steps = max(SEQUENCE_STEPS, int(getattr(input_layer, "min_length", 1)))
    shape = tuple(steps if size is None else int(size) for size in input_layer.per_observation_shape())
    input_format = "CT" if input_layer.default_format == "CT" else "C" + "S" * (len(shape) - 1)
    if np.prod(shape, dtype=object) > MAX_INPUT_ELEMENTS:
        return None, input_format
    return np.random.default_rng(0).uniform(0.0, 1.0, shape), input_format


def _describe(err: BaseException) -> str:
    """``message (at refcam/io/hdf5.py:120 in read_network)``: the innermost refcam frame, else the last one."""
    frames = traceback.extract_tb(err.__traceback__)
    inside = [frame for frame in frames if f"{os.sep}refcam{os.sep}" in frame.filename] or frames
    where = ""
    if inside:
        frame = inside[-1]
        name = frame.filename[frame.filename.rfind(f"{os.sep}refcam{os.sep}") + 1:]
        where = f" (at {name}:{frame.lineno} in {frame.name})"
    return f"{str(err)[:400]}{where}"


def _reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def _peak_rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


if __name__ == "__main__":
    main()
