"""``cupyx.scipy.special`` for the NumPy-backed CuPy stand-in: SciPy's ufuncs.

A SciPy ufunc called on a stand-in device array goes through that array's
``__array_ufunc__``, so it returns a device array and refuses host arrays
mixed in, as CuPy's own kernels do.
"""
from scipy.special import erf, erfc  # noqa: F401  (re-exported)
