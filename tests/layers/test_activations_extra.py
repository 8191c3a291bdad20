"""The swish, GELU, hard sigmoid, hard swish and erf layers: forward, describe, validation, HDF5 round trip.

Oracles: NumPy/``math`` formulas written here (the ops themselves are checked
against torch and finite differences in tests/ops/test_activation.py).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import refcam
import refcam.io
from refcam import layers as L
from refcam.autodiff import Tensor, grad
from refcam.errors import LayerConfigError
from refcam.network import Network
from tests.tolerances import F32, F64

erf_loops = np.vectorize(math.erf)

# class, properties, NumPy formula, describe()
CASES = [
    (L.SwishLayer, {}, lambda x: x / (1.0 + np.exp(-x)), "swish"),
    (L.GELULayer, {}, lambda x: 0.5 * x * (1.0 + erf_loops(x / math.sqrt(2.0))), "GELU"),
    (L.GELULayer, {"approximation": "tanh"},
     lambda x: 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3))),
     "GELU with tanh approximation"),
    (L.HardSigmoidLayer, {}, lambda x: np.clip(0.2 * x + 0.5, 0.0, 1.0), "Hard sigmoid with alpha 0.2 and beta 0.5"),
    (L.HardSigmoidLayer, {"alpha": 1.0 / 6.0, "beta": 0.5}, lambda x: np.clip(x / 6.0 + 0.5, 0.0, 1.0),
     "Hard sigmoid with alpha 0.16667 and beta 0.5"),
    (L.HardSwishLayer, {}, lambda x: x * np.clip(x / 6.0 + 0.5, 0.0, 1.0),
     "Hard swish with alpha 0.16667 and beta 0.5"),
    (L.HardSwishLayer, {"alpha": -0.25, "beta": 1.0}, lambda x: x * np.clip(1.0 - 0.25 * x, 0.0, 1.0),
     "Hard swish with alpha -0.25 and beta 1"),
    (L.ErfLayer, {}, erf_loops, "Error function"),
]
IDS = [f"{cls.kind}-{i}" for i, (cls, _, _, _) in enumerate(CASES)]


@pytest.mark.parametrize("cls, props, formula, text", CASES, ids=IDS)
@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 5), (1, 2, 4, 3), (2, 1, 2, 3, 2)])
def test_forward_matches_formula_and_keeps_the_shape(cls, props, formula, text, shape, rng):
    layer = cls("act", ("in",), **props)
    x = rng.standard_normal(shape) * 4.0
    np.testing.assert_allclose(layer.forward(Tensor(x)).data, formula(x), **F64)
    assert layer.output_shape(shape[1:]) == shape[1:]
    assert layer.output_shape((3, None)) == (3, None)


@pytest.mark.parametrize("cls, props, formula, text", CASES, ids=IDS)
def test_float32_in_float32_out(cls, props, formula, text, rng):
    layer = cls("act", ("in",), **props)
    x = rng.standard_normal((2, 3, 4)) * 4.0
    x32 = Tensor(x.astype(np.float32), requires_grad=True)
    y32 = layer.forward(x32)
    [grad32] = grad(y32, [x32], np.ones(y32.shape, dtype=np.float32))
    assert y32.dtype == np.float32 and grad32.dtype == np.float32
    np.testing.assert_allclose(y32.data, formula(x), **F32)


@pytest.mark.parametrize("cls, props, formula, text", CASES, ids=IDS)
def test_describe_and_json_properties_rebuild_the_layer(cls, props, formula, text):
    layer = cls("act", ("in",), **props)
    assert layer.describe() == text
    rebuilt = cls("act", ("in",), **json.loads(json.dumps(layer.properties())))
    assert rebuilt.properties() == layer.properties() and rebuilt.describe() == text
    assert L.LAYER_KINDS[cls.kind] is cls and cls.type and "MATLAB" in cls.__doc__


def test_kinds_types_defaults_and_properties():
    expected = {
        L.SwishLayer: ("swish", "Swish", {}),
        L.GELULayer: ("gelu", "GELU", {"approximation": "none"}),
        L.HardSigmoidLayer: ("hard_sigmoid", "Hard Sigmoid", {"alpha": 0.2, "beta": 0.5}),
        L.HardSwishLayer: ("hard_swish", "Hard Swish", {"alpha": 1.0 / 6.0, "beta": 0.5}),
        L.ErfLayer: ("erf", "Erf", {}),
    }
    for cls, (kind, type_, properties) in expected.items():
        assert (cls.kind, cls.type) == (kind, type_)
        assert cls("act").properties() == properties
        assert cls.param_names() == ()


def test_gelu_approximation_is_case_insensitive_and_stored_lower_case():
    assert L.GELULayer("g", approximation="TANH").approximation == "tanh"
    assert L.GELULayer("g", approximation="None").approximation == "none"


@pytest.mark.parametrize("bad", ["erf", "", "sigmoid", None, 1, True, ["tanh"]])
def test_gelu_bad_approximation_is_a_layer_config_error(bad):
    with pytest.raises(LayerConfigError, match=r"'bad'.*approximation.*\['none', 'tanh'\]"):
        L.GELULayer("bad", approximation=bad)


@pytest.mark.parametrize("cls", [L.HardSigmoidLayer, L.HardSwishLayer])
@pytest.mark.parametrize("prop", ["alpha", "beta"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, True, "0.2", None, [0.2], np.array([0.1, 0.2])])
def test_hard_coefficients_must_be_finite_numbers(cls, prop, bad):
    with pytest.raises(LayerConfigError, match=f"'bad'.*{prop}.*finite number"):
        cls("bad", **{prop: bad})


@pytest.mark.parametrize("cls", [L.HardSigmoidLayer, L.HardSwishLayer])
def test_hard_coefficients_may_be_zero_or_negative(cls, rng):
    """ONNX allows any float: alpha 0 gives a constant gate, negative alpha a decreasing one."""
    x = rng.standard_normal((2, 3))
    flat = cls("flat", alpha=0, beta=np.float32(0.25))
    assert (flat.alpha, flat.beta) == (0.0, 0.25) and type(flat.alpha) is float
    gate = np.full_like(x, 0.25)
    expected = gate if cls is L.HardSigmoidLayer else x * gate
    np.testing.assert_allclose(flat.forward(Tensor(x)).data, expected, **F64)
    assert cls("decreasing", alpha=-1.0, beta=-2.0).forward(Tensor(np.array([[-3.0]]))).data[0, 0] != 0.0


# --- a network of all five, saved and loaded ------------------------------------------------
def activation_network(rng: np.random.Generator) -> Network:
    """image input -> conv -> swish -> gelu(tanh) -> hard sigmoid -> hard swish -> gelu -> erf -> fc -> softmax."""
    layers = [
        L.ImageInputLayer(name="input", input_size=(4, 4, 2), normalization="none"),
        L.Convolution2dLayer(name="conv", inputs=("input",), filter_size=3, num_filters=3, padding="same",
                             weights=rng.standard_normal((3, 2, 3, 3)), bias=rng.standard_normal(3)),
        L.SwishLayer(name="swish", inputs=("conv",)),
        L.GELULayer(name="gelu_tanh", inputs=("swish",), approximation="tanh"),
        L.HardSigmoidLayer(name="hard_sigmoid", inputs=("gelu_tanh",), alpha=0.3, beta=0.4),
        L.HardSwishLayer(name="hard_swish", inputs=("hard_sigmoid",)),
        L.GELULayer(name="gelu", inputs=("hard_swish",)),
        L.ErfLayer(name="erf", inputs=("gelu",)),
        L.FullyConnectedLayer(name="fc", inputs=("erf",), output_size=2,
                              weights=rng.standard_normal((2, 48)), bias=rng.standard_normal(2)),
        L.SoftmaxLayer(name="softmax", inputs=("fc",)),
        L.ClassificationLayer(name="output", inputs=("softmax",), classes=["cat", "dog"]),
    ]
    return Network(layers, name="activations")


def test_network_of_the_new_activations_survives_save_and_load(tmp_path: Path, rng):
    net = activation_network(rng)
    path = tmp_path / "activations.h5"
    refcam.io.save(net, path)
    loaded = refcam.io.load(path)
    assert [(type(a), a.name, a.inputs, a.properties()) for a in loaded.layers] == \
        [(type(b), b.name, b.inputs, b.properties()) for b in net.layers]
    image = rng.standard_normal((4, 4, 2))
    assert np.array_equal(loaded.predict(image), net.predict(image))
    refcam.io.save(loaded, tmp_path / "again.h5")
    assert path.read_bytes() == (tmp_path / "again.h5").read_bytes()


def test_gradcam_runs_through_the_new_activations(rng):
    net = activation_network(rng)
    image = rng.standard_normal((4, 4, 2))
    result = refcam.gradcam(net, image, "dog", feature_layer="swish")
    assert result.map.shape == (4, 4) and np.all(np.isfinite(result.map))
