"""refcam.network: DAG validation, topological order, forward runs, the Grad-CAM engine, display."""
from __future__ import annotations

import weakref

import numpy as np
import pytest

from refcam.autodiff import Tensor, grad, graph_nodes
from refcam.backend import gpu_available
from refcam.errors import (CycleError, DuplicateLayerNameError, InputError, InputLayerError,
                           LayerNotFoundError, LayerShapeError, NetworkError, OutputLayerError,
                           UnknownInputError)
from refcam.layers import (AdditionLayer, BatchNormalizationLayer, ClassificationLayer, Convolution1dLayer,
                           Convolution2dLayer, DepthConcatenationLayer, FullyConnectedLayer,
                           GlobalAveragePooling1dLayer, ImageInputLayer, ReLULayer, RegressionLayer,
                           SequenceInputLayer, SoftmaxLayer)
from refcam.network import Network
from refcam.ops import activation, combine, conv, linear, normalization

from .tolerances import F32, F64

H, W, C = 5, 6, 3  # distinct sizes: a swapped axis cannot pass


# --- layer makers ------------------------------------------------------------------
def image_input(rng, name="in", size=(H, W, C)):
    return ImageInputLayer(name=name, input_size=size, normalization="zerocenter",
                           mean=rng.standard_normal((size[2], 1, 1)))


def conv2d(rng, name, c_in, filters, k, padding=0, inputs=()):
    return Convolution2dLayer(name=name, inputs=inputs, filter_size=k, num_filters=filters,
                              padding=padding, weights=rng.standard_normal((filters, c_in, k, k)),
                              bias=rng.standard_normal(filters))


def batch_norm(rng, name, channels):
    return BatchNormalizationLayer(name=name, trained_mean=rng.standard_normal(channels),
                                   trained_variance=rng.uniform(0.5, 2.0, channels),
                                   scale=rng.standard_normal(channels), offset=rng.standard_normal(channels))


def fully_connected(rng, name, c_in, c_out):
    return FullyConnectedLayer(name=name, output_size=c_out, weights=rng.standard_normal((c_out, c_in)),
                               bias=rng.standard_normal(c_out))


def relu(name, inputs=()):
    return ReLULayer(name=name, inputs=inputs)


# --- hand-written compositions of the ops --------------------------------------------
def apply_input(layer, x):
    return Tensor(x - layer.mean)


def apply_conv(layer, x, padding):
    return conv.conv(x, Tensor(layer.weights), Tensor(layer.bias), stride=(1, 1), dilation=(1, 1),
                     padding=padding)


def apply_bn(layer, x):
    return normalization.batch_norm(x, Tensor(layer.trained_mean), Tensor(layer.trained_variance),
                                    Tensor(layer.scale), Tensor(layer.offset), epsilon=1e-5)


def fire_module(rng):
    """SqueezeNet's fire module: squeeze 1x1 -> relu -> (expand 1x1 -> relu, expand 3x3 'same' -> relu) -> concat."""
    return [
        image_input(rng),
        conv2d(rng, "squeeze", C, 2, 1),
        relu("squeeze_relu"),
        conv2d(rng, "expand1x1", 2, 4, 1, inputs=("squeeze_relu",)),
        relu("expand1x1_relu"),
        conv2d(rng, "expand3x3", 2, 3, 3, padding="same", inputs=("squeeze_relu",)),
        relu("expand3x3_relu"),
        DepthConcatenationLayer(name="concat", inputs=("expand1x1_relu", "expand3x3_relu")),
    ]


def fire_module_by_hand(layers, x):
    by_name = {layer.name: layer for layer in layers}
    no_pad, one_pad = (0, 0, 0, 0), (1, 1, 1, 1)
    squeezed = activation.relu(apply_conv(by_name["squeeze"], apply_input(by_name["in"], x), no_pad))
    expand1 = activation.relu(apply_conv(by_name["expand1x1"], squeezed, no_pad))
    expand3 = activation.relu(apply_conv(by_name["expand3x3"], squeezed, one_pad))
    return combine.concat([expand1, expand3], axis=1).data


def residual_block(rng):
    """ResNet's basic block: conv-bn-relu-conv-bn plus the skip connection, then addition and relu."""
    return [
        image_input(rng),
        conv2d(rng, "stem", C, 4, 3, padding="same"),
        relu("stem_relu"),
        conv2d(rng, "conv_a", 4, 4, 3, padding="same"),
        batch_norm(rng, "bn_a", 4),
        relu("relu_a"),
        conv2d(rng, "conv_b", 4, 4, 3, padding="same"),
        batch_norm(rng, "bn_b", 4),
        AdditionLayer(name="add", inputs=("bn_b", "stem_relu")),
        relu("out_relu"),
    ]


def residual_block_by_hand(layers, x):
    by_name = {layer.name: layer for layer in layers}
    same = (1, 1, 1, 1)
    stem = activation.relu(apply_conv(by_name["stem"], apply_input(by_name["in"], x), same))
    a = activation.relu(apply_bn(by_name["bn_a"], apply_conv(by_name["conv_a"], stem, same)))
    b = apply_bn(by_name["bn_b"], apply_conv(by_name["conv_b"], a, same))
    return activation.relu(combine.add([b, stem])).data


def classifier(rng, classes=("cat", "dog", "emu")):
    """in -> conv 3x3 -> relu -> conv 3x3 -> relu -> fc -> softmax -> classification (a series network)."""
    k = len(classes)
    return [
        image_input(rng),
        conv2d(rng, "conv_1", C, 2, 3),
        relu("relu_1"),
        conv2d(rng, "conv_2", 2, 2, 3),
        relu("relu_2"),
        fully_connected(rng, "fc", 2 * (H - 4) * (W - 4), k),
        SoftmaxLayer(name="softmax"),
        ClassificationLayer(name="output", classes=classes),
    ]


def classifier_by_hand(layers, x):
    by_name = {layer.name: layer for layer in layers}
    no_pad = (0, 0, 0, 0)
    r1 = activation.relu(apply_conv(by_name["conv_1"], apply_input(by_name["in"], x), no_pad))
    r2 = activation.relu(apply_conv(by_name["conv_2"], r1, no_pad))
    fc = by_name["fc"]
    logits = linear.fully_connected(linear.flatten(r2, "matlab"), Tensor(fc.weights), Tensor(fc.bias))
    return activation.softmax(logits, axis=1).data


# --- forward runs ---------------------------------------------------------------------
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("build, by_hand, last", [(fire_module, fire_module_by_hand, "concat"),
                                                  (residual_block, residual_block_by_hand, "out_relu")])
def test_dag_blocks_match_the_ops_composed_by_hand(build, by_hand, last, batch, rng):
    layers = build(rng)
    net = Network(layers)
    x = rng.standard_normal((batch, C, H, W))
    out = net.forward_tensors(Tensor(x), [last])[last].data
    np.testing.assert_allclose(out, by_hand(net.layers, x), **F64)
    assert out.shape[1:] == net.output_shapes[last]


def test_output_shapes_of_the_fire_module(rng):
    shapes = Network(fire_module(rng)).output_shapes
    assert shapes == {"in": (C, H, W), "squeeze": (2, H, W), "squeeze_relu": (2, H, W),
                      "expand1x1": (4, H, W), "expand1x1_relu": (4, H, W),
                      "expand3x3": (3, H, W), "expand3x3_relu": (3, H, W), "concat": (7, H, W)}


def test_series_layers_are_connected_in_list_order_without_modifying_them(rng):
    layers = classifier(rng)
    net = Network(layers)
    names = [layer.name for layer in layers]
    assert net.connections == list(zip(names, names[1:]))
    assert [layer.inputs for layer in layers[1:]] == [()] * (len(layers) - 1)
    assert net.is_series and net.layer_names == names


def test_explicit_connections_are_kept_and_layers_put_in_topological_order(rng):
    layers = fire_module(rng)
    shuffled = [layers[i] for i in (0, 7, 3, 4, 5, 6, 1, 2)]  # concat and expands before squeeze
    shuffled[6] = conv2d(rng, "squeeze", C, 2, 1, inputs=("in",))
    shuffled[7] = relu("squeeze_relu", inputs=("squeeze",))
    net = Network(shuffled)
    assert net.layer_names == ["in", "squeeze", "squeeze_relu", "expand1x1", "expand1x1_relu",
                               "expand3x3", "expand3x3_relu", "concat"]
    assert not net.is_series


def test_structure_queries(rng):
    net = Network(fire_module(rng))
    assert net.input_layer.name == "in" and net.output_layer.name == "concat"
    assert net.upstream("expand3x3_relu") == {"in", "squeeze", "squeeze_relu", "expand3x3"}
    assert net.downstream("expand1x1") == {"expand1x1_relu", "concat"}
    assert net.layer("squeeze").type == "2-D Convolution"
    assert not net.has_output_layer and net.classes is None
    classified = Network(classifier(rng))
    assert classified.has_output_layer and classified.classes == ["cat", "dog", "emu"]


def test_unknown_layer_names_list_the_valid_ones(rng):
    net = Network(fire_module(rng))
    for query in (net.layer, net.upstream, net.downstream,
                  lambda name: net.forward_tensors(np.zeros((1, C, H, W)), [name])):
        with pytest.raises(LayerNotFoundError, match=r"no layer named 'fire'; its layers are \['in', "):
            query("fire")


# --- validation ------------------------------------------------------------------------
def test_duplicate_names_are_refused(rng):
    with pytest.raises(DuplicateLayerNameError, match=r"\['relu'\] used more than once"):
        Network([image_input(rng), relu("relu"), relu("relu")])


def test_unknown_inputs_are_refused_with_the_valid_names(rng):
    with pytest.raises(UnknownInputError, match=r"layer 'r2' \(ReLU\) takes input from \['nope'\], which "
                                                r"is not a layer of the network; the layers are "
                                                r"\['in', 'r1', 'r2'\]"):
        Network([image_input(rng), relu("r1"), relu("r2", inputs=("nope",))])


def test_cycles_are_refused_naming_the_layers_on_them(rng):
    layers = [image_input(rng),
              AdditionLayer(name="add", inputs=("in", "r2")),
              relu("r1", inputs=("add",)),
              relu("r2", inputs=("r1",)),
              relu("r3", inputs=("r2",))]
    with pytest.raises(CycleError, match=r"the layers form a cycle: r1 -> r2 -> add -> r1;"):
        Network(layers)


def test_a_layer_feeding_itself_is_a_cycle(rng):
    with pytest.raises(CycleError, match=r"cycle: loop -> loop;"):
        Network([image_input(rng), AdditionLayer(name="loop", inputs=("in", "loop")), relu("r")])


def test_two_input_layers_are_refused(rng):
    layers = [image_input(rng, "in1"), image_input(rng, "in2"),
              AdditionLayer(name="add", inputs=("in1", "in2"))]
    with pytest.raises(InputLayerError, match=r"exactly one input layer .* found 2: \['in1', 'in2'\]"):
        Network(layers)


def test_no_input_layer_is_refused(rng):
    with pytest.raises(InputLayerError, match=r"exactly one input layer .* found none"):
        Network([conv2d(rng, "conv", C, 2, 3), relu("relu")])


def test_two_outputs_are_refused(rng):
    with pytest.raises(OutputLayerError, match=r"exactly one output .* found 2: \['r1', 'r2'\]"):
        Network([image_input(rng), relu("r1"), relu("r2", inputs=("in",))])


def test_an_output_layer_must_be_last(rng):
    layers = [image_input(rng), RegressionLayer(name="regression"), relu("r")]
    with pytest.raises(OutputLayerError, match=r"output layers \['regression'\] feed other layers"):
        Network(layers)


@pytest.mark.parametrize("make, message", [
    (lambda rng: [image_input(rng), relu("r"), AdditionLayer(name="add")],
     r"layer 'add' \(Addition\) needs 2 or more inputs but has 1 \(\['r'\]\)"),
    (lambda rng: [image_input(rng), relu("r"), relu("r2", inputs=("in", "r"))],
     r"layer 'r2' \(ReLU\) takes 1 input\(s\) but has 2"),
    (lambda rng: [image_input(rng), relu("r"), AdditionLayer(name="add", num_inputs=3), relu("r3")],
     r"layer 'add' \(Addition\) takes 3 input\(s\) but has 1"),
    (lambda rng: [relu("r"), image_input(rng), relu("r2", inputs=("in",))],
     r"layer 'r' \(ReLU\) takes 1 input\(s\) but has 0"),
])
def test_wrong_input_counts_are_refused(make, message, rng):
    with pytest.raises(NetworkError, match=message):
        Network(make(rng))


def test_an_input_layer_with_inputs_is_refused(rng):
    first, second = image_input(rng, "in"), ImageInputLayer(name="in2", inputs=("in",), input_size=(H, W, C),
                                                            normalization="none")
    with pytest.raises(InputLayerError):
        Network([first, second])
    with pytest.raises(NetworkError, match=r"layer 'in' \(Image Input\) takes no inputs \(it is an input "
                                           r"layer\) but has 1"):
        Network([ImageInputLayer(name="in", inputs=("r",), input_size=(H, W, C), normalization="none"),
                 relu("r", inputs=("in",))])


def test_shape_mismatches_are_refused_naming_the_layer(rng):
    layers = [image_input(rng), conv2d(rng, "conv", C, 4, 1),
              AdditionLayer(name="add", inputs=("in", "conv"))]
    with pytest.raises(LayerShapeError, match=r"layer 'add' \(Addition\) adds inputs of one shape; found "
                                              r"shapes \[\(3, 5, 6\), \(4, 5, 6\)\]"):
        Network(layers)


def test_shape_errors_without_the_layer_name_get_it(rng):
    class Silent(ReLULayer):
        def output_shape(self, *shapes):
            raise LayerShapeError("bad shape")

    with pytest.raises(LayerShapeError, match=r"^layer 'quiet' \(ReLU\): bad shape$"):
        Network([image_input(rng), Silent(name="quiet")])


# --- sequences -----------------------------------------------------------------------------
def sequence_net(rng, min_length):
    return [SequenceInputLayer(name="seq", input_size=C, min_length=min_length),
            Convolution1dLayer(name="conv", filter_size=3, num_filters=2,
                               weights=rng.standard_normal((2, C, 3)), bias=rng.standard_normal(2)),
            GlobalAveragePooling1dLayer(name="gap"),
            fully_connected(rng, "fc", 2, 4)]


def test_sequence_shapes_are_checked_at_min_length_and_at_run_time(rng):
    with pytest.raises(LayerShapeError, match=r"'conv'"):
        Network(sequence_net(rng, min_length=2))
    net = Network(sequence_net(rng, min_length=3))
    assert net.output_shapes["conv"] == (2, 1) and net.output_shapes["fc"] == (4,)
    for steps in (3, 9):
        assert net.predict(rng.standard_normal((C, steps))).shape == (1, 4)
    assert net.infer_shapes((C, 9))["conv"] == (2, 7)
    declared = net.infer_shapes((C, 3))                  # the shapes checked at build time, as a copy
    assert declared == net.output_shapes
    declared["conv"] = None
    assert net.infer_shapes((C, 3))["conv"] == (2, 1)
    with pytest.raises(LayerShapeError, match=r"'conv'"):
        net.infer_shapes((C, 2))
    with pytest.raises(InputError, match=r"internal shape \(1, 3, 2\)"):
        net.forward_tensors(rng.standard_normal((1, C, 2)), ["fc"])


def test_shapes_of_other_sequence_lengths_are_kept_up_to_the_cache_size(rng, monkeypatch):
    import refcam.network as network_module
    monkeypatch.setattr(network_module, "SHAPE_CACHE_SIZE", 2)
    net = Network(sequence_net(rng, min_length=3))
    inferred = []
    real = Network._inferred_shapes
    monkeypatch.setattr(Network, "_inferred_shapes", lambda self, shape: inferred.append(shape) or real(self, shape))
    first = net.infer_shapes((C, 9))
    first["conv"] = None                                  # a copy: the kept shapes are not changed
    assert net.infer_shapes((C, 9))["conv"] == (2, 7) and inferred == [(C, 9)]
    net.infer_shapes((C, 10)), net.infer_shapes((C, 11))  # the oldest length (9) is dropped
    assert net.infer_shapes((C, 11))["conv"] == (2, 9) and inferred == [(C, 9), (C, 10), (C, 11)]
    assert net.infer_shapes((C, 9))["conv"] == (2, 7) and inferred[-1] == (C, 9)
    with pytest.raises(LayerShapeError, match=r"'conv'"):
        net.infer_shapes((C, 2))                          # a failure is raised every time, never kept
    with pytest.raises(LayerShapeError, match=r"'conv'"):
        net.infer_shapes((C, 2))


def test_forward_tensors_refuses_inputs_of_the_wrong_size(rng):
    net = Network(fire_module(rng))
    with pytest.raises(InputError, match=r"internal shape \(1, 3, 6, 5\) .* takes \(B, 3, 5, 6\)"):
        net.forward_tensors(rng.standard_normal((1, C, W, H)), ["concat"])


# --- the Grad-CAM engine ---------------------------------------------------------------------
def taped_ops(tensor):
    return [node.op for node in graph_nodes(tensor)]


def test_grad_from_tapes_only_the_layers_downstream(rng):
    net = Network(classifier(rng)[:6])  # in -> conv_1 -> relu_1 -> conv_2 -> relu_2 -> fc
    x = rng.standard_normal((2, C, H, W))
    out = net.forward_tensors(Tensor(x), ["fc"], grad_from="relu_2")
    leaf = out["relu_2"]
    assert leaf.is_leaf and leaf.requires_grad
    fc_alone = net.layer("fc").forward(Tensor(leaf.data, requires_grad=True))
    assert taped_ops(out["fc"]) == taped_ops(fc_alone)
    assert not {"conv", "relu"} & set(taped_ops(out["fc"]))
    leaves = {id(t) for node in graph_nodes(out["fc"]) for t in node.inputs
              if t.is_leaf and t.requires_grad}
    assert leaves == {id(leaf)}
    np.testing.assert_allclose(out["fc"].data, net.forward_tensors(Tensor(x), ["fc"])["fc"].data, **F64)


def test_grad_from_an_earlier_layer_tapes_the_layers_in_between(rng):
    net = Network(classifier(rng)[:6])
    out = net.forward_tensors(Tensor(rng.standard_normal((1, C, H, W))), ["fc", "relu_2"],
                              grad_from="relu_1")
    ops = taped_ops(out["fc"])
    assert ops[:2] == ["conv", "relu"] and ops[2:] == taped_ops(
        net.layer("fc").forward(Tensor(out["relu_2"].data, requires_grad=True)))
    (g,) = grad(out["fc"].sum(), [out["relu_1"]])
    assert g.shape == out["relu_1"].shape and np.any(g != 0.0)


def test_without_grad_from_nothing_is_taped(rng):
    net = Network(classifier(rng))
    out = net.forward_tensors(Tensor(rng.standard_normal((1, C, H, W))), ["output", "relu_1"])
    assert set(out) == {"output", "relu_1"}
    assert all(t.is_leaf and not t.requires_grad for t in out.values())


def test_only_ancestors_of_the_requested_outputs_run(rng, monkeypatch):
    net = Network(fire_module(rng))
    ran = []
    for layer in net.layers:
        monkeypatch.setattr(layer, "forward", _spy(layer.forward, layer.name, ran))
    out = net.forward_tensors(rng.standard_normal((1, C, H, W)), ["expand1x1"])
    assert ran == ["in", "squeeze", "squeeze_relu", "expand1x1"] and list(out) == ["expand1x1"]
    ran.clear()
    net.forward_tensors(rng.standard_normal((1, C, H, W)), ["squeeze"], grad_from="expand3x3")
    assert ran == ["in", "squeeze", "squeeze_relu", "expand3x3"]


def test_intermediates_are_freed_once_no_layer_needs_them(rng, monkeypatch):
    net = Network(classifier(rng))
    outputs = {}
    alive_when_fc_runs = {}

    def record_outputs(layer):
        forward = layer.forward

        def run(*xs):
            if layer.name == "fc":
                alive_when_fc_runs.update({name: ref() is not None for name, ref in outputs.items()})
            result = forward(*xs)
            outputs[layer.name] = weakref.ref(result)
            return result
        return run

    for layer in net.layers:
        monkeypatch.setattr(layer, "forward", record_outputs(layer))
    net.forward_tensors(Tensor(rng.standard_normal((1, C, H, W))), ["output", "conv_1"])
    assert alive_when_fc_runs == {"in": False, "conv_1": True, "relu_1": False, "conv_2": False,
                                  "relu_2": True}


def _spy(forward, name, ran):
    def run(*xs):
        ran.append(name)
        return forward(*xs)
    return run


# --- predict and activations -------------------------------------------------------------------
def test_predict_returns_batch_by_classes_for_single_and_batched_inputs(rng):
    layers = classifier(rng)
    net = Network(layers)
    images = rng.standard_normal((H, W, C, 3))  # SSCB
    batched = net.predict(images, format="SSCB")
    expected = classifier_by_hand(net.layers, images.transpose(3, 2, 0, 1))
    assert batched.shape == (3, 3)
    np.testing.assert_allclose(batched, expected, **F64)
    single = net.predict(images[..., 1])
    assert single.shape == (1, 3) and single.dtype == np.float64
    np.testing.assert_allclose(single[0], expected[1], **F64)
    np.testing.assert_allclose(batched.sum(axis=1), 1.0, **F64)


def test_predict_in_float32(rng):
    net = Network(classifier(rng))
    image = rng.standard_normal((H, W, C))
    single = net.predict(image, dtype="float32")
    assert single.dtype == np.float32
    np.testing.assert_allclose(single, net.predict(image), **F32)


def test_predict_puts_spatial_outputs_in_the_input_layout(rng):
    net = Network(fire_module(rng))
    images = rng.standard_normal((2, C, H, W))
    expected = fire_module_by_hand(net.layers, images)  # (B, 7, H, W)
    np.testing.assert_allclose(net.predict(images, format="BCSS"), expected, **F64)
    np.testing.assert_allclose(net.predict(images.transpose(2, 3, 1, 0), format="SSCB"),
                               expected.transpose(2, 3, 1, 0), **F64)
    np.testing.assert_allclose(net.predict(images[0].transpose(1, 2, 0)), expected[0].transpose(1, 2, 0),
                               **F64)


def test_activations_are_in_the_internal_layout(rng):
    net = Network(residual_block(rng))
    image = rng.standard_normal((H, W, C))
    acts = net.activations(image, ["relu_a", "out_relu"])
    assert list(acts) == ["relu_a", "out_relu"] and acts["relu_a"].shape == (1, 4, H, W)
    np.testing.assert_allclose(acts["out_relu"], residual_block_by_hand(net.layers, image.transpose(2, 0, 1)[None]),
                               **F64)
    assert list(net.activations(image, "bn_a")) == ["bn_a"]


# --- display -------------------------------------------------------------------------------------
def test_layer_table_matches_matlab_display(rng):
    layers = [ImageInputLayer(name="imageinput", input_size=(28, 28, 1), mean=np.zeros((1, 1, 1))),
              Convolution2dLayer(name="conv_1", filter_size=3, num_filters=8, padding="same",
                                 num_channels=1),
              relu("relu_1"),
              FullyConnectedLayer(name="fc", output_size=1),
              RegressionLayer(name="regressionoutput", response_names=("Response",))]
    expected = (
        "  5x1 Layer array with layers:\n"
        "\n"
        "     1   'imageinput'         Image Input         28x28x1 images with 'zerocenter' normalization\n"
        "     2   'conv_1'             2-D Convolution     8 3x3x1 convolutions with stride [1  1] and padding 'same'\n"
        "     3   'relu_1'             ReLU                ReLU\n"
        "     4   'fc'                 Fully Connected     1 fully connected layer\n"
        "     5   'regressionoutput'   Regression Output   mean-squared-error with response 'Response'")
    net = Network(layers)
    assert str(net) == expected and repr(net) == expected


def test_dag_display_lists_the_connections(rng):
    text = str(Network(fire_module(rng)))
    assert text.startswith("  8x1 Layer array with layers:\n\n     1   'in'   ")
    assert text.endswith(
        "  8x2 Connections:\n"
        "\n"
        "      Source             Destination\n"
        "      'in'               'squeeze'\n"
        "      'squeeze'          'squeeze_relu'\n"
        "      'squeeze_relu'     'expand1x1'\n"
        "      'expand1x1'        'expand1x1_relu'\n"
        "      'squeeze_relu'     'expand3x3'\n"
        "      'expand3x3'        'expand3x3_relu'\n"
        "      'expand1x1_relu'   'concat'\n"
        "      'expand3x3_relu'   'concat'")


# --- devices -------------------------------------------------------------------------------------
def test_to_device_cpu_copies_layers_and_keeps_results(rng):
    net = Network(residual_block(rng))
    image = rng.standard_normal((H, W, C))
    expected = net.predict(image)
    moved = net.to_device("cpu")
    assert moved.layer_names == net.layer_names
    assert all(a is not b for a, b in zip(moved.layers, net.layers))
    assert moved.layer("conv_a").weights is net.layer("conv_a").weights  # already on the CPU: shared
    np.testing.assert_array_equal(moved.predict(image), expected)


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs CuPy and a GPU")
def test_to_device_gpu_moves_parameters_and_predicts_the_same(rng):
    import cupy
    net = Network(residual_block(rng))
    image = rng.standard_normal((H, W, C))
    gpu_net = net.to_device("gpu")
    assert isinstance(gpu_net.layer("bn_a").scale, cupy.ndarray)
    assert isinstance(net.layer("bn_a").scale, np.ndarray)
    result = gpu_net.predict(cupy.asarray(image))
    assert isinstance(result, cupy.ndarray)
    np.testing.assert_allclose(result.get(), net.predict(image), **F64)
