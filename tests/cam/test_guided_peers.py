"""Guided backpropagation and Guided Grad-CAM against Captum 0.9 and pytorch-grad-cam 1.5.7 (``fixtures/methods/``).

Made by ``fixtures/make_guided_fixtures.py`` on the Grad-CAM peer fixture
networks in float64; no torch needed. Tolerances: ``TOLERANCES["peer-float64"]``
where the library computes in float64 (Captum throughout, pytorch-grad-cam's
guided gradient), ``["peer-float32"]`` where it goes through float32
(pytorch-grad-cam's Grad-CAM map).
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

import refcam
from refcam.cam.guided import input_layout
from refcam.layout import Layout
from refcam.testing import TOLERANCES
from tests.cam import test_method_peers as method_peers
from tests.cam.test_method_peers import METHODS_DIR, PEERS_DIR, relative_difference

NETWORKS = ("net1d", "net2d", "net3d")
LAYERS = ("relu_2", "relu_1")
RTOL64, RTOL32 = TOLERANCES["peer-float64"]["rtol"], TOLERANCES["peer-float32"]["rtol"]


def load_case(network):
    """The guided fixture's arrays and meta, the network, and the input, labels and format of the peer fixture."""
    *_, x, labels, input_format = method_peers.load_case(network)
    with np.load(os.path.join(METHODS_DIR, f"{network}__guided.npz")) as data:
        arrays = {name: data[name] for name in data.files if name != "meta"}
        meta = json.loads(str(data["meta"]))
    return arrays, meta, refcam.load(os.path.join(PEERS_DIR, f"{network}.h5")), x, labels, input_format


@pytest.mark.parametrize("network", NETWORKS)
def test_guided_backprop_matches_captum(network):
    arrays, _, net, x, labels, input_format = load_case(network)
    res = refcam.guided_backprop(net, x, labels, format=input_format, reduction_layer="fc")
    assert relative_difference(res.gradients, arrays["captum/guided-backprop"]) <= RTOL64


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("layer", LAYERS)
def test_guided_gradcam_matches_captum_with_its_nearest_resize(network, layer):
    arrays, _, net, x, labels, input_format = load_case(network)
    res = refcam.guided_gradcam(net, x, labels, format=input_format, feature_layer=layer, reduction_layer="fc",
                                upsampling="nearest-torch")
    peer = input_layout(Layout(input_format, x.shape), arrays[f"captum/{layer}/guided-gradcam"], stacked=True)
    assert relative_difference(res.map, peer) <= RTOL64


def test_guided_backprop_matches_pytorch_grad_cam_on_its_one_observation():
    arrays, _, net, x, labels, input_format = load_case("net2d")
    res = refcam.guided_backprop(net, x, labels, format=input_format, reduction_layer="fc")   # (H, W, C, K, B)
    first = res.map[..., 0].transpose(3, 0, 1, 2)                                              # (K, H, W, C)
    assert relative_difference(first, arrays["pytorch-grad-cam/guided-backprop"]) <= RTOL64


@pytest.mark.parametrize("layer", LAYERS)
def test_guided_gradcam_matches_pytorch_grad_cam_example_recipe(layer):
    """Its cam.py: the normalised, cv2-resized Grad-CAM map (refcam's "pytorch-grad-cam" convention) times the guided
    gradient."""
    arrays, _, net, x, labels, input_format = load_case("net2d")
    guided = refcam.guided_backprop(net, x, labels, format=input_format, reduction_layer="fc").map[..., 0]
    cam = refcam.gradcam(net, x, labels, format=input_format, feature_layer=layer,
                         convention="pytorch-grad-cam").map[..., 0]                                # (H, W, K)
    mine = (cam[:, :, None] * guided).transpose(3, 0, 1, 2)                                    # (K, H, W, C)
    assert relative_difference(mine, arrays[f"pytorch-grad-cam/{layer}/guided-gradcam"]) <= RTOL32


@pytest.mark.parametrize("network", ["net1d", "net3d"])
def test_pytorch_grad_cam_refuses_sequences_and_volumes_and_refcam_does_not(network):
    arrays, meta, net, x, labels, input_format = load_case(network)
    assert "pytorch-grad-cam" in meta["unsupported"] and "pytorch-grad-cam/guided-backprop" not in arrays
    assert refcam.guided_backprop(net, x, labels, format=input_format).map.ndim == x.ndim + 1
