"""refcam.cam.conventions: each peer recipe against the real library's committed output, and by hand.

The peer outputs in ``fixtures/peers/`` were made by ``fixtures/make_peer_fixtures.py``
with pytorch-grad-cam, Captum, torchcam, tf-keras-vis and the Keras example's
steps on the same weights; these tests need none of them. Tolerance:
``TOLERANCES["peer-float64"]`` (max |refcam - peer| <= 1e-12 max |peer|) where
the peer computed in float64, ``["peer-float32"]`` (1e-5) where it computed or
cast in float32 (pytorch-grad-cam resizes in float32; TensorFlow's MaxPool3D
has no float64 kernel).
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

import refcam
from refcam.cam.conventions import (CONVENTIONS, gradcam_as, linear_weights, logit_layer, min_max_keras,
                                    min_max_shifted, nearest_indices_torch, resize_linear, resize_nearest_torch)
from refcam.cam.gradcam import gradcam
from refcam.errors import GradCAMError
from refcam.testing import assert_cam_close
from tests.cam import nets
from tests.tolerances import F64

PEERS_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "peers")
NETWORKS = ("net2d", "net3d", "net1d")
VARIANTS = {  # variant in the fixture file -> options of gradcam_as
    "pytorch-grad-cam": {"default": {}},
    "captum": {"attribute": {"interpolate_mode": None},
               "attribute_relu": {"interpolate_mode": None, "relu_attributions": True},
               "nearest": {}, "linear": {"interpolate_mode": "linear"}},
    "torchcam": {"normalized": {}, "raw": {"normalized": False}},
    "tf-keras-vis": {"softmax": {}, "linear": {"replace_to_linear": True},
                     "linear_no_expand": {"replace_to_linear": True, "expand_cam": False}},
    "keras-example": {"default": {}},
}
UNSUPPORTED = {("net1d", "pytorch-grad-cam"), ("net1d", "keras-example"), ("net3d", "keras-example")}


def load_peer(network, peer):
    with np.load(os.path.join(PEERS_DIR, f"{network}__{peer}.npz")) as data:
        return {name: data[name] for name in data.files if name != "meta"}, json.loads(str(data["meta"]))


def load_input(network):
    with np.load(os.path.join(PEERS_DIR, f"{network}_input.npz")) as data:
        return data["x"], [int(label) for label in data["labels"]], json.loads(str(data["meta"]))


PEER_CASES = [(network, peer, variant) for network in NETWORKS for peer in VARIANTS for variant in VARIANTS[peer]
              if (network, peer) not in UNSUPPORTED]


@pytest.mark.parametrize("network, peer, variant", PEER_CASES)
def test_convention_matches_the_real_library(network, peer, variant):
    arrays, meta = load_peer(network, peer)
    x, labels, input_meta = load_input(network)
    net = refcam.load(os.path.join(PEERS_DIR, f"{network}.h5"))
    res = gradcam_as(peer, net, x, labels, feature_layer=input_meta["feature_layer"], format=input_meta["format"],
                     **VARIANTS[peer][variant])
    float32_peer = peer == "pytorch-grad-cam" or meta["dtype"] == "float32"
    assert_cam_close(res.info["peer_map"], arrays[variant], preset="peer-float32" if float32_peer else "peer-float64")


@pytest.mark.parametrize("network, peer", sorted(UNSUPPORTED))
def test_refcam_refuses_what_the_peer_refuses(network, peer):
    _, meta = load_peer(network, peer)
    assert "unsupported" in meta
    x, labels, input_meta = load_input(network)
    net = refcam.load(os.path.join(PEERS_DIR, f"{network}.h5"))
    with pytest.raises(GradCAMError, match="2-D"):
        gradcam_as(peer, net, x, labels, format=input_meta["format"])


def test_every_peer_file_is_committed():
    for network in NETWORKS:
        for peer in VARIANTS:
            arrays, meta = load_peer(network, peer)
            assert meta["peer"] == peer and meta["network"] == network and meta["versions"]
            if (network, peer) not in UNSUPPORTED:
                assert set(arrays) == set(VARIANTS[peer]), (network, peer)


# --- the recipes by hand ----------------------------------------------------------------------------
def linear_cam(res):
    """sum_C alpha A per label and observation, (K, B, *S), written out with einsum."""
    return np.einsum("kbc,bc...->kb...", res.weights, res.activations)


def test_matlab_convention_is_plain_gradcam(classifier, image):
    expected = gradcam(classifier, image, "cat", upsampling="nearest")
    res = gradcam_as("matlab", classifier, image, "cat", upsampling="nearest")
    assert np.array_equal(res.map, expected.map) and res.reduction_layer == "softmax"


def test_logit_layer():
    rng = np.random.default_rng(3)
    assert logit_layer(nets.classifier_2d(rng)) == "fc"
    assert logit_layer(nets.skip_head_2d(rng)) == "fc"
    assert logit_layer(nets.regression_2d(rng)) == "fc"  # no softmax: MATLAB's default reduction layer


def test_pytorch_grad_cam_recipe(classifier, image):
    res = gradcam_as("pytorch-grad-cam", classifier, image, "dog")
    logit = gradcam(classifier, image, "dog", reduction_layer="fc", upsampling="none")
    cam = np.maximum(linear_cam(logit), 0.0)[0, 0]
    shifted = cam - cam.min()
    normalised = shifted / (1e-7 + shifted.max())
    np.testing.assert_allclose(res.raw_map, normalised, **F64)
    rows, cols = linear_weights(4, 8)
    matrix = np.zeros((8, 4))
    np.add.at(matrix, (np.repeat(np.arange(8), 2), cols.ravel()), rows.ravel())
    resized = matrix @ normalised @ matrix.T
    shifted = resized - resized.min()
    np.testing.assert_allclose(res.map, shifted / (1e-7 + shifted.max()), **F64)
    assert res.reduction_layer == "fc" and res.upsampling == "cv2-linear"


def test_captum_recipe_has_no_relu_by_default(classifier, image):
    res = gradcam_as("captum", classifier, image, "fox", interpolate_mode=None)
    cam = linear_cam(gradcam(classifier, image, "fox", reduction_layer="fc", upsampling="none"))
    assert cam.min() < 0.0  # the test needs negative values to tell ReLU from no ReLU
    np.testing.assert_allclose(res.info["peer_map"], cam[0][:, None], **F64)
    relu = gradcam_as("captum", classifier, image, "fox", interpolate_mode=None, relu_attributions=True)
    np.testing.assert_allclose(relu.info["peer_map"], np.maximum(cam[0], 0.0)[:, None], **F64)


def test_torchcam_recipe(classifier, image):
    res = gradcam_as("torchcam", classifier, image, "cat")
    cam = np.maximum(linear_cam(gradcam(classifier, image, "cat", reduction_layer="fc", upsampling="none")), 0.0)
    shifted = cam[0, 0] - cam[0, 0].min()
    np.testing.assert_allclose(res.map, shifted / (shifted.max() + 1e-8), **F64)


def test_tf_keras_vis_averages_a_spatial_score_over_positions(rng):
    seg = nets.segmentation_2d(rng)
    x = rng.uniform(0.0, 1.0, (6, 6, 2))
    res = gradcam_as("tf-keras-vis", seg, x, "road", expand_cam=False, normalize_cam=False)
    matlab = gradcam(seg, x, "road", upsampling="none")  # sums Y[c] over the 36 positions
    np.testing.assert_allclose(res.weights, matlab.weights / 36.0, **F64)
    np.testing.assert_allclose(res.scores, matlab.scores / 36.0, **F64)


def test_keras_example_pools_the_batch_and_maps_the_first_observation(classifier, rng):
    batch = rng.uniform(0.0, 1.0, (8, 8, 3, 2))
    res = gradcam_as("keras-example", classifier, batch, "dog", format="SSCB")
    logit = gradcam(classifier, batch, "dog", format="SSCB", reduction_layer="fc", upsampling="none")
    pooled = logit.weights.mean(axis=1)                                               # (K, C)
    heat = np.einsum("c,chw->hw", pooled[0], logit.activations[0])
    np.testing.assert_allclose(res.info["peer_map"], np.maximum(heat, 0.0) / heat.max(), **F64)
    assert res.map.shape == (8 // 2, 8 // 2, 1)  # one observation, MATLAB layout with its batch axis


def test_normalisations_by_hand():
    maps = np.array([[[[1.0, 3.0], [2.0, 5.0]]]])  # (K, B, 2, 2)
    np.testing.assert_allclose(min_max_shifted(maps, 1e-7), (maps - 1.0) / (1e-7 + 4.0), **F64)
    np.testing.assert_allclose(min_max_shifted(maps, 1e-8, eps_first=False), (maps - 1.0) / (4.0 + 1e-8), **F64)
    np.testing.assert_allclose(min_max_keras(maps), (maps - 1.0) / (5.0 - 1.0 + 1e-7), **F64)


def test_linear_weights_by_hand():
    weights, indices = linear_weights(2, 5)  # s = (d + 0.5) * 0.4 - 0.5 = -0.3, 0.1, 0.5, 0.9, 1.3
    np.testing.assert_allclose(weights, [[1.0, 0.0], [0.9, 0.1], [0.5, 0.5], [0.1, 0.9], [1.0, 0.0]], **F64)
    assert indices.tolist() == [[0, 1], [0, 1], [0, 1], [0, 1], [1, 1]]
    weights, indices = linear_weights(4, 2)  # shrinking, no antialiasing: s = 0.5, 2.5
    np.testing.assert_allclose(weights, [[0.5, 0.5], [0.5, 0.5]], **F64)
    assert indices.tolist() == [[0, 1], [2, 3]]


def test_nearest_indices_reproduce_pytorch_float32_rounding():
    # 2 -> 82: d = 41 gives 41 * float32(2/82) = 0.99999994 in float32, exactly 1 in exact arithmetic
    assert nearest_indices_torch(2, 82, exact=False)[41] == 0
    assert nearest_indices_torch(2, 82, exact=True)[41] == 1
    assert nearest_indices_torch(3, 7, exact=True).tolist() == [0, 0, 0, 1, 1, 2, 2]


def test_unknown_convention_and_options_are_errors(classifier, image):
    with pytest.raises(GradCAMError, match="convention must be one of"):
        gradcam_as("gradcam++", classifier, image, "cat")
    with pytest.raises(GradCAMError, match="has no option"):
        gradcam_as("torchcam", classifier, image, "cat", upsampling="bicubic")
    with pytest.raises(GradCAMError, match="interpolate_mode"):
        gradcam_as("captum", classifier, image, "cat", interpolate_mode="area")
    assert CONVENTIONS[0] == "matlab"


# --- resizes against PyTorch itself (skipped without torch) ----------------------------------------------
QUIRK_SIZES = [(2, 82), (14, 46), (18, 66), (5, 11), (6, 13), (3, 3), (4, 8), (7, 2)]


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_resizes_equal_torch_interpolate(torch, rank, dtype, rng):
    functional = torch.nn.functional
    modes = {1: "linear", 2: "bilinear", 3: "trilinear"}
    for n, m in QUIRK_SIZES:
        for axis in range(rank):
            in_shape, out_shape = [2] * rank, [3] * rank
            in_shape[axis], out_shape[axis] = n, m
            maps = rng.standard_normal((1, 1, *in_shape)).astype(dtype)
            tensor = torch.tensor(maps)
            nearest = functional.interpolate(tensor, tuple(out_shape), mode="nearest").numpy()
            assert np.array_equal(resize_nearest_torch(maps, tuple(out_shape)), nearest), (n, m, axis)
            if dtype == "float64":
                linear = functional.interpolate(tensor, tuple(out_shape), mode=modes[rank],
                                                align_corners=False).numpy()
                np.testing.assert_allclose(resize_linear(maps, tuple(out_shape)), linear, **F64)
