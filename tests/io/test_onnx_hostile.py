"""Hostile ONNX files: the named regression cases of the hostile-files work.

Each test starts from one small valid conv network written here with
``onnx.helper`` (x (1, 2, 6, 6) -> Conv -> Relu -> GlobalAveragePool -> Flatten
-> Gemm), changes one thing, and checks that ``refcam.load`` raises the exact
:class:`~refcam.errors.RefcamError` subclass the loader means to raise, with a
message that starts with the file's path and names the culprit. None may come
from the importer's last-resort net ("cannot be converted (KeyError: ...)"),
which would mean a check is missing. The cases: external data (1), huge
declared sizes (2), malformed constant-folding nodes (3), unknown element types
(4), mistyped attributes (5), zero or huge window sizes (6), opset-1 files
missing required attributes (7), odd operator names (8), NaN/Inf parameters (9)
and axes out of range (10).
"""
from __future__ import annotations

import builtins
import os
import re
import tracemalloc
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import refcam  # noqa: E402
import refcam.io.onnx_import  # noqa: E402,F401  (imported before any memory is traced)
from refcam.errors import (DeclaredSizeError, ExternalReferenceError, FileFormatError,  # noqa: E402
                           NonFiniteParameterError, RefcamError, UnsupportedOperationError)

CANARY = np.full(4, 123456.75, dtype=np.float32)    # what x.bin holds


# --- building and loading -----------------------------------------------------------------------
def f32(name: str, values: Any) -> Any:
    """A float32 TensorProto."""
    return numpy_helper.from_array(np.asarray(values, dtype=np.float32), name)


def i64(name: str, values: Any) -> Any:
    """An int64 TensorProto."""
    return numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)


def conv_net(extra_nodes: Sequence[Any] = (), extra_initializers: Sequence[Any] = (), *,
             conv: dict | None = None, gemm: dict | None = None, add: str | None = None,
             opset: int = 18) -> Any:
    """The valid base ModelProto, with ``extra_nodes`` after the Gemm ('fc', output 'y').

    ``conv``/``gemm`` replace those nodes' attributes; ``add`` names a constant
    tensor added to 'y' by a final Add node 'add', so the nodes computing it are
    kept (the importer drops nodes the output does not need). The graph output
    is the last node's first output.
    """
    weights = np.linspace(-1.0, 1.0, 3 * 2 * 3 * 3).reshape(3, 2, 3, 3)     # (F, C, kh, kw)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", **(conv or {"pads": [1, 1, 1, 1]})),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fw"], ["y"], name="fc", transB=1, **(gemm or {})),
             *extra_nodes]
    if add:
        nodes.append(helper.make_node("Add", ["y", add], ["z"], name="add"))
    graph = helper.make_graph(
        nodes, "base", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 6, 6])],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)],
        [f32("w", weights), f32("b", np.zeros(3)), f32("fw", np.eye(4, 3)), *extra_initializers])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def saved(model: Any, folder: Path) -> Path:
    """``model`` serialised as is (onnx.save would not touch external data, but be exact)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def refused(path: Path, cls: type, match: str) -> RefcamError:
    """Load ``path``; the error must be exactly ``cls``, prefixed with the path, matching ``match``."""
    with pytest.raises(cls, match=match) as info:
        refcam.load(path)
    message = str(info.value)
    assert type(info.value) is cls, f"{type(info.value).__name__}: {message}"
    assert message.startswith(f"{path}: ")
    assert "cannot be converted" not in message          # not the last-resort net
    return info.value


def as_external(tensor: Any, location: str) -> Any:
    """``tensor`` with its 16 bytes kept in ``location`` (ONNX external data), no payload inside."""
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(CANARY.nbytes))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def test_the_base_network_loads(tmp_path: Path) -> None:
    net = refcam.load(saved(conv_net(), tmp_path))
    assert net.predict(np.ones((1, 2, 6, 6)), format="BCSS").shape == (1, 4)


# --- 1. external data ---------------------------------------------------------------------------
@pytest.fixture
def external_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[str]]:
    """A model folder; x.bin (CANARY) in it and in the working directory; every file opened is recorded."""
    models = tmp_path / "models"
    models.mkdir()
    for folder in (models, tmp_path):
        (folder / "x.bin").write_bytes(CANARY.tobytes())
    monkeypatch.chdir(tmp_path)
    opened: list[str] = []
    real_open, real_os_open = builtins.open, os.open

    def spy_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(os.fspath(file) if isinstance(file, (str, os.PathLike)) else repr(file))
        return real_open(file, *args, **kwargs)

    def spy_os_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(os.fspath(file))
        return real_os_open(file, *args, **kwargs)
    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(os, "open", spy_os_open)
    return models, opened


def _refused_unread(path: Path, opened: list[str], match: str) -> None:
    opened.clear()
    refused(path, ExternalReferenceError, match)
    assert not [name for name in opened if name.endswith("x.bin")], opened


def test_a_constant_with_external_data_is_refused_unread(external_setup) -> None:
    models, opened = external_setup
    constant = helper.make_node("Constant", [], ["k"], name="cst", value=as_external(f32("v", CANARY), "x.bin"))
    path = saved(conv_net([constant], add="k"), models)
    np.testing.assert_array_equal(numpy_helper.to_array(onnx.load(path).graph.node[5].attribute[0].t), CANARY)
    _refused_unread(path, opened, r"node 'cst' \(Constant\): attribute 'value' keeps its data in the external "
                                  r"file 'x.bin'")


@pytest.mark.parametrize("where", ["absolute", "../x.bin", "sub/../../x.bin"])
def test_an_initializer_with_external_data_outside_the_folder_is_refused_unread(external_setup, where: str) -> None:
    models, opened = external_setup
    location = str(models.parent / "x.bin") if where == "absolute" else where
    model = conv_net()
    as_external(model.graph.initializer[1], location)                  # the conv bias 'b'
    _refused_unread(saved(model, models), opened, f"initializer 'b' .*keeps its data at '{location}'; refcam "
                                                  "reads external data only from a relative path inside the "
                                                  "model's folder")


def test_a_constant_of_shape_value_with_external_data_is_refused_unread(external_setup) -> None:
    models, opened = external_setup
    fill = as_external(f32("v", CANARY[:1]), "x.bin")
    node = helper.make_node("ConstantOfShape", ["s"], ["k"], name="cos", value=fill)
    _refused_unread(saved(conv_net([node], [i64("s", [4])], add="k"), models), opened,
                    r"node 'cos' \(ConstantOfShape\): attribute 'value' keeps its data in the external file")


@pytest.mark.parametrize("half", ["data_location only", "external_data only"])
def test_half_an_external_reference_is_refused(external_setup, half: str) -> None:
    models, opened = external_setup
    tensor = as_external(f32("v", CANARY), "x.bin")
    if half == "data_location only":
        del tensor.external_data[:]
    else:
        tensor.data_location = TensorProto.DEFAULT
    constant = helper.make_node("Constant", [], ["k"], name="cst", value=tensor)
    _refused_unread(saved(conv_net([constant], add="k"), models), opened, "node 'cst'.*external file")


def test_an_unused_node_with_external_data_is_refused(external_setup) -> None:
    models, opened = external_setup
    model = conv_net()
    model.graph.node.insert(0, helper.make_node("Constant", [], ["unused"], name="dead",
                                                value=as_external(f32("v", CANARY), "x.bin")))
    _refused_unread(saved(model, models), opened, r"node 'dead' \(Constant\): attribute 'value' keeps its data")


# --- 2. declared sizes --------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [[10 ** 6, 10 ** 6], [2 ** 62, 2 ** 62, 4]])
def test_a_huge_constant_of_shape_is_refused_before_allocation(tmp_path: Path, shape: list[int]) -> None:
    node = helper.make_node("ConstantOfShape", ["s"], ["k"], name="cos")
    path = saved(conv_net([node], [i64("s", shape)], add="k"), tmp_path)
    tracemalloc.start()
    try:
        refused(path, DeclaredSizeError, r"node 'cos' \(ConstantOfShape\): its output declares shape "
                                         rf"\({shape[0]}, .*over the limit of 2 GiB")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 ** 2


@pytest.mark.parametrize("shape", [[-4], [-2, -3]])
def test_a_negative_constant_of_shape_is_refused(tmp_path: Path, shape: list[int]) -> None:
    node = helper.make_node("ConstantOfShape", ["s"], ["k"], name="cos")
    refused(saved(conv_net([node], [i64("s", shape)], add="k"), tmp_path), DeclaredSizeError,
            rf"node 'cos' \(ConstantOfShape\): its output declares the negative size \({shape[0]},")


def test_an_initializer_declaring_huge_dims_is_refused(tmp_path: Path) -> None:
    model = conv_net()
    bias = model.graph.initializer[1]
    bias.ClearField("raw_data")
    bias.ClearField("float_data")
    del bias.dims[:]
    bias.dims.extend([10 ** 6, 10 ** 6])
    refused(saved(model, tmp_path), DeclaredSizeError, r"initializer 'b' .*declares shape \(1000000, 1000000\)")


# --- 3. constant folders ------------------------------------------------------------------------
FOLDER_CASES = {   # case: (node, its initializers, the message)
    "reshape_to_a_wrong_size": (helper.make_node("Reshape", ["d", "s"], ["k"], name="rs"),
                                [f32("d", np.ones(6)), i64("s", [4])],
                                r"node 'rs' \(Reshape\): cannot reshape 6 elements \(shape \(6,\)\) to \[4\]"),
    "concat_axis_out_of_range": (helper.make_node("Concat", ["d", "d"], ["k"], name="cc", axis=3),
                                 [f32("d", np.ones(2))],
                                 r"node 'cc' \(Concat\): axis 3 is out of range for a rank-1 tensor"),
    "transpose_perm_0_0": (helper.make_node("Transpose", ["d"], ["k"], name="tr", perm=[0, 0]),
                           [f32("d", np.ones((1, 4)))],
                           r"node 'tr' \(Transpose\): perm \[0, 0\] is not a permutation"),
    "slice_step_0": (helper.make_node("Slice", ["d", "st", "en", "ax", "sp"], ["k"], name="sl"),
                     [f32("d", np.ones(8)), i64("st", [0]), i64("en", [4]), i64("ax", [0]), i64("sp", [0])],
                     r"node 'sl' \(Slice\): steps \[0\] hold a 0"),
    "cast_to_999": (helper.make_node("Cast", ["d"], ["k"], name="ca", to=999), [f32("d", np.ones(4))],
                    r"node 'ca' \(Cast\): to=999 is not an ONNX element type"),
}


@pytest.mark.parametrize("case", sorted(FOLDER_CASES))
def test_malformed_folded_nodes_are_refused_by_name(tmp_path: Path, case: str) -> None:
    node, initializers, message = FOLDER_CASES[case]
    refused(saved(conv_net([node], initializers, add="k"), tmp_path), FileFormatError, message)


# --- 4. element types ---------------------------------------------------------------------------
def test_an_initializer_of_element_type_999_is_refused(tmp_path: Path) -> None:
    model = conv_net()
    model.graph.initializer[1].data_type = 999
    refused(saved(model, tmp_path), FileFormatError,
            r"initializer 'b' \(read by node 'conv' \(Conv\)\) has the element type 999 \(not an ONNX type\)")


def test_a_constant_of_element_type_999_is_refused(tmp_path: Path) -> None:
    tensor = f32("v", np.ones(4))
    tensor.data_type = 999
    constant = helper.make_node("Constant", [], ["k"], name="cst", value=tensor)
    refused(saved(conv_net([constant], add="k"), tmp_path), FileFormatError,
            r"node 'cst' \(Constant\): attribute 'value' has the element type 999")


# --- 5. attribute types -------------------------------------------------------------------------
@pytest.mark.parametrize("key, value, kinds", [("strides", ["1", "1"], "strings, but ONNX defines it as ints"),
                                               ("group", "1", "string, but ONNX defines it as int"),
                                               ("dilations", [1.0, 1.0], "floats, but ONNX defines it as ints")])
def test_a_mistyped_conv_attribute_is_refused(tmp_path: Path, key: str, value: Any, kinds: str) -> None:
    refused(saved(conv_net(conv={key: value}), tmp_path), FileFormatError,
            rf"node 'conv' \(Conv\): attribute '{key}' is of type {kinds}")


# --- 6. window sizes ----------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["strides", "dilations"])
def test_a_zero_stride_or_dilation_is_refused(tmp_path: Path, key: str) -> None:
    refused(saved(conv_net(conv={key: [0, 0]}), tmp_path), FileFormatError,
            rf"node 'conv' \(Conv\): {key} \[0, 0\] must be integers of at least 1")


@pytest.mark.parametrize("size", [10 ** 6, 2 ** 63 - 1])
@pytest.mark.parametrize("key, prop, count", [("strides", "stride", 2), ("dilations", "dilation_factor", 2),
                                              ("pads", "padding", 4)])
def test_a_huge_window_size_is_refused_at_load(tmp_path: Path, key: str, prop: str, count: int,
                                               size: int) -> None:
    refused(saved(conv_net(conv={key: [size] * count}), tmp_path), FileFormatError,
            rf"node 'conv' \(Conv\): layer 'conv' \(2-D Convolution\): {prop} \({size}, .* <= 65536")


def test_a_stride_of_2_to_the_70_is_refused(tmp_path: Path) -> None:
    """ONNX ints are int64, so onnx.helper refuses 2**70; written by hand as a 10-byte varint of
    2**70 - 1, protobuf reads the low 64 bits (-1), which refcam refuses as a stride below 1."""
    with pytest.raises(ValueError, match="out of range"):
        helper.make_attribute("strides", [2 ** 70, 2 ** 70])
    varint_minus_1 = b"\xff" * 9 + b"\x01"
    content = conv_net(conv={"strides": [-1, -1]}).SerializeToString()
    assert content.count(varint_minus_1) == 2
    path = tmp_path / "model.onnx"
    path.write_bytes(content.replace(varint_minus_1, b"\xff" * 9 + b"\x7f"))
    refused(path, FileFormatError, r"node 'conv' \(Conv\): strides \[-1, -1\] must be integers of at least 1")


# --- 7. opset 1 ---------------------------------------------------------------------------------
OPSET_1_CASES = {   # case: (opset, node, initializers, the missing attribute)
    "reshape_without_shape": (1, helper.make_node("Reshape", ["d"], ["k"], name="n"), [f32("d", np.ones(4))],
                              "'shape' (ints)"),
    "slice_without_starts": (1, helper.make_node("Slice", ["d"], ["k"], name="n"), [f32("d", np.ones(4))],
                             "'starts' (ints)"),
    "cast_without_to": (1, helper.make_node("Cast", ["d"], ["k"], name="n"), [f32("d", np.ones(4))],
                        "'to' (int)"),
    "concat_without_axis": (4, helper.make_node("Concat", ["d", "d"], ["k"], name="n"), [f32("d", np.ones(2))],
                            "'axis' (int)"),
}


@pytest.mark.parametrize("case", sorted(OPSET_1_CASES))
def test_an_old_opset_node_without_its_required_attribute_is_refused(tmp_path: Path, case: str) -> None:
    opset, node, initializers, attribute = OPSET_1_CASES[case]
    refused(saved(conv_net([node], initializers, add="k", opset=opset), tmp_path), FileFormatError,
            rf"node 'n' \({node.op_type}\) lacks its required attribute {re.escape(attribute)}")


def test_an_opset_1_pool_without_kernel_shape_is_refused(tmp_path: Path) -> None:
    pool = helper.make_node("MaxPool", ["r"], ["k"], name="mp")
    model = conv_net(opset=1)
    model.graph.node.insert(2, pool)
    model.graph.node[3].input[0] = "k"                                 # conv -> relu -> pool -> gap
    refused(saved(model, tmp_path), FileFormatError,
            r"node 'mp' \(MaxPool\) lacks its required attribute 'kernel_shape' \(ints\)")


# --- 8. odd operator names ----------------------------------------------------------------------
@pytest.mark.parametrize("op_type, domain", [("Fo\xffo", ""), ("Fo\U0010ffffo\x00", ""), ("X" * 10 ** 5, ""),
                                             ("Relu", "com.\xff")])
def test_an_odd_unsupported_operator_is_listed(tmp_path: Path, op_type: str, domain: str) -> None:
    name = "n" * 10 ** 5
    node = helper.make_node(op_type, ["y"], ["k"], name=name, domain=domain)
    qualified = f"{domain}::{op_type}" if domain else op_type
    error = refused(saved(conv_net([node]), tmp_path), UnsupportedOperationError,
                    "cannot import 1 node\\(s\\) of the ONNX graph, of 1 operator type\\(s\\)")
    assert f"{qualified} (1 node): an operator refcam does not import" in str(error)
    assert f"node '{name}'" in str(error)


@pytest.mark.parametrize("field, raw", [("op_type", b"Fo\xffo"), ("name", b"od\xfed")])
def test_a_name_that_is_not_utf8_is_refused(tmp_path: Path, field: str, raw: bytes) -> None:
    placeholder = raw.replace(raw[2:3], b"X")                          # same length, so no size field changes
    node = helper.make_node("FoXo" if field == "op_type" else "Relu", ["y"], ["k"],
                            name="odXd" if field == "name" else "odd")
    content = conv_net([node]).SerializeToString()
    assert content.count(placeholder) == 1
    path = tmp_path / "model.onnx"
    path.write_bytes(content.replace(placeholder, raw))
    refused(path, FileFormatError, f"the {field} of node #5 {re.escape(repr(raw))} is not UTF-8 text")


# --- 9. NaN and Inf -----------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_initializer_is_refused_by_name(tmp_path: Path, bad: float) -> None:
    model = conv_net()
    model.graph.initializer[1].CopyFrom(f32("b", [0.0, bad, 0.0]))
    refused(saved(model, tmp_path), NonFiniteParameterError,
            r"initializer 'b' \(read by node 'conv' \(Conv\)\) holds 1 NaN or Inf value\(s\) of 3")


@pytest.mark.parametrize("key, bad", [("alpha", float("nan")), ("beta", float("inf"))])
def test_a_non_finite_gemm_attribute_is_refused_by_node(tmp_path: Path, key: str, bad: float) -> None:
    refused(saved(conv_net(gemm={key: bad}), tmp_path), NonFiniteParameterError,
            rf"node 'fc' \(Gemm\): attribute '{key}' holds 1 NaN or Inf value\(s\) \({bad}\)")


# --- 10. axes out of range ----------------------------------------------------------------------
@pytest.mark.parametrize("node, rank", [
    (helper.make_node("Softmax", ["y"], ["k"], name="n", axis=7), 2),
    (helper.make_node("Softmax", ["y"], ["k"], name="n", axis=-3), 2),
    (helper.make_node("Concat", ["c", "c"], ["k"], name="n", axis=9), 4),
    (helper.make_node("Concat", ["c", "c"], ["k"], name="n", axis=-5), 4)],
    ids=["softmax_7_rank_2", "softmax_-3_rank_2", "concat_9_rank_4", "concat_-5_rank_4"])
def test_an_axis_out_of_range_is_refused_not_wrapped(tmp_path: Path, node: Any, rank: int) -> None:
    axis = node.attribute[0].i
    refused(saved(conv_net([node]), tmp_path), FileFormatError,
            rf"node 'n' \({node.op_type}\): axis {axis} is out of range for a rank-{rank} tensor; ONNX allows "
            rf"{-rank} to {rank - 1}")
