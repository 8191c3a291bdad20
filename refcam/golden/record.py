"""What a golden file holds: its names and constants, the :class:`Golden` record, its errors, and ``map_axes``.

The layout is specified in ``docs/golden-format.md``; :mod:`refcam.golden.writer`
writes it and :mod:`refcam.golden.reader` reads it back.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..cam.explain import explain
from ..cam.gradcam import GradCAMResult
from ..errors import FileFormatError, RefcamError, ShapeError
from ..network import Network

FORMAT_NAME = "refcam-golden"
SCHEMA_VERSION = 1            # a golden with its network embedded
EXTENDED_SCHEMA_VERSION = 2    # a golden that names its network file by SHA-256, or records another CAM method
NETWORK_GROUP = "network"
NETWORK_SHA256 = "network_sha256"   # root attribute: SHA-256 of the network file (embedded: as refcam saves it)
NETWORK_FILE = "network_file"       # root attribute of a referencing golden: the network file's name
METHOD = "method"                   # root attribute (version 2): the CAM method of refcam.explain; absent: gradcam
# the methods a golden records: every CAM method of refcam.explain whose intermediates have Grad-CAM's layout
# (guided backpropagation's map is a gradient at the input, not a map at the feature layer)
GOLDEN_METHODS = ("gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "eigencam", "eigengradcam",
                  "scorecam", "ablationcam")
ELEMENTWISE_WEIGHT_METHODS = ("hirescam", "layercam")   # weights (K, B, C, *S), not (K, B, C)
STRING_ATTRIBUTES = ("format", "feature_layer", "reduction_layer", "reduction", "reduction_source",
                     "convention", "dtype", "map_axes", "options", "refcam_version", "numpy_version",
                     "h5py_version", "python_version", "platform")
PROVENANCE = ("refcam_version", "numpy_version", "h5py_version", "python_version", "platform")
INTERMEDIATES = ("activations", "gradients", "weights", "scores", "raw_map", "map")
REQUIRED_DATASETS = ("input", "input_internal") + INTERMEDIATES
OPTIONAL_DATASETS = ("labels", "mask")
COMPUTE_DTYPES = ("float64", "float32")
REDUCTIONS = ("class", "custom")


class GoldenShapeError(FileFormatError, ShapeError):
    """A golden file's datasets have shapes that do not fit together."""


class GoldenDtypeError(FileFormatError, TypeError):
    """A golden file's dataset has an HDF5 type or dtype it may not have."""


@dataclass(repr=False)
class Golden:
    """The content of a golden file (:func:`read`, :func:`write`).

    Arrays are NumPy arrays exactly as stored; the maps are in MATLAB's layout
    (axes named by ``map_axes``), the intermediates in refcam's internal layout
    (see the module docstring). ``network`` is the network, loaded: the
    embedded one, or the file a referencing golden names (``network_file``,
    checked against ``network_sha256``).
    """

    input: np.ndarray
    input_internal: np.ndarray
    activations: np.ndarray
    gradients: np.ndarray
    weights: np.ndarray
    scores: np.ndarray
    raw_map: np.ndarray
    map: np.ndarray
    labels: np.ndarray | None
    mask: np.ndarray | None
    network: Network
    feature_layer: str
    reduction_layer: str
    reduction: str
    reduction_source: str
    convention: str
    dtype: str
    map_axes: str
    options: dict[str, Any]
    refcam_version: str
    numpy_version: str
    h5py_version: str
    python_version: str
    platform: str
    path: str | None = None
    network_sha256: str | None = None
    network_file: str | None = None
    method: str = "gradcam"

    def recompute(self) -> GradCAMResult:
        """Run refcam again on the stored network, input, method and options (class labels only).

        Raises :class:`~refcam.errors.RefcamError` for ``reduction = "custom"``:
        the reduction function is not in the file.
        """
        if self.reduction == "custom":
            raise RefcamError("this golden was made with a custom reduction function, which a golden "
                              "file does not store (its source is in .reduction_source, for reading); "
                              "call refcam.gradcam with that function yourself.")
        options = dict(self.options)
        label, convention = options.pop("label"), options.pop("convention")
        if options.pop("mask"):
            options["mask"] = self.mask
        return explain(self.network, self.input, label, method=self.method, convention=convention, **options)

    def __repr__(self) -> str:
        where = f" from {self.path}" if self.path else ""
        method = "" if self.method == "gradcam" else f"{self.method}, "
        return (f"Golden({method}{self.convention}, feature_layer={self.feature_layer!r}, reduction_layer="
                f"{self.reduction_layer!r}, reduction={self.reduction!r}, map {self.map_axes} "
                f"{self.map.shape} {self.dtype}{where})")



def map_axes(input_format: str, stacked: bool) -> str:
    """The letters of a map's axes in MATLAB's layout: ``S``/``T`` per spatial axis (``1`` for the
    singleton row of a 1 x t map), then ``K`` (labels) when stacked, then ``B`` when the input had one.

    >>> map_axes("SSC", stacked=False), map_axes("CBT", stacked=True)
    ('SS', '1TKB')
    """
    spatial = "".join(letter for letter in input_format if letter in "ST")
    return (("1" if len(spatial) == 1 else "") + spatial + ("K" if stacked else "")
            + ("B" if "B" in input_format else ""))
