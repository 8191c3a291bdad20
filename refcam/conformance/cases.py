"""The conformance suite's cases: network + input + score + method + options, each with an id.

A case is what a Grad-CAM implementation is asked to compute; the expected
outputs (every intermediate) are refcam's golden file for it
(:func:`refcam.conformance.build`). Ids read ``<network>/<what varies>``.
Inputs are uniform in ``[0, 1)`` from ``numpy.random.default_rng(seed)``, in
MATLAB's layout (``format`` says it: ``SSCB`` = h x w x c x batch, ``SSSCB``
for volumes, ``CBT`` = channels x batch x time steps).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

SUITE_VERSION = "1"
INPUT_SHAPES = {"series2d": ((10, 12, 3), "SSCB"), "dag2d": ((10, 10, 3), "SSCB"),
                "volume3d": ((6, 6, 5, 2), "SSSCB"), "sequence1d": ((3, 12), "CBT"),
                "regression2d": ((8, 8, 1), "SSCB"), "segmentation2d": ((8, 8, 2), "SSCB")}


@dataclasses.dataclass(frozen=True)
class CaseSpec:
    """One case as the suite defines it; ``options`` are those of :func:`refcam.explain` besides the score."""

    id: str
    network: str
    description: str
    labels: tuple[int, ...] | None = (0,)
    batch: int = 1
    method: str = "gradcam"
    convention: str = "matlab"
    dtype: str = "float64"
    reduction: str | None = None          # "sum": :func:`sum_of_outputs`
    mask: bool = False                    # a fixed rectangle of the output's positions
    options: tuple[tuple[str, Any], ...] = ()
    seed: int = 0

    @property
    def format(self) -> str:
        return INPUT_SHAPES[self.network][1]

    def input(self) -> np.ndarray:
        """The case's input in MATLAB's layout (``format``), float64."""
        shape, layout = INPUT_SHAPES[self.network]
        rng = np.random.default_rng(1000 + self.seed)
        if layout == "CBT":
            return rng.uniform(0.0, 1.0, (shape[0], self.batch, shape[1]))
        return rng.uniform(0.0, 1.0, shape + ((self.batch,) if self.batch > 1 else ()))

    def mask_array(self) -> np.ndarray | None:
        """The segmentation mask (h x w, True where the score is summed), or None."""
        if not self.mask:
            return None
        mask = np.zeros(INPUT_SHAPES[self.network][0][:2], dtype=bool)
        mask[2:5, 3:7] = True
        return mask


def _case(id_: str, network: str, description: str, **fields: Any) -> CaseSpec:
    options = fields.pop("options", {})
    labels = fields.pop("labels", (0,))
    return CaseSpec(id=id_, network=network, description=description, options=tuple(sorted(options.items())),
                    labels=None if labels is None else tuple(labels), **fields)


def _grad_cam_cases() -> list[CaseSpec]:
    return [
        _case("series2d/default", "series2d", "MATLAB's defaults: softmax score, last ReLU, bicubic"),
        _case("series2d/logit", "series2d", "the logit as the score", options={"reduction_layer": "fc"}),
        _case("series2d/early-layer", "series2d", "an explicit feature layer below the pooling",
              options={"feature_layer": "relu_1"}),
        _case("series2d/nearest", "series2d", "nearest upsampling", options={"upsampling": "nearest"}),
        _case("series2d/no-upsampling", "series2d", "the map at the feature layer's size",
              options={"upsampling": "none"}),
        _case("series2d/labels", "series2d", "three labels sharing one forward pass", labels=(0, 1, 2)),
        _case("series2d/batch", "series2d", "a batch of 3, two labels", labels=(0, 2), batch=3, seed=1),
        _case("series2d/float32", "series2d", "computed in float32", dtype="float32"),
        _case("dag2d/default", "dag2d", "a DAG: concatenation and addition"),
        _case("dag2d/concat", "dag2d", "the feature layer is the concatenation",
              options={"feature_layer": "concat"}, labels=(1,)),
        _case("dag2d/float32", "dag2d", "a DAG in float32", dtype="float32"),
        _case("volume3d/default", "volume3d", "a 3-D volume, MATLAB's defaults", labels=(1,)),
        _case("volume3d/batch", "volume3d", "a batch of 2 volumes, two labels", labels=(0, 2), batch=2, seed=2),
        _case("sequence1d/default", "sequence1d", "a 1-D sequence: causal convolution, layer norm"),
        _case("sequence1d/causal-layer", "sequence1d", "the ReLU after the causal convolution and layer norm",
              options={"feature_layer": "relu_1"}, labels=(2,)),
        _case("sequence1d/batch", "sequence1d", "a batch of 2 sequences", labels=(1,), batch=2, seed=3),
        _case("regression2d/sum", "regression2d", "regression: the output summed by a reduction function",
              labels=None, reduction="sum"),
        _case("regression2d/early-layer", "regression2d", "regression, feature layer before the pooling",
              labels=None, reduction="sum", options={"feature_layer": "relu_1"}),
        _case("segmentation2d/summed", "segmentation2d", "segmentation: class 1 summed over every pixel",
              labels=(1,), options={"feature_layer": "relu_2"}),
        _case("segmentation2d/mask", "segmentation2d", "segmentation: class 2 summed over a mask",
              labels=(2,), mask=True, options={"feature_layer": "relu_2"}),
    ]


METHOD_OPTIONS: dict[str, dict[str, Any]] = {"scorecam": {"batch_size": 8}, "ablationcam": {"batch_size": 8}}


def _method_cases() -> list[CaseSpec]:
    methods = ("gradcam++", "hirescam", "xgradcam", "layercam", "eigencam", "eigengradcam", "scorecam",
               "ablationcam")
    cases = [_case(f"series2d/{method}", "series2d", f"{method} at relu_1, MATLAB's score and resize", method=method,
                   options=dict(METHOD_OPTIONS.get(method, {}), feature_layer="relu_1")) for method in methods]
    cases += [_case(f"volume3d/{method}", "volume3d", f"{method} on a volume", method=method, labels=(1,),
                    options=METHOD_OPTIONS.get(method, {})) for method in ("layercam", "scorecam")]
    cases += [_case(f"sequence1d/{method}", "sequence1d", f"{method} on a sequence", method=method, labels=(1,),
                    options=METHOD_OPTIONS.get(method, {})) for method in ("hirescam", "ablationcam")]
    return cases


def _convention_cases() -> list[CaseSpec]:
    conventions = ("pytorch-grad-cam", "captum", "torchcam", "tf-keras-vis", "keras-example")
    cases = [_case(f"series2d/{name}", "series2d", f"Grad-CAM in {name}'s convention", convention=name)
             for name in conventions]
    return cases + [
        _case("series2d/torchcam-gradcam++", "series2d", "torchcam's Grad-CAM++ (its own weights)",
              method="gradcam++", convention="torchcam", options={"feature_layer": "relu_1"}),
        _case("series2d/pytorch-grad-cam-layercam", "series2d", "pytorch-grad-cam's LayerCAM",
              method="layercam", convention="pytorch-grad-cam", options={"feature_layer": "relu_1"}),
        _case("volume3d/pytorch-grad-cam", "volume3d", "pytorch-grad-cam's Grad-CAM of a volume (cubic zoom)",
              convention="pytorch-grad-cam", labels=(1,)),
    ]


def suite() -> list[CaseSpec]:
    """Every case of suite version :data:`SUITE_VERSION`, in a fixed order.

    >>> [case.id for case in suite()][:2]
    ['series2d/default', 'series2d/logit']
    """
    return _grad_cam_cases() + _method_cases() + _convention_cases()
