"""The one tolerance table of the test suite (re-exported from refcam.testing)."""
from refcam.testing import TOLERANCES

F64 = TOLERANCES["float64"]
F32 = TOLERANCES["float32"]
CROSS = TOLERANCES["crosscheck"]
