"""refcam against the committed PyTorch/Captum goldens in fixtures/ (no torch needed).

``fixtures/make_fixtures.py`` wrote each network (``<net>.h5``) and, per input,
a golden file ``<net>__<input>.golden.h5`` holding the forward output and, per
case (feature layer, reduction layer, labels), A, dscore/dA, alpha, the scores
and the raw map computed by PyTorch autograd in float64, plus Captum's raw map.
Here refcam loads the network, runs ``gradcam`` with the same settings and must
agree with every golden to a relative error (max |refcam - golden| / max |golden|)
of at most ``GOLDEN_RELATIVE``. The layout is in fixtures/README.md.
"""
from __future__ import annotations

import functools
import glob
import json
import os

import h5py
import numpy as np
import pytest

import refcam.io
from refcam import gradcam
from tests.tolerances import GOLDEN_RELATIVE

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
NETWORKS = ("e1_squeezenet_mini", "e2_digits_regression", "e3_japanese_vowels", "volume3d", "residual2d")
INTERMEDIATES = ("activations", "gradients", "weights", "scores")

# The seed's displays of net.Layers for E2 (digitsRegressionNet) and E3 (JapaneseVowelsConvNet).
SEED_E2_LAYERS = """\
  18x1 Layer array with layers:

     1   'imageinput'         Image Input           28x28x1 images with 'zerocenter' normalization
     2   'conv_1'             2-D Convolution       8 3x3x1 convolutions with stride [1  1] and padding 'same'
     3   'batchnorm_1'        Batch Normalization   Batch normalization with 8 channels
     4   'relu_1'             ReLU                  ReLU
     5   'avgpool2d_1'        2-D Average Pooling   2x2 average pooling with stride [2  2] and padding [0  0  0  0]
     6   'conv_2'             2-D Convolution       16 3x3x8 convolutions with stride [1  1] and padding 'same'
     7   'batchnorm_2'        Batch Normalization   Batch normalization with 16 channels
     8   'relu_2'             ReLU                  ReLU
     9   'avgpool2d_2'        2-D Average Pooling   2x2 average pooling with stride [2  2] and padding [0  0  0  0]
    10   'conv_3'             2-D Convolution       32 3x3x16 convolutions with stride [1  1] and padding 'same'
    11   'batchnorm_3'        Batch Normalization   Batch normalization with 32 channels
    12   'relu_3'             ReLU                  ReLU
    13   'conv_4'             2-D Convolution       32 3x3x32 convolutions with stride [1  1] and padding 'same'
    14   'batchnorm_4'        Batch Normalization   Batch normalization with 32 channels
    15   'relu_4'             ReLU                  ReLU
    16   'dropout'            Dropout               20% dropout
    17   'fc'                 Fully Connected       1 fully connected layer
    18   'regressionoutput'   Regression Output     mean-squared-error with response 'Response'"""
SEED_E3_LAYERS = """\
  11x1 Layer array with layers:

     1   'sequenceinput'     Sequence Input               Sequence input with 12 dimensions
     2   'conv1d_1'          1-D Convolution              32 3x12 convolutions with stride 1 and padding 'causal'
     3   'relu_1'            ReLU                         ReLU
     4   'layernorm_1'       Layer Normalization          Layer normalization with 32 channels
     5   'conv1d_2'          1-D Convolution              64 3x32 convolutions with stride 1 and padding 'causal'
     6   'relu_2'            ReLU                         ReLU
     7   'layernorm_2'       Layer Normalization          Layer normalization with 64 channels
     8   'globalavgpool1d'   1-D Global Average Pooling   1-D global average pooling
     9   'fc'                Fully Connected              9 fully connected layer
    10   'softmax'           Softmax                      softmax
    11   'classoutput'       Classification Output        crossentropyex with '1' and 8 other classes"""


def relative_error(candidate: np.ndarray, golden: np.ndarray) -> float:
    """``max |candidate - golden| / max |golden|``; the absolute error when the golden is all zero."""
    assert np.shape(candidate) == np.shape(golden), f"shape {np.shape(candidate)} != golden {np.shape(golden)}"
    scale = float(np.abs(golden).max())
    error = float(np.abs(np.asarray(candidate) - golden).max())
    return error / scale if scale > 0.0 else error


@functools.lru_cache(maxsize=None)
def network(stem: str):
    return refcam.io.load(os.path.join(FIXTURES, f"{stem}.h5"))


def golden_files(stem: str) -> list[str]:
    return sorted(glob.glob(os.path.join(FIXTURES, f"{stem}__*.golden.h5")))


def read_golden(path: str) -> dict:
    """The golden file as plain Python: input, output, and one dict per case."""
    with h5py.File(path, "r") as f:
        golden = {"network": f.attrs["network"], "provenance": json.loads(f.attrs["provenance"]),
                  "input": f["input"][()], "format": f["input"].attrs["format"], "output": f["output"][()],
                  "cases": {}}
        for name, g in f["cases"].items():
            case = {key: g[key][()] for key in g}
            case.update({key: g.attrs[key] for key in g.attrs})
            golden["cases"][name] = case
    return golden


def golden_cases() -> list[tuple[str, str]]:
    return [(path, case) for stem in NETWORKS for path in golden_files(stem)
            for case in read_golden(path)["cases"]]


def run_case(net, golden: dict, case: dict):
    """refcam's gradcam with the case's settings (labels, or the identity reduction of a regression)."""
    score = {"label": [int(k) for k in case["labels"]]} if case["score"] == "class" else {"reduction": lambda y: y}
    return gradcam(net, golden["input"], feature_layer=str(case["feature_layer"]),
                   reduction_layer=str(case["reduction_layer"]), format=str(golden["format"]), **score)


def raw_map_internal(raw_map: np.ndarray, fmt: str, stacked: bool) -> np.ndarray:
    """refcam's raw map, MATLAB layout ((*S) or (*S, K); sequences (1, T[, K])) -> golden (K, 1, *S)."""
    maps = raw_map if stacked else raw_map[..., None]
    if fmt == "CT":
        maps = maps[0]                           # (T, K)
    return np.moveaxis(maps, -1, 0)[:, None]     # (K, 1, *S)


@pytest.mark.parametrize("stem", NETWORKS)
def test_every_network_has_goldens_with_provenance(stem):
    paths = golden_files(stem)
    assert paths, f"no golden files for {stem} in {FIXTURES}; run fixtures/make_fixtures.py"
    with h5py.File(os.path.join(FIXTURES, f"{stem}.h5"), "r") as f:
        record = json.loads(f.attrs["provenance"])
    for key in ("command", "seed", "versions", "trained"):
        assert key in record, f"{stem}.h5 provenance lacks {key!r}"
    for path in paths:
        assert read_golden(path)["network"] == f"{stem}.h5"


@pytest.mark.parametrize("path,case_name", golden_cases(),
                         ids=lambda v: os.path.basename(v).replace(".golden.h5", ""))
def test_refcam_matches_torch_golden(path, case_name):
    golden = read_golden(path)
    case = golden["cases"][case_name]
    net = network(str(golden["network"])[:-len(".h5")])
    res = run_case(net, golden, case)
    candidate = {key: getattr(res, key) for key in INTERMEDIATES}
    candidate["raw_map"] = raw_map_internal(res.raw_map, str(golden["format"]), case["score"] == "class")
    output = net.predict(golden["input"], format=str(golden["format"]))   # (B, K): MATLAB's N x K
    assert output.shape == golden["output"].shape
    candidate["output"] = output
    errors = {key: relative_error(candidate[key], case[key]) for key in INTERMEDIATES + ("raw_map",)}
    errors["output"] = relative_error(candidate["output"], golden["output"])
    errors["raw_map vs captum"] = relative_error(candidate["raw_map"], case["captum_raw_map"])
    assert res.feature_layer == case["feature_layer"] and res.reduction_layer == case["reduction_layer"]
    worst = max(errors.values())
    assert worst <= GOLDEN_RELATIVE, f"relative errors {errors} exceed {GOLDEN_RELATIVE:.0e}"


def test_relative_error_sees_a_wrong_map():
    golden = read_golden(golden_files("e3_japanese_vowels")[0])
    case = golden["cases"]["layernorm_2__fc"]
    wrong = case["raw_map"].copy()
    wrong.flat[int(np.argmax(wrong))] *= 1.0 + 1e-8
    assert relative_error(wrong, case["raw_map"]) > GOLDEN_RELATIVE


def test_e2_is_the_seed_network_with_relu_4_and_fc():
    net = network("e2_digits_regression")
    assert str(net) == SEED_E2_LAYERS
    golden = read_golden(golden_files("e2_digits_regression")[0])
    case = golden["cases"]["relu_4__fc"]
    assert (case["feature_layer"], case["reduction_layer"], case["score"]) == ("relu_4", "fc", "identity")
    score_map, feature_layer, reduction_layer = gradcam(net, golden["input"], reduction=lambda y: y,
                                                        feature_layer="relu_4", reduction_layer="fc")
    assert (feature_layer, reduction_layer) == ("relu_4", "fc")
    assert score_map.shape == (28, 28)


def test_e3_is_the_seed_network_and_maps_19_steps():
    net = network("e3_japanese_vowels")
    assert str(net) == SEED_E3_LAYERS
    golden = read_golden(os.path.join(FIXTURES, "e3_japanese_vowels__test0.golden.h5"))
    assert golden["input"].shape == (12, 19)
    res = gradcam(net, golden["input"], "1")
    assert (res.feature_layer, res.reduction_layer) == ("layernorm_2", "softmax")
    assert res.map.shape == (1, 19) and res.raw_map.shape == (1, 19)
    expected = golden["cases"]["layernorm_2__softmax"]["raw_map"][0]   # label "1" is listed first: (1, 19)
    assert relative_error(res.raw_map, expected) <= GOLDEN_RELATIVE
