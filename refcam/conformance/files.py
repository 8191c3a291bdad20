"""The file protocol, for implementations outside Python: outputs written beside the suite's inputs, then scored.

After ``refcam conformance build DIR`` (or ``export``), an implementation reads
each case from ``manifest.json`` and ``<case>.input.npy`` (and ``<case>.mask.npy``,
the network ``<network>.h5``, or ``<network>.onnx`` where the suite has one)
and writes ``<case>.output.npy``: the map, in MATLAB's layout (the golden's
``/map``), or ``<case>.output.npz`` with arrays named after the stages
(``map`` and any of ``activations``, ``scores``, ``gradients``, ``weights``,
``raw_map``). ``refcam conformance check DIR`` scores them; a case without an
output file fails as "not written".
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import RefcamError
from .build import file_stem
from .runner import Case

STAGE_NAMES = ("activations", "scores", "gradients", "weights", "raw_map", "map")


def read_outputs(case: Case) -> Any:
    """The adapter of the file protocol: ``<case>.output.npz`` (stages) or ``<case>.output.npy`` (the map)."""
    folder, stem = os.path.dirname(case.golden_file), file_stem(case.id)
    stages, single = os.path.join(folder, f"{stem}.output.npz"), os.path.join(folder, f"{stem}.output.npy")
    if os.path.isfile(stages):
        with np.load(stages, allow_pickle=False) as data:
            unknown = sorted(set(data.files) - set(STAGE_NAMES))
            if unknown:
                raise RefcamError(f"{stages}: arrays {unknown} are not stages; name them {', '.join(STAGE_NAMES)}.")
            return {name: data[name] for name in data.files}
    if os.path.isfile(single):
        return np.load(single, allow_pickle=False)
    raise RefcamError(f"not written: neither {stem}.output.npy nor {stem}.output.npz is in {folder}.")
