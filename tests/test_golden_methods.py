"""Golden files of the other CAM methods: the method recorded (schema version 2), every intermediate read back,
recomputed to the same bits; HiResCAM's and LayerCAM's elementwise weights shaped (K, B, C, *S)."""
from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

import refcam
import refcam.golden
from refcam.errors import FileFormatError, RefcamError
from refcam.golden import GoldenShapeError
from refcam.golden.record import ELEMENTWISE_WEIGHT_METHODS, GOLDEN_METHODS

NETWORK = os.path.join(os.path.dirname(__file__), "..", "fixtures", "residual2d.h5")
X = np.random.default_rng(3).uniform(0.0, 1.0, (32, 32, 3))
OWN_OPTIONS = {"gradcam++": {"eps": 1e-6}, "scorecam": {"batch_size": 8}, "ablationcam": {"batch_size": 8}}
STAGES = ("activations", "gradients", "weights", "scores", "raw_map", "map")


@pytest.fixture(scope="module")
def net() -> refcam.network.Network:
    return refcam.load(NETWORK)


@pytest.mark.parametrize("method", GOLDEN_METHODS)
def test_a_golden_records_its_method_and_recomputes_to_the_same_bits(net, method, tmp_path) -> None:
    path = tmp_path / f"{method}.golden.h5"
    refcam.golden.write(path, net, X, [1, 3], method=method, **OWN_OPTIONS.get(method, {}))
    with h5py.File(path, "r") as f:
        assert int(f.attrs["schema_version"]) == (1 if method == "gradcam" else 2)
        assert f.attrs.get("method", "gradcam") == method
    golden = refcam.golden.read(path)
    assert golden.method == method and golden.options.get("eps") == OWN_OPTIONS.get(method, {}).get("eps")
    expected = refcam.explain(net, X, [1, 3], method=method, **OWN_OPTIONS.get(method, {}))
    again = golden.recompute()
    for stage in STAGES:
        np.testing.assert_array_equal(getattr(golden, stage), np.asarray(getattr(expected, stage)), stage)
        np.testing.assert_array_equal(np.asarray(getattr(again, stage)), getattr(golden, stage), stage)
    wanted = golden.gradients.shape if method in ELEMENTWISE_WEIGHT_METHODS else golden.gradients.shape[:3]
    assert golden.weights.shape == wanted


@pytest.mark.parametrize("method, convention", [("gradcam++", "torchcam"), ("layercam", "pytorch-grad-cam"),
                                                ("eigencam", "pytorch-grad-cam")])
def test_a_golden_of_a_method_in_a_peer_convention(net, method, convention, tmp_path) -> None:
    path = tmp_path / f"{method}.golden.h5"
    refcam.golden.write(path, net, X, [1, 3], method=method, convention=convention)
    golden = refcam.golden.read(path)
    assert (golden.method, golden.convention) == (method, convention)
    expected = refcam.explain(net, X, [1, 3], method=method, convention=convention)
    for stage in STAGES:
        np.testing.assert_array_equal(getattr(golden, stage), np.asarray(getattr(expected, stage)), stage)
        np.testing.assert_array_equal(np.asarray(getattr(golden.recompute(), stage)), getattr(golden, stage), stage)
    assert refcam.compare(expected.map, path).passed
    assert 0.999 < golden.map.max() <= 1.0                                   # the library's min-max finishing


def test_a_golden_of_another_method_is_not_taken_for_grad_cam(net, tmp_path) -> None:
    """Renaming a HiResCAM golden's method to Grad-CAM breaks the weights' shape rule: refused before reading."""
    path = tmp_path / "hirescam.golden.h5"
    refcam.golden.write(path, net, X, 1, method="hirescam")
    with h5py.File(path, "r+") as f:
        f.attrs["method"] = "gradcam++"
    with pytest.raises(GoldenShapeError, match="/weights has shape"):
        refcam.golden.read(path)
    with h5py.File(path, "r+") as f:
        f.attrs["method"] = "gradcam+"
    with pytest.raises(FileFormatError, match="the attribute 'method' is 'gradcam\\+'"):
        refcam.golden.read(path)


@pytest.mark.parametrize("method", ["guided-backprop", "guided-gradcam", "nomethod"])
def test_maps_that_are_not_a_cams_are_refused(net, method, tmp_path) -> None:
    with pytest.raises(RefcamError, match="golden files record the CAM methods"):
        refcam.golden.write(tmp_path / "g.h5", net, X, 1, method=method)
    assert not (tmp_path / "g.h5").exists()
