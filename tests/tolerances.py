"""The one tolerance table of the test suite (re-exported from refcam.testing)."""
from refcam.testing import TOLERANCES

F64 = TOLERANCES["float64"]
F32 = TOLERANCES["float32"]
CROSS = TOLERANCES["crosscheck"]
# refcam against the committed PyTorch/Captum goldens in fixtures/ (float64):
# max |refcam - golden| / max |golden| on outputs, A, dscore/dA, alpha and raw maps
GOLDEN_RELATIVE = TOLERANCES["golden-float64"]["rtol"]
