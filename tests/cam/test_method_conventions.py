"""``refcam.explain(..., method=..., convention=...)``: the CAM methods as the peer libraries compute them.

Against the committed outputs of the libraries (``fixtures/methods/``; no
torch needed): torchcam 0.5.0's GradCAMpp, XGradCAM and LayerCAM
(``make_torchcam_fixtures.py``) and ScoreCAM, pytorch-grad-cam 1.5.7's
methods (``make_method_fixtures.py``, ``make_perturbation_fixtures.py``),
Captum 0.9's guided methods (``make_guided_fixtures.py``). Tolerances: as in
``test_method_peers.py``, float64 where the library stays in float64 (torchcam,
Captum), float32 where it casts (pytorch-grad-cam's final maps).
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

import refcam
from refcam.errors import GradCAMError
from refcam.testing import TOLERANCES
from tests.cam.test_method_peers import METHODS_DIR, PEERS_DIR, load_case, pytorch_grad_cam_final, relative_difference

RTOL64, RTOL32 = TOLERANCES["peer-float64"]["rtol"], TOLERANCES["peer-float32"]["rtol"]
LAYERS = ("relu_2", "relu_1")
TORCHCAM_METHODS = ("gradcam++", "xgradcam", "layercam")


def case(network):
    *_, x, labels, input_format = load_case(network)
    return refcam.load(os.path.join(PEERS_DIR, f"{network}.h5")), x, labels, input_format


def fixture(network, peer):
    with np.load(os.path.join(METHODS_DIR, f"{network}__{peer}.npz")) as data:
        return {name: data[name] for name in data.files if name != "meta"}, json.loads(str(data["meta"]))


@pytest.mark.parametrize("network", ["net1d", "net2d", "net3d"])
@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("method", TORCHCAM_METHODS)
def test_torchcam_gradient_methods_in_float64(network, layer, method):
    net, x, labels, input_format = case(network)
    arrays, meta = fixture(network, "torchcam")
    assert meta["versions"]["torchcam"] == "0.5.0" and meta["labels"] == labels
    res = refcam.explain(net, x, labels, method=method, convention="torchcam", format=input_format,
                         feature_layer=layer)
    raw = refcam.explain(net, x, labels, method=method, convention="torchcam", format=input_format,
                         feature_layer=layer, normalized=False)
    assert relative_difference(res.gradients, arrays[f"{layer}/gradients"]) <= RTOL64
    assert relative_difference(res.weights, arrays[f"{layer}/{method}/weights"]) <= RTOL64
    assert relative_difference(raw.info["peer_map"], arrays[f"{layer}/{method}/raw"]) <= RTOL64
    assert relative_difference(res.info["peer_map"], arrays[f"{layer}/{method}/map"]) <= RTOL64
    assert res.info["convention"] == "torchcam" and res.upsampling == "none"


@pytest.mark.parametrize("layer", LAYERS)
def test_torchcam_gradcam_plus_plus_is_not_the_papers(layer):
    """torchcam 0.5.0 loses its division of alpha (it divides a copy): alpha = g^2, far from the paper's."""
    net, x, labels, input_format = case("net2d")
    arrays, _ = fixture("net2d", "torchcam")
    theirs = refcam.explain(net, x, labels, method="gradcam++", convention="torchcam", format="SSCB",
                            feature_layer=layer)
    np.testing.assert_array_equal(theirs.alphas, theirs.gradients ** 2)
    paper = refcam.gradcam_plus_plus(net, x, labels, format=input_format, feature_layer=layer,
                                     reduction_layer="fc", upsampling="none")
    assert relative_difference(paper.weights, arrays[f"{layer}/gradcam++/weights"]) > 10.0


@pytest.mark.parametrize("network", ["net2d", "net3d"])
@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("method", ["gradcam++", "hirescam", "xgradcam", "layercam"])
def test_pytorch_grad_cam_gradient_methods(network, layer, method):
    net, x, labels, input_format = case(network)
    arrays, _ = fixture(network, "pytorch-grad-cam")
    res = refcam.explain(net, x, labels, method=method, convention="pytorch-grad-cam", format=input_format,
                         feature_layer=layer)
    assert relative_difference(res.info["peer_map"], arrays[f"{layer}/{method}/final"]) <= RTOL32
    assert res.upsampling == ("cv2-linear" if network == "net2d" else "scipy-zoom-order-3")
    assert res.info["method_options"].get("eps") == {"gradcam++": 1e-6, "xgradcam": 1e-7}.get(method)


@pytest.mark.parametrize("network", ["net2d", "net3d"])
@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("method", ["eigencam", "eigengradcam"])
def test_pytorch_grad_cam_eigen_methods_up_to_lapacks_sign(network, layer, method):
    """Where refcam's sign and the library's agree the maps are equal; where they do not, the library's map is
    the finishing of -P."""
    net, x, labels, input_format = case(network)
    arrays, _ = fixture(network, "pytorch-grad-cam")
    res = refcam.explain(net, x, labels, method=method, convention="pytorch-grad-cam", format=input_format,
                         feature_layer=layer)
    peer_raw, peer_final = arrays[f"{layer}/{method}/raw"], arrays[f"{layer}/{method}/final"]
    agree = np.sign((res.projection * peer_raw).reshape(peer_raw.shape[:2] + (-1,)).sum(axis=-1)) > 0   # (K, B)
    if agree.any():
        assert relative_difference(res.info["peer_map"][agree], peer_final[agree]) <= RTOL32
    flipped = pytorch_grad_cam_final(-res.projection, peer_final.shape[2:])
    if (~agree).any():
        assert relative_difference(flipped[~agree], peer_final[~agree]) <= RTOL32


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
def test_pytorch_grad_cam_perturbation_methods(layer, method):
    net, x, labels, input_format = case("net2d")
    arrays, _ = fixture("net2d", "pytorch-grad-cam-perturbation")
    res = refcam.explain(net, x, labels, method=method, convention="pytorch-grad-cam", format=input_format,
                         feature_layer=layer, batch_size=4)
    assert relative_difference(res.weights, arrays[f"{layer}/{method}/weights"]) <= RTOL32
    assert relative_difference(res.info["peer_map"], arrays[f"{layer}/{method}/final"]) <= 10 * RTOL32


@pytest.mark.parametrize("network, layer", [("net2d", "relu_2"), ("net2d", "relu_1"), ("net3d", "relu_2"),
                                            ("net3d", "relu_1"), ("net1d", "relu_1")])
def test_torchcam_scorecam_in_float64(network, layer):
    net, x, labels, input_format = case(network)
    arrays, _ = fixture(network, "torchcam-perturbation")
    res = refcam.explain(net, x, labels, method="scorecam", convention="torchcam", format=input_format,
                         feature_layer=layer, normalized=False)
    assert relative_difference(res.weights, arrays[f"{layer}/scorecam/weights"]) <= RTOL64
    assert relative_difference(res.info["peer_map"], arrays[f"{layer}/scorecam/map"]) <= RTOL64


@pytest.mark.parametrize("network", ["net1d", "net2d", "net3d"])
def test_captum_guided_methods(network):
    net, x, labels, input_format = case(network)
    arrays, _ = fixture(network, "guided")
    backprop = refcam.explain(net, x, labels, method="guided-backprop", convention="captum", format=input_format)
    assert relative_difference(backprop.gradients, arrays["captum/guided-backprop"]) <= RTOL64
    combined = refcam.explain(net, x, labels, method="guided-gradcam", convention="captum", format=input_format,
                              feature_layer="relu_2")
    plain = refcam.guided_gradcam(net, x, labels, format=input_format, feature_layer="relu_2", reduction_layer="fc",
                                  upsampling="nearest-torch")
    np.testing.assert_array_equal(combined.map, plain.map)


def test_what_the_libraries_refuse_is_refused_with_the_reason():
    net1d, x1, labels1, format1 = case("net1d")
    with pytest.raises(GradCAMError, match="2 or 3 spatial axes"):
        refcam.explain(net1d, x1, labels1, method="layercam", convention="pytorch-grad-cam", format=format1)
    with pytest.raises(GradCAMError, match="shorter than the input"):
        refcam.explain(net1d, x1, labels1, method="scorecam", convention="torchcam", format=format1,
                       feature_layer="relu_2")
    net3d, x3, labels3, format3 = case("net3d")
    with pytest.raises(GradCAMError, match="2 spatial axes for method 'ablationcam'"):
        refcam.explain(net3d, x3, labels3, method="ablationcam", convention="pytorch-grad-cam", format=format3)


def test_unknown_pairs_and_options_say_where_to_go():
    net, x, labels, input_format = case("net2d")
    with pytest.raises(GradCAMError, match=r"no method 'hirescam': it exists in convention\(s\) \['pytorch-grad-cam'\]"):
        refcam.explain(net, x, labels, method="hirescam", convention="torchcam", format=input_format)
    with pytest.raises(GradCAMError, match=r"exists in convention\(s\) \['pytorch-grad-cam'\] and 'matlab'"):
        refcam.explain(net, x, labels, method="eigencam", convention="tf-keras-vis", format=input_format)
    with pytest.raises(GradCAMError, match="do not pass upsampling"):
        refcam.explain(net, x, labels, method="layercam", convention="torchcam", format=input_format,
                       upsampling="bilinear")
    with pytest.raises(GradCAMError, match="convention must be one of"):
        refcam.explain(net, x, labels, method="layercam", convention="pytorchgradcam", format=input_format)


def docs_section(title):
    text = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "methods.md"), encoding="utf-8").read()
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_docs_measure_every_method_and_list_every_convention():
    from refcam.cam.explain import METHODS
    from refcam.cam.method_conventions import METHOD_CONVENTIONS
    measured = docs_section("12. Measured against the peers")
    for name in ("gradcam", *METHODS):
        function = "refcam.gradcam" if name == "gradcam" else METHODS[name].__module__.split(".")[0] + "." + \
            METHODS[name].__name__
        assert f"| `{function}` |" in measured, name
    conventions = {line.split("|")[1].strip(): line.split("|")[2] for line in
                   docs_section("11. In a peer library's convention").splitlines() if line.startswith('| `"')}
    assert {name.split(" ")[0].strip('`"') for name in conventions} == set(METHOD_CONVENTIONS)
    for convention, row in conventions.items():
        listed = {word.strip("`(),; ") for word in row.split() if word.startswith("`")}
        assert listed == set(METHOD_CONVENTIONS[convention.split(" ")[0].strip('`"')]), convention
