"""A NumPy-backed stand-in for CuPy, so that the GPU-marked tests also run on machines without a GPU.

Put ``tests/cupy_stand_in`` first on ``PYTHONPATH`` and ``import cupy`` gets
this module (``tests/test_devices.py`` does so in a subprocess). What it
checks is refcam's device discipline, not CuPy:

* arrays are a subclass of ``numpy.ndarray`` whose type lives in module
  ``cupy`` (so ``refcam.backend.is_cupy_array`` sees a GPU array) and whose
  results stay in that subclass ("on the device");
* as in CuPy, ufuncs and array functions refuse plain NumPy arrays mixed in,
  and host data enters only through ``asarray``/``array`` (a copy) and leaves
  only through ``.get()``/``asnumpy``;
* ``cuda.runtime.getDeviceCount()`` is 1, ``cuda.Device().synchronize()``
  does nothing.

It does not check CuPy's numerics, its kernels or which NumPy functions CuPy
lacks: only a real GPU does (``benchmarks/device.sh``).
"""
import types as _types

import numpy as _np

__version__ = "0.0+numpy-stand-in"


class ndarray(_np.ndarray):
    """A "device" array: NumPy memory, CuPy's module name, no silent mixing with host arrays."""

    def get(self) -> _np.ndarray:
        """The array copied to the host (a plain NumPy array)."""
        return _np.array(self.view(_np.ndarray))

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        _refuse_host(inputs, f"{ufunc.__name__}.{method}")
        if out is not None:
            _refuse_host(out, f"{ufunc.__name__}(out=)")
            kwargs["out"] = tuple(_host(o) for o in out)
        result = getattr(ufunc, method)(*(_host(a) for a in inputs), **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _on_device(result)

    def __array_function__(self, func, types, args, kwargs):
        _refuse_host(args, func.__name__)
        _refuse_host(tuple(kwargs.values()), func.__name__)
        return _on_device(func(*_host(args), **_host(kwargs)))


ndarray.__module__ = "cupy._core.core"   # where CuPy's ndarray type lives


def _refuse_host(items, where: str) -> None:
    """TypeError for a plain NumPy array (not a 0-d one) among ``items``, as CuPy raises."""
    for a in items:
        if isinstance(a, (list, tuple)):
            _refuse_host(a, where)
        elif type(a) is _np.ndarray and a.ndim > 0:
            raise TypeError(f"cupy stand-in: a host numpy array of shape {a.shape} was given to {where}; "
                            "CuPy refuses to mix host and device arrays")


def _host(a):
    """The NumPy view of device arrays, through lists, tuples and dicts."""
    if isinstance(a, ndarray):
        return a.view(_np.ndarray)
    if isinstance(a, (list, tuple)):
        return type(a)(_host(x) for x in a)
    if isinstance(a, dict):
        return {k: _host(v) for k, v in a.items()}
    return a


def _on_device(result):
    """NumPy results as device arrays (scalars as 0-d arrays, as CuPy's reductions give)."""
    if isinstance(result, (list, tuple)):
        return type(result)(_on_device(x) for x in result)
    if isinstance(result, _np.ndarray):
        return result.view(ndarray)
    if isinstance(result, _np.generic):
        return _np.asarray(result).view(ndarray)
    return result


def asarray(a, dtype=None, order=None):
    """A device array: ``a`` itself when it is one of the dtype, else a copy (host data is copied in)."""
    if isinstance(a, ndarray):
        return a if dtype is None or _np.dtype(dtype) == a.dtype else a.astype(dtype)
    return _np.array(a, dtype=dtype, order=order or "K", copy=True).view(ndarray)


def array(a, dtype=None, copy=True, order="K"):
    """A new device array holding ``a``."""
    return _np.array(_host(a), dtype=dtype, copy=True, order=order).view(ndarray)


def asnumpy(a):
    """``a`` copied to the host."""
    return a.get() if isinstance(a, ndarray) else _np.asarray(a)


def _device_function(fn):
    def on_device(*args, **kwargs):
        _refuse_host(args, getattr(fn, "__name__", "a function"))
        _refuse_host(tuple(kwargs.values()), getattr(fn, "__name__", "a function"))
        return _on_device(fn(*_host(args), **_host(kwargs)))
    return on_device


def __getattr__(name: str):
    """Any other NumPy name: types, ufuncs and constants as they are, functions on device arrays."""
    attr = getattr(_np, name)
    if isinstance(attr, (type, _np.ufunc)) or not callable(attr):
        return attr
    return _device_function(attr)


def _as_strided(x, shape=None, strides=None):
    """A strided view of the device array ``x`` (a host array is refused, as CuPy does)."""
    if not isinstance(x, ndarray):
        raise TypeError(f"cupy stand-in: as_strided got {type(x).__name__}, not a device array")
    return _np.lib.stride_tricks.as_strided(_host(x), shape=shape, strides=strides).view(ndarray)


lib = _types.SimpleNamespace(stride_tricks=_types.SimpleNamespace(as_strided=_as_strided))
cuda = _types.SimpleNamespace(runtime=_types.SimpleNamespace(getDeviceCount=lambda: 1),
                              Device=lambda *args: _types.SimpleNamespace(synchronize=lambda: None))
