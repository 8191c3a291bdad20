"""Array-module dispatch: NumPy on the CPU, CuPy on a GPU, from one code path.

Every kernel asks ``xp = get_xp(*arrays)`` and calls ``xp.<function>``; this is
the only module that imports CuPy. Mixing NumPy and CuPy arrays in one call is an
error (:class:`~refcam.errors.BackendError`): data moves between host and device
only at the public API edge, through :func:`to_device` and :func:`to_numpy`.

dtype policy: refcam computes in float64 unless float32 is asked for; every op
returns arrays of its input's dtype.
"""
from __future__ import annotations

import functools
import importlib
from types import ModuleType
from typing import Any

import numpy as np

from .errors import BackendError

COMPUTE_DTYPES = {"float64": np.dtype(np.float64), "float32": np.dtype(np.float32)}


@functools.lru_cache(maxsize=1)
def _cupy_module() -> ModuleType | None:
    """Return the ``cupy`` module if it imports, else None.

    The answer is remembered: without CuPy, every ``device="auto"`` call would
    search the import path again (about 0.25 ms, a fifth of a small network's
    Grad-CAM). A CuPy installed while the process runs is seen after a restart.
    """
    try:
        return importlib.import_module("cupy")
    except Exception:  # ImportError, or a CUDA driver error at import
        return None


def is_cupy_array(a: Any) -> bool:
    """True when ``a`` is a CuPy ndarray (checked without importing CuPy)."""
    if type(a) is np.ndarray:
        return False
    return type(a).__module__.split(".")[0] == "cupy"


def get_xp(*arrays: Any) -> ModuleType:
    """Return ``numpy`` or ``cupy``, whichever module the given arrays belong to.

    Non-array arguments (Python scalars, None) are ignored. Arrays from both
    modules in one call raise :class:`BackendError`.

    >>> get_xp(np.zeros(2), 3.0) is np
    True
    """
    kinds = {is_cupy_array(a) for a in arrays if hasattr(a, "shape")}
    if kinds == {True, False}:
        raise BackendError(
            "NumPy and CuPy arrays were mixed in one operation; move all inputs "
            "to one device first (refcam.backend.to_device)."
        )
    if kinds == {True}:
        cp = _cupy_module()
        if cp is None:
            raise BackendError("a CuPy array was given but CuPy cannot be imported here; "
                               "install CuPy or pass NumPy arrays.")
        return cp
    return np


def gpu_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    cp = _cupy_module()
    if cp is None:
        return False
    try:
        return cp.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def resolve_device(device: str) -> str:
    """Map ``"auto" | "cpu" | "gpu"`` to ``"cpu"`` or ``"gpu"``.

    ``"auto"`` picks the GPU when CuPy and a GPU are present. ``"gpu"`` without
    them raises :class:`BackendError`.
    """
    if device == "cpu":
        return "cpu"
    if device == "auto":
        return "gpu" if gpu_available() else "cpu"
    if device == "gpu":
        if _cupy_module() is None:
            raise BackendError(
                "device='gpu' needs CuPy; install it with `pip install refcam[gpu]` "
                "(or a cupy-cudaXXx wheel matching your CUDA), or use device='cpu'."
            )
        if not gpu_available():
            raise BackendError("device='gpu' was asked for but CuPy sees no CUDA device; use device='cpu'.")
        return "gpu"
    raise BackendError(f"device must be 'auto', 'cpu' or 'gpu', not {device!r}.")


def to_device(a: Any, device: str) -> Any:
    """Copy a NumPy or CuPy array to ``device`` ("cpu" or "gpu"); a no-op when already there."""
    if device == "cpu":
        return to_numpy(a)
    if device == "gpu":
        cp = _cupy_module()
        if cp is None:
            raise BackendError("CuPy is not installed; cannot move data to the GPU.")
        return cp.asarray(a)
    raise BackendError(f"device must be 'cpu' or 'gpu', not {device!r}.")


def to_numpy(a: Any) -> np.ndarray:
    """Return ``a`` as a NumPy array (copying from the GPU if needed)."""
    if is_cupy_array(a):
        return a.get()
    return np.asarray(a)


def resolve_dtype(dtype: Any) -> np.dtype:
    """Validate a compute dtype: "float64" (default everywhere) or "float32".

    Accepts the strings or the NumPy types; anything else raises BackendError.
    """
    try:
        key = dtype if isinstance(dtype, str) else np.dtype(dtype).name
    except (TypeError, ValueError):
        key = None
    if key not in COMPUTE_DTYPES:
        raise BackendError(f"compute dtype must be 'float64' or 'float32', not {dtype!r}.")
    return COMPUTE_DTYPES[key]


def special_functions(xp: ModuleType) -> ModuleType:
    """The special-function module of array module ``xp``: ``scipy.special`` or ``cupyx.scipy.special``.

    Both provide the same element-wise ufuncs (``erf``, ``erfc``, ...) under
    the same names, so a kernel calls ``special_functions(xp).erf(x)`` on either
    device. Imported on first use (SciPy's costs half a second).

    >>> special_functions(np).erf(np.array([0.0]))
    array([0.])
    """
    return importlib.import_module("scipy.special" if xp is np else "cupyx.scipy.special")


def scatter_add(xp: ModuleType, target: Any, index: Any, values: Any) -> None:
    """In place ``target[index] += values`` with repeated indices accumulated (``np.add.at``)."""
    if xp is np:
        np.add.at(target, index, values)
    else:
        importlib.import_module("cupyx").scatter_add(target, index, values)
