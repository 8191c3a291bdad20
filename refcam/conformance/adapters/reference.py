"""The reference adapter: refcam computing each case itself. It passes every case, and shows the protocol.

A new adapter starts from this one: read what the case asks (``case.labels``,
``case.feature_layer``, ...), run the implementation under test, and return
the map, or a dict of the stages it can give.
"""
from __future__ import annotations

from typing import Any

from ...cam.explain import explain
from ...io import load
from ...cam.selection import sum_of_outputs
from ..runner import Case

STAGES = ("activations", "scores", "gradients", "weights", "raw_map", "map")


def case_call(case: Case) -> tuple[Any, dict[str, Any]]:
    """The label argument and the keyword arguments of :func:`refcam.explain` that compute ``case``."""
    label = None if case.labels is None else (list(case.labels) if len(case.labels) > 1 else case.labels[0])
    options = dict(case.options, format=case.format, dtype=case.dtype, method=case.method,
                   convention=case.convention, feature_layer=case.feature_layer,
                   reduction=sum_of_outputs if case.reduction == "sum" else None)
    if case.reduction is None:
        options["reduction_layer"] = case.reduction_layer
    if case.mask is not None:
        options["mask"] = case.mask
    return label, options


def run_refcam(case: Case) -> dict[str, Any]:
    """Every stage of ``case`` as refcam computes it (:func:`refcam.explain`).

    >>> from refcam.conformance import run
    >>> run(run_refcam, pattern="dag2d/*").all_passed
    True
    """
    label, options = case_call(case)
    result = explain(load(case.network_file), case.input, label, **options)
    return {stage: getattr(result, stage) for stage in STAGES}


def run_refcam_on_onnx(case: Case) -> dict[str, Any]:
    """:func:`run_refcam` on the case's ONNX file (``<network>.onnx``, written by :func:`refcam.to_onnx`).

    It passes every case: the ONNX file a framework is given computes the suite's goldens.
    A suite built without onnx installed has no ONNX file: the case is then an error.
    """
    if case.onnx_file is None:
        raise FileNotFoundError(f"case {case.id!r} has no ONNX file: rebuild the suite with onnx installed "
                                "(pip install \"refcam[onnx]\").")
    label, options = case_call(case)
    result = explain(load(case.onnx_file), case.input, label, **options)
    return {stage: getattr(result, stage) for stage in STAGES}

