"""Golden-output files (refcam extension X1): one self-describing HDF5 file per Grad-CAM run.

A golden holds everything another implementation needs to be tested against
refcam: the input (as given and as refcam's float array), the options, the
network itself (embedded under ``/network`` in refcam's network format), the
feature and reduction layer names, every intermediate and both maps, and the
provenance (refcam, NumPy, h5py and Python versions, platform, dtype). The
file layout is specified in ``docs/golden-format.md``; in short::

    /                 attributes: format = "refcam-golden", schema_version = 1,
                      feature_layer, reduction_layer, reduction ("class" | "custom"),
                      reduction_source, convention, dtype, map_axes, options (JSON),
                      refcam_version, numpy_version, h5py_version, python_version, platform
    /input            the input as given (its dtype, the caller's layout)
    /input_internal   (B, C, *S)       the input in the compute dtype, refcam's layout
    /activations      (B, C, *S)       A, the feature layer's output
    /gradients        (K, B, C, *S)    dscore/dA, one per label
    /weights          (K, B, C)        alpha = mean over S of dscore/dA
    /scores           (K, B)           the score of each label and observation
    /raw_map          MATLAB map layout, feature-layer resolution (before the resize)
    /map              MATLAB map layout, the map refcam returns
    /labels           (K,) int64, 0-based class indices (class labels only)
    /mask             uint8 0/1 (only when a mask was given)
    /network/         a refcam network file's content (docs/hdf5-format.md), stored compactly
                      (gzip, float32 where that is exact) with its SHA-256 in network_sha256

Datasets are gzip-compressed (exact). ``write(..., network_file=PATH)`` writes
no ``/network``: the golden (schema_version 2) records the network file's name
(``network_file``) and SHA-256 (``network_sha256``), and :func:`read` loads
that file from the golden's folder (or the path given) after checking the hash.

A reduction function cannot be stored: its source text (or ``repr``) is kept in
``reduction_source`` for people to read, never executed, and the golden says
``reduction = "custom"``. Reading validates like :func:`refcam.io.load`:
attributes and datasets are type-checked before use, JSON is parsed with
``json.loads`` only, links to other files are refused, and every problem
raises a specific :class:`~refcam.errors.FileFormatError` subclass.
Writing is deterministic (no timestamps): the same run gives the same bytes.
Reading checks every declaration against the embedded network before any
array is read, so a crafted golden is refused without allocating its arrays.

The package: :mod:`~refcam.golden.record` (the :class:`Golden` record and the
names), :mod:`~refcam.golden.writer` (:func:`write`), :mod:`~refcam.golden.reader`
(:func:`read`), :mod:`~refcam.golden.consistency` (the shapes that must fit).
"""
from .reader import GoldenNetworkError, read
from .record import FORMAT_NAME, SCHEMA_VERSION, Golden, GoldenDtypeError, GoldenShapeError, map_axes
from .writer import file_sha256, write

__all__ = ["Golden", "GoldenDtypeError", "GoldenNetworkError", "GoldenShapeError", "file_sha256", "map_axes", "read",
           "write"]
