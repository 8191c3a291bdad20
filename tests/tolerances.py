"""The one tolerance table of the test suite (re-exported from refcam.testing)."""
import numpy as np

from refcam.testing import TOLERANCES

F64 = TOLERANCES["float64"]
F32 = TOLERANCES["float32"]
CROSS = TOLERANCES["crosscheck"]
# refcam against the committed PyTorch/Captum goldens in fixtures/ (float64):
# max |refcam - golden| / max |golden| on outputs, A, dscore/dA, alpha and raw maps
GOLDEN_RELATIVE = TOLERANCES["golden-float64"]["rtol"]
# an imported network whose file holds float32 constants the PyTorch module has exactly (HardSigmoid's
# alpha = float32(1/6), the sqrt 2 and 0.044715 of GELU before opset 20), against that module in float64:
# each constant is off by at most half a float32 ulp, so the outputs by about that, relative
FLOAT32_CONSTANTS = float(np.finfo(np.float32).eps)
