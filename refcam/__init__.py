"""refcam: the reference implementation of MATLAB's gradCAM, in Python.

Public entry points are added here as they land.
"""
from .autodiff import Tensor
from .errors import RefcamError

__version__ = "0.1.0"

__all__ = ["RefcamError", "Tensor", "__version__"]
