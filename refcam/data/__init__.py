"""The demo shipped inside refcam: the E2 network of MATLAB's gradCAM page and real held-out test digits.

* :func:`demo_network` -- digitsRegressionNet (E2 of MATLAB's gradCAM page, its ``18x1 Layer
  array`` layer for layer) trained to predict the rotation angle of real MNIST
  digits; test RMSE 9.9 degrees on 1000 held-out digits. A copy of
  ``fixtures/e2_digits_regression.h5`` (provenance: ``fixtures/README.md``).
* :func:`demo_digits` -- eleven digits of that held-out set with their true
  rotation angles: held-out digit #501 (1-based, the index MATLAB's E2 example uses)
  first, then the first held-out digit of each class 0..9.

Both files are package data (``refcam/data/``), read with
:mod:`importlib.resources`, so the demo runs with nothing downloaded.
``refcam/data/make_demo_data.py`` rebuilds them from a clone of the repository.
MATLAB's E2 example computes its map with ``FeatureLayer`` ``relu_4``, ``ReductionLayer``
``fc`` and the identity reduction (:data:`FEATURE_LAYER`, :data:`REDUCTION_LAYER`).
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np

from ..io import load
from ..network import Network

NETWORK_FILE = "digits_regression.h5"
DIGITS_FILE = "digits_test.npz"
FEATURE_LAYER = "relu_4"
REDUCTION_LAYER = "fc"


@dataclass(frozen=True)
class Digits:
    """Held-out test digits of the demo network.

    ``images`` ``(N, 28, 28, 1)`` float64 in [0, 1] (MATLAB's h x w x c per
    digit), ``angles`` ``(N,)`` the true rotation in degrees (counter-clockwise),
    ``digits`` ``(N,)`` the digit shown, ``heldout_index`` ``(N,)`` the 0-based
    position in the network's held-out set.
    """

    images: np.ndarray
    angles: np.ndarray
    digits: np.ndarray
    heldout_index: np.ndarray

    def __len__(self) -> int:
        return len(self.angles)


def demo_network() -> Network:
    """The trained E2 digits-regression network shipped with refcam.

    >>> net = refcam.data.demo_network()       # doctest: +SKIP
    >>> net.layers[-1].name                      # doctest: +SKIP
    'regressionoutput'
    """
    with resources.as_file(resources.files(__package__).joinpath(NETWORK_FILE)) as path:
        return load(path)


def demo_digits() -> Digits:
    """The shipped held-out test digits (digit #501 of the held-out set first).

    >>> digits = refcam.data.demo_digits()     # doctest: +SKIP
    >>> digits.images[0].shape, digits.angles[0]  # doctest: +SKIP
    ((28, 28, 1), -19.886...)
    """
    with resources.files(__package__).joinpath(DIGITS_FILE).open("rb") as f, \
            np.load(f, allow_pickle=False) as arrays:
        return Digits(images=arrays["images"][..., None], angles=arrays["angles"],
                      digits=arrays["digits"], heldout_index=arrays["heldout_index"])
