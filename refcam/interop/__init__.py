"""Models from other frameworks as refcam Networks.

:func:`refcam.from_torch` (:mod:`refcam.interop.torch`) converts a PyTorch
module through a float64 TorchScript ONNX export. Importing this package
imports neither torch nor onnx; ``from_torch`` imports them when called.
"""
from .torch import from_torch

__all__ = ["from_torch"]
