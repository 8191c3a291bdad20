"""refcam: the reference implementation of MATLAB's gradCAM, in Python.

>>> import refcam                                        # doctest: +SKIP
>>> net = refcam.load("net.h5")                          # doctest: +SKIP
>>> score_map, feature_layer, reduction_layer = refcam.gradcam(net, image, "cat")  # doctest: +SKIP
>>> net = refcam.from_torch(model.eval(), torch.zeros(1, 3, 224, 224))             # doctest: +SKIP
"""
from . import dataset, golden
from .autodiff import Tensor
from .cam.eigen_methods import eigencam, eigengradcam
from .cam.explain import explain
from .cam.gradcam import GradCAMResult, gradcam
from .cam.gradient_methods import gradcam_plus_plus, hirescam, layercam, xgradcam
from .cam.guided import guided_backprop, guided_gradcam
from .cam.perturbation_methods import ablationcam, scorecam
from .cam.resize import imresize, imresize3, rescale
from .compare import compare
from .errors import RefcamError
from .interop import from_torch
from .interop.to_torch import to_torch
from .io import load, save
from .io.onnx_export import to_onnx
from .network import Network
from .preprocess import Preprocessing, map_to_original, preprocess

__version__ = "0.1.0"

__all__ = ["GradCAMResult", "Network", "RefcamError", "Tensor", "__version__", "ablationcam", "compare", "dataset", "eigencam",
           "eigengradcam", "explain", "from_torch", "golden", "gradcam", "gradcam_plus_plus", "guided_backprop",
           "guided_gradcam", "hirescam", "imresize",
           "imresize3", "layercam", "load", "map_to_original", "preprocess", "Preprocessing", "rescale", "save",
           "scorecam", "to_onnx", "to_torch", "xgradcam"]
