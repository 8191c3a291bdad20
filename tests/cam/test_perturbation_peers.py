"""refcam's Score-CAM and Ablation-CAM against pytorch-grad-cam 1.5.7 and torchcam 0.5.0 (``fixtures/methods/``).

Made by ``fixtures/make_perturbation_fixtures.py`` on the Grad-CAM peer
fixture networks in float64, at relu_2 (half the input's resolution: the
masks are upsampled) and relu_1 (the input's resolution). No torch needed.
pytorch-grad-cam rounds its scores to float32 before the weights, so its
weights and maps are compared with ``TOLERANCES["peer-float32"]``; torchcam
stays in float64 (``["peer-float64"]``). Tolerances are relative to the peer's
largest magnitude.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

import refcam
from refcam.cam.gradient_methods import channel_sum
from refcam.testing import TOLERANCES
from tests.cam.test_method_peers import PEERS_DIR, load_case, pytorch_grad_cam_final, relative_difference

HERE = os.path.dirname(__file__)
METHODS_DIR = os.path.join(HERE, "..", "..", "fixtures", "methods")
LAYERS = ("relu_2", "relu_1")
RTOL64, RTOL32 = TOLERANCES["peer-float64"]["rtol"], TOLERANCES["peer-float32"]["rtol"]


def load(network, peer):
    """The peer's arrays and meta for ``network``, and the network's input, labels and format."""
    path = os.path.join(METHODS_DIR, f"{network}__{peer}-perturbation.npz")
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        arrays = {name: data[name] for name in data.files if name != "meta"}
    return (arrays, meta) + load_case(network)[2:]


def refcam_run(network, peer, layer, method):
    arrays, meta, x, labels, input_format = load(network, peer)
    net = refcam.load(os.path.join(PEERS_DIR, f"{network}.h5"))
    res = refcam.explain(net, x, labels, method=method, format=input_format, feature_layer=layer,
                         reduction_layer="fc", upsampling="none", batch_size=meta["batch_size"],
                         **meta["refcam_options"][method])
    return res, arrays


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
def test_matches_pytorch_grad_cam(method, layer):
    res, arrays = refcam_run("net2d", "pytorch-grad-cam", layer, method)
    assert relative_difference(res.activations, arrays[f"{layer}/activations"]) <= RTOL64
    peer_weights = arrays[f"{layer}/{method}/weights"]
    assert peer_weights.dtype == np.float32
    assert relative_difference(res.weights, peer_weights) <= RTOL32
    final = arrays[f"{layer}/{method}/final"]
    mine = channel_sum(res.weights, res.activations)
    assert relative_difference(pytorch_grad_cam_final(mine, final.shape[2:]), final) <= RTOL32


@pytest.mark.parametrize("network, layer", [("net2d", "relu_2"), ("net2d", "relu_1"), ("net3d", "relu_2"),
                                            ("net3d", "relu_1"), ("net1d", "relu_1")])
def test_scorecam_matches_torchcam_in_float64(network, layer):
    res, arrays = refcam_run(network, "torchcam", layer, "scorecam")
    assert relative_difference(res.weights, arrays[f"{layer}/scorecam/weights"]) <= RTOL64
    peer_map = arrays[f"{layer}/scorecam/map"]                                      # (K, B, *S)
    assert relative_difference(res.raw_map.reshape(peer_map.shape[2:] + peer_map.shape[:2]),
                               np.moveaxis(peer_map, (0, 1), (-2, -1))) <= RTOL64


def test_what_the_libraries_refuse():
    """pytorch-grad-cam's two methods are 2-D only; torchcam's 1-D upsampling passes align_corners to nearest."""
    for network in ("net1d", "net3d"):
        assert set(load(network, "pytorch-grad-cam")[1]["unsupported"]) == {
            f"{layer}/{method}" for layer in LAYERS for method in ("scorecam", "ablationcam")}
    refused = load("net1d", "torchcam")[1]["unsupported"]
    assert list(refused) == ["relu_2/scorecam"] and "align_corners" in refused["relu_2/scorecam"]


def test_the_paper_masks_differ_from_pytorch_grad_cams():
    """refcam's default masks (half-pixel linear, eps 0) against the library's corner-aligned ones: a real
    difference in the weights, recorded in docs/methods.md."""
    arrays, _, x, labels, input_format = load("net2d", "pytorch-grad-cam")
    net = refcam.load(os.path.join(PEERS_DIR, "net2d.h5"))
    res = refcam.scorecam(net, x, labels, format=input_format, feature_layer="relu_2", reduction_layer="fc",
                          upsampling="none")
    assert 1e-4 < relative_difference(res.weights, arrays["relu_2/scorecam/weights"]) < 0.1
