"""refcam's CAM methods against pytorch-grad-cam 1.5.7's committed output (``fixtures/methods/``).

Made by ``fixtures/make_method_fixtures.py`` on the Grad-CAM peer fixture
networks (``fixtures/peers/``) in float64, at two feature layers: relu_2
(above global average pooling: dy/dA is constant over positions) and relu_1
(below a max pooling and a convolution). No torch needed. Tolerances:
``TOLERANCES["peer-float64"]`` (max |refcam - peer| <= 1e-12 max |peer|) for
what the library computes in float64 (its activations, gradients, and the
maps of the gradient methods), ``["peer-float32"]`` (1e-5) for what it casts
to float32 (the Eigen projections, every final map).
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

import refcam
from refcam.cam.conventions import PYTORCH_GRAD_CAM_EPS, min_max_shifted, resize_linear, zoom_maps
from refcam.cam.gradient_methods import channel_sum
from refcam.testing import TOLERANCES

HERE = os.path.dirname(__file__)
METHODS_DIR = os.path.join(HERE, "..", "..", "fixtures", "methods")
PEERS_DIR = os.path.join(HERE, "..", "..", "fixtures", "peers")
GRADIENT_METHODS = ("gradcam++", "hirescam", "xgradcam", "layercam")
EIGEN_METHODS = ("eigencam", "eigengradcam")
CASES = [(network, layer, method) for network in ("net2d", "net3d") for layer in ("relu_2", "relu_1")
         for method in GRADIENT_METHODS + EIGEN_METHODS]


def load_case(network):
    with np.load(os.path.join(METHODS_DIR, f"{network}__pytorch-grad-cam.npz")) as data:
        arrays = {name: data[name] for name in data.files if name != "meta"}
        meta = json.loads(str(data["meta"]))
    with np.load(os.path.join(PEERS_DIR, f"{network}_input.npz")) as data:
        x, labels, input_format = data["x"], [int(c) for c in data["labels"]], json.loads(str(data["meta"]))["format"]
    return arrays, meta, x, labels, input_format


def refcam_run(network, layer, method):
    arrays, meta, x, labels, input_format = load_case(network)
    net = refcam.load(os.path.join(PEERS_DIR, f"{network}.h5"))
    res = refcam.explain(net, x, labels, method=method, format=input_format, feature_layer=layer,
                         reduction_layer="fc", upsampling="none", **meta["methods"][method]["refcam_options"])
    return res, arrays


def relative_difference(mine, peer):
    return float(np.abs(mine - peer).max() / np.abs(peer).max())


def pytorch_grad_cam_final(cam, size):
    """The library's BaseCAM after get_cam_image: ReLU, min-max, resize (cv2 linear / zoom order 3), ReLU, min-max.

    The second ReLU (``aggregate_multi_layers``) clips the cubic zoom's undershoot below 0 in 3-D.
    """
    normalised = min_max_shifted(np.maximum(cam, 0.0), PYTORCH_GRAD_CAM_EPS)
    resized = resize_linear(normalised, size) if len(size) == 2 else zoom_maps(normalised, size, order=3)
    return min_max_shifted(np.maximum(resized, 0.0), PYTORCH_GRAD_CAM_EPS)


def peer_cam(res, method, arrays, layer):
    """refcam's map in the library's sign: its linear map, or its projection with the sign the peer's LAPACK chose."""
    peer = arrays[f"{layer}/{method}/raw"]
    if method in GRADIENT_METHODS:
        return channel_sum(res.weights, res.activations), peer
    agreement = np.sign((res.projection * peer).reshape(peer.shape[:2] + (-1,)).sum(axis=-1))   # (K, B)
    return res.projection * agreement.reshape(agreement.shape + (1,) * (peer.ndim - 2)), peer


@pytest.mark.parametrize("network, layer, method", CASES)
def test_method_matches_pytorch_grad_cam(network, layer, method):
    res, arrays = refcam_run(network, layer, method)
    rtol64, rtol32 = TOLERANCES["peer-float64"]["rtol"], TOLERANCES["peer-float32"]["rtol"]
    assert relative_difference(res.activations, arrays[f"{layer}/activations"]) <= rtol64
    if method != "eigencam":
        assert relative_difference(res.gradients, arrays[f"{layer}/gradients"]) <= rtol64
    mine, peer = peer_cam(res, method, arrays, layer)
    assert relative_difference(mine, peer) <= (rtol64 if method in GRADIENT_METHODS else rtol32)
    final = arrays[f"{layer}/{method}/final"]
    assert relative_difference(pytorch_grad_cam_final(mine, final.shape[2:]), final) <= rtol32


def test_gap_head_makes_gradcam_hirescam_and_xgradcam_one_map():
    """pytorch-grad-cam and torch-cam users' "no difference between GradCAM and XGradCAM": above global
    average pooling the gradient is constant over positions, and the three maps are equal."""
    res, arrays = refcam_run("net2d", "relu_2", "hirescam")
    gradcam = refcam.explain(refcam.load(os.path.join(PEERS_DIR, "net2d.h5")), *load_case("net2d")[2:4],
                             format="SSCB", feature_layer="relu_2", reduction_layer="fc", upsampling="none")
    np.testing.assert_allclose(res.raw_map, gradcam.raw_map, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(arrays["relu_2/xgradcam/raw"], arrays["relu_2/hirescam/raw"], rtol=1e-6,
                               atol=1e-6 * np.abs(arrays["relu_2/hirescam/raw"]).max())
    assert not np.allclose(arrays["relu_1/xgradcam/raw"], arrays["relu_1/hirescam/raw"], rtol=1e-3)


def test_the_library_refuses_sequences_and_refcam_does_not():
    arrays, meta, x, labels, input_format = load_case("net1d")
    assert set(meta["unsupported"]) == set(GRADIENT_METHODS + EIGEN_METHODS) and not arrays
    assert "Only 2D or 3D" in meta["unsupported"]["hirescam"]
    net = refcam.load(os.path.join(PEERS_DIR, "net1d.h5"))
    for method in GRADIENT_METHODS + EIGEN_METHODS:
        assert refcam.explain(net, x, labels, method=method, format=input_format).map.shape == (1, 9, 2, 2)
