"""refcam: the reference implementation of MATLAB's gradCAM, in Python.

>>> import refcam                                        # doctest: +SKIP
>>> net = refcam.load("net.h5")                          # doctest: +SKIP
>>> score_map, feature_layer, reduction_layer = refcam.gradcam(net, image, "cat")  # doctest: +SKIP
"""
from . import golden
from .autodiff import Tensor
from .cam.gradcam import GradCAMResult, gradcam
from .cam.resize import imresize, imresize3, rescale
from .compare import compare
from .errors import RefcamError
from .io import load, save
from .network import Network

__version__ = "0.1.0"

__all__ = ["GradCAMResult", "Network", "RefcamError", "Tensor", "__version__", "compare", "golden", "gradcam",
           "imresize", "imresize3", "load", "rescale", "save"]
