"""refcam.to_onnx: checker, round trip through refcam's importer, Grad-CAM, refusals, determinism."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

import refcam  # noqa: E402
from refcam import layers as L  # noqa: E402
from refcam.errors import UnsupportedOperationError  # noqa: E402
from refcam.io.onnx_export import to_onnx  # noqa: E402
from tests.cam import nets  # noqa: E402

EPSILON = 2.0 ** -17    # an ONNX float attribute is float32: an exactly representable epsilon


def _exact_epsilon(net):
    for layer in net.layers:
        if hasattr(layer, "epsilon"):
            layer.epsilon = EPSILON
    return net


def dag_2d(rng):
    """concat + add, leaky ReLU, zscore input, strided and explicit pooling, matlab-order fc, dropout."""
    return refcam.Network([
        L.ImageInputLayer(name="input", input_size=(8, 8, 2), normalization="zscore",
                          mean=rng.standard_normal((2, 1, 1)), standard_deviation=rng.uniform(0.5, 2, (2, 1, 1))),
        nets.conv("conv_a", rng, 3, 2, 3, inputs=("input",)), L.ReLULayer(name="relu_a", inputs=("conv_a",)),
        nets.conv("conv_b", rng, 3, 2, 1, inputs=("input",)),
        L.LeakyReLULayer(name="leaky", inputs=("conv_b",), scale=0.125),
        L.DepthConcatenationLayer(name="concat", inputs=("relu_a", "leaky"), num_inputs=2),
        nets.conv("conv_c", rng, 6, 6, 3, inputs=("concat",)),
        L.AdditionLayer(name="add", inputs=("conv_c", "concat"), num_inputs=2),
        L.AveragePooling2dLayer(name="avg", inputs=("add",), pool_size=3, stride=2, padding="same",
                                padding_value="mean"),
        L.MaxPooling2dLayer(name="max", inputs=("avg",), pool_size=2, padding=[0, 1, 0, 1]),
        L.DropoutLayer(name="drop", inputs=("max",)),
        nets.fc("fc", rng, 3, 96, inputs=("drop",)),
        L.SoftmaxLayer(name="softmax", inputs=("fc",)),
        L.ClassificationLayer(name="out", inputs=("softmax",), classes=["a", "b", "c"]),
    ])


def sequence_net(rng):
    """causal dilated conv, layer norm, strided 'same' conv on a free time axis."""
    conv1 = nets.conv("causal", rng, 4, 3, 3, nd=1, padding="causal")
    conv1.dilation_factor = (2,)
    conv2 = nets.conv("strided", rng, 4, 4, 3, nd=1)
    conv2.stride = (2,)
    return refcam.Network([
        L.SequenceInputLayer(name="seq", input_size=3), conv1, L.ReLULayer(name="relu"),
        L.LayerNormalizationLayer(name="ln", scale=rng.uniform(0.5, 1.5, 4), offset=rng.standard_normal(4)),
        conv2, L.GlobalAveragePooling1dLayer(name="gap"), nets.fc("fc", rng, 2, 4), L.SoftmaxLayer(name="sm"),
        L.ClassificationLayer(name="out", classes=["x", "y"]),
    ])


NETS = {"classifier": nets.classifier_2d, "dag": dag_2d, "volume": nets.volume_3d, "sequence": sequence_net,
        "regression": nets.regression_2d, "sequence_1d": nets.sequence_1d}


def _last(net):
    return [layer.name for layer in net.layers if not type(layer).is_output_layer][-1]


def _input(net, length=9):
    shape = tuple(length if n is None else n for n in net.input_layer.per_observation_shape())
    return np.random.default_rng(1).standard_normal((2,) + shape)


@pytest.fixture(params=sorted(NETS))
def written(request, tmp_path):
    net = _exact_epsilon(NETS[request.param](np.random.default_rng(0)))
    path = tmp_path / "net.onnx"
    to_onnx(net, path)
    return net, path


def test_checker_and_names(written):
    net, path = written
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    names = {node.name for node in model.graph.node}
    outputs = {o for node in model.graph.node for o in node.output} | {model.graph.input[0].name}
    for layer in net.layers[1:]:
        if not type(layer).is_output_layer:
            assert layer.name in names and layer.name in outputs
    assert {t.data_type for t in model.graph.initializer} == {onnx.TensorProto.DOUBLE}
    bn = [layer for layer in net.layers if isinstance(layer, L.BatchNormalizationLayer)]
    assert len(bn) == sum(node.op_type == "BatchNormalization" for node in model.graph.node)


def test_round_trip_forward_and_gradcam(written):
    net, path = written
    back = refcam.load(path)
    last = _last(net)
    lengths = (9, 12) if isinstance(net.input_layer, L.SequenceInputLayer) else (9,)
    for length in lengths:
        x = _input(net, length)
        a, b = (n.forward_tensors(x, [last])[last].data for n in (net, back))
        assert np.abs(a - b).max() <= 1e-12 * np.abs(a).max()
    feature = [layer.name for layer in net.layers if isinstance(layer, (L.ReLULayer, L.LayerNormalizationLayer))][-1]
    reduction = "fc"
    x = np.moveaxis(_input(net)[0], 0, -1) if not isinstance(net.input_layer, L.SequenceInputLayer) else _input(net)[0]
    maps = [tuple(refcam.gradcam(n, x, 0, feature_layer=feature, reduction_layer=reduction))[0] for n in (net, back)]
    np.testing.assert_allclose(maps[1], maps[0], rtol=1e-9, atol=1e-12 * np.abs(maps[0]).max())


def _as_float32(model):
    """The same ONNX graph with float32 initializers and tensors (onnxruntime's CPU Conv has no double kernel)."""
    from onnx import numpy_helper
    for i, tensor in enumerate(model.graph.initializer):
        array = numpy_helper.to_array(tensor).astype(np.float32)
        model.graph.initializer[i].CopyFrom(numpy_helper.from_array(array, tensor.name))
    for value in (*model.graph.input, *model.graph.output, *model.graph.value_info):
        if value.type.tensor_type.elem_type == onnx.TensorProto.DOUBLE:
            value.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    return model


def test_onnxruntime_runs_the_graph_refcam_wrote(written):
    """A third implementation of the written graph: onnxruntime, in float32, within float32 rounding of refcam.

    onnxruntime 1.32's CPU provider has no float64 Conv, so the float64 file itself cannot run there;
    the same graph with its numbers rounded to float32 checks that its operators mean what refcam means.
    """
    ort = pytest.importorskip("onnxruntime")
    net, path = written
    model = _as_float32(onnx.load(str(path)))
    x = _input(net)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {net.input_layer.name: x.astype(np.float32)})
    last = _last(net)
    expected = net.forward_tensors(x, [last])[last].data
    assert y.shape == expected.shape
    assert np.abs(y - expected).max() <= 1e-5 * np.abs(expected).max()


def test_deterministic(tmp_path):
    net = nets.classifier_2d(np.random.default_rng(0))
    to_onnx(net, tmp_path / "a.onnx")
    to_onnx(net, tmp_path / "b.onnx")
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()


def test_unsupported_layers_listed_at_once(tmp_path):
    rng = np.random.default_rng(0)
    net = refcam.Network([
        L.ImageInputLayer(name="input", input_size=(4, 4, 2), normalization="none"),
        nets.conv("conv", rng, 2, 2, 3), L.SigmoidLayer(name="sig"), L.TanhLayer(name="tanh"),
        L.LayerNormalizationLayer(name="ln", scale=np.ones(2), offset=np.zeros(2)),
        L.GlobalMaxPooling2dLayer(name="gmp"),
    ])
    with pytest.raises(UnsupportedOperationError) as info:
        to_onnx(net, tmp_path / "x.onnx")
    message = str(info.value)
    for text in ("'sig' (SigmoidLayer)", "'tanh' (TanhLayer)", "'ln' (LayerNormalizationLayer)",
                 "'gmp' (GlobalMaxPooling2dLayer)", "4 layer(s)"):
        assert text in message
    assert not (tmp_path / "x.onnx").exists()


def test_missing_onnx(monkeypatch, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "onnx", None)
    with pytest.raises(refcam.errors.OptionalDependencyError, match="pip install"):
        to_onnx(nets.classifier_2d(np.random.default_rng(0)), tmp_path / "x.onnx")
