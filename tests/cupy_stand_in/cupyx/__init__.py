"""``cupyx.scatter_add`` for the NumPy-backed CuPy stand-in (see ``tests/cupy_stand_in/cupy``)."""
import numpy as _np


def _host(a):
    return a.view(_np.ndarray) if isinstance(a, _np.ndarray) else a


def scatter_add(target, index, values) -> None:
    """``target[index] += values`` with repeated indices accumulated, in place (``numpy.add.at``)."""
    index = tuple(_host(i) for i in index) if isinstance(index, tuple) else _host(index)
    _np.add.at(_host(target), index, _host(values))
