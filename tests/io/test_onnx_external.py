"""ONNX external data: initializers kept in a data file next to the model load, from the model's folder only.

``torch.onnx.export(model, (x,), path)`` writes the weights to ``path.data``;
refcam reads such a file through ``refcam.io.safe.external_tensor_bytes``:
the location must be relative, stay inside the model's folder (symlinks
resolved), name a regular file, and offset and length must fit the file and
the tensor's declared size. The working directory never takes part.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import refcam
from refcam.errors import DeclaredSizeError, ExternalReferenceError, FileFormatError

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

WEIGHTS = np.arange(1.0, 13.0).reshape(3, 2, 2, 1) / 8          # conv (F=3, C=2, 2, 1), exact in float32
BIAS = np.array([0.5, -0.25, 0.125])
X = np.linspace(-1.0, 1.0, 2 * 4 * 4).reshape(1, 2, 4, 4)


def conv_model() -> Any:
    """Conv (weights, bias) -> Relu: two float32 initializers."""
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv"),
         helper.make_node("Relu", ["c"], ["y"], name="relu")], "ext",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(WEIGHTS.astype(np.float32), "w"), numpy_helper.from_array(BIAS.astype(np.float32), "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def direct_output() -> np.ndarray:
    """The model's forward in float64, computed directly (valid correlation, stride 1)."""
    out = np.zeros((1, 3, 3, 4))
    for f in range(3):
        for i in range(3):
            for j in range(4):
                out[0, f, i, j] = np.sum(X[0, :, i:i + 2, j:j + 1] * WEIGHTS[f]) + BIAS[f]
    return np.maximum(out, 0.0)


@pytest.fixture(scope="module")
def inside_output(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """What the same model with its weights inside the file predicts (external data must give the same bits)."""
    path = tmp_path_factory.mktemp("inside") / "model.onnx"
    onnx.save(conv_model(), path)
    output = refcam.load(path).predict(X, format="BCSS")
    np.testing.assert_allclose(output, direct_output(), rtol=1e-15, atol=1e-15)
    return output


def external_model(folder: Path, location: str = "model.onnx.data") -> tuple[Path, Any]:
    """The model saved with both initializers in one external file at ``location`` (relative to ``folder``)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    onnx.save(conv_model(), path, save_as_external_data=True, all_tensors_to_one_file=True, location=location,
              size_threshold=0)
    return path, onnx.load(path, load_external_data=False)


def set_entry(model: Any, initializer: int, key: str, value: str, path: Path) -> None:
    """Rewrite one external-data entry of an initializer and save ``model`` to ``path`` as is."""
    entries = model.graph.initializer[initializer].external_data
    for entry in entries:
        if entry.key == key:
            entry.value = value
            break
    else:
        added = entries.add()
        added.key, added.value = key, value
    path.write_bytes(model.SerializeToString())


def predict(path: Path) -> np.ndarray:
    return refcam.load(path).predict(X, format="BCSS")


def test_an_external_data_model_loads_with_the_same_numbers(tmp_path: Path, inside_output: np.ndarray) -> None:
    path, model = external_model(tmp_path / "m")
    assert all(t.data_location == TensorProto.EXTERNAL for t in model.graph.initializer)
    np.testing.assert_array_equal(predict(path), inside_output)


def test_the_data_is_read_next_to_the_model_not_from_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inside_output: np.ndarray) -> None:
    path, _ = external_model(tmp_path / "m")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    (elsewhere / "model.onnx.data").write_bytes(np.full(64, 7.0, np.float32).tobytes())   # a decoy
    monkeypatch.chdir(elsewhere)
    np.testing.assert_array_equal(predict(path), inside_output)
    os.remove(path.parent / "model.onnx.data")
    with pytest.raises(FileFormatError, match="cannot be opened next to the model"):
        refcam.load(path)


def test_a_relative_path_to_the_model_works_from_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            inside_output: np.ndarray) -> None:
    path, _ = external_model(tmp_path / "m")
    monkeypatch.chdir(tmp_path)
    np.testing.assert_array_equal(predict(Path("m/model.onnx")), inside_output)


def test_a_data_file_in_a_subfolder_loads(tmp_path: Path, inside_output: np.ndarray) -> None:
    path, model = external_model(tmp_path / "m")
    (path.parent / "weights").mkdir()
    (path.parent / "model.onnx.data").rename(path.parent / "weights" / "all.bin")
    for initializer in (0, 1):
        set_entry(model, initializer, "location", "weights/all.bin", path)
    np.testing.assert_array_equal(predict(path), inside_output)


@pytest.mark.parametrize("location", ["../outside.bin", "weights/../../outside.bin", "/etc/passwd", "C:/x.bin",
                                      "\\\\server\\share\\x.bin", ""])
def test_a_location_outside_the_folder_is_refused(tmp_path: Path, location: str) -> None:
    path, model = external_model(tmp_path / "m")
    (tmp_path / "outside.bin").write_bytes(np.zeros(64, np.float32).tobytes())
    set_entry(model, 0, "location", location, path)
    with pytest.raises(ExternalReferenceError, match="relative path inside the model's folder"):
        refcam.load(path)


def test_a_symlink_leaving_the_folder_is_refused(tmp_path: Path) -> None:
    path, _ = external_model(tmp_path / "m")
    data = path.parent / "model.onnx.data"
    outside = tmp_path / "real.data"
    data.rename(outside)
    data.symlink_to(outside)
    with pytest.raises(ExternalReferenceError, match="outside the model's folder"):
        refcam.load(path)


def test_a_folder_as_the_data_file_is_refused(tmp_path: Path) -> None:
    path, model = external_model(tmp_path / "m")
    (path.parent / "adir").mkdir()
    set_entry(model, 0, "location", "adir", path)
    with pytest.raises(FileFormatError, match="not a regular file"):
        refcam.load(path)


@pytest.mark.parametrize("key, value, error, match", [
    ("offset", "1000000", DeclaredSizeError, "the data file is truncated"),
    ("length", "8", DeclaredSizeError, "declares 8 external bytes but its dims"),
    ("length", "-4", FileFormatError, "non-negative integer"),
    ("offset", "1.5", FileFormatError, "non-negative integer"),
])
def test_offset_and_length_are_checked_before_reading(tmp_path: Path, key: str, value: str, error: type,
                                                      match: str) -> None:
    path, model = external_model(tmp_path / "m")
    set_entry(model, 0, key, value, path)
    with pytest.raises(error, match=match):
        refcam.load(path)


def test_a_truncated_data_file_is_refused(tmp_path: Path) -> None:
    path, _ = external_model(tmp_path / "m")
    data = path.parent / "model.onnx.data"
    data.write_bytes(data.read_bytes()[:20])
    with pytest.raises(DeclaredSizeError, match="which holds 20"):
        refcam.load(path)


def test_a_huge_declared_external_tensor_is_refused_before_opening_the_data(tmp_path: Path) -> None:
    path, model = external_model(tmp_path / "m")
    del model.graph.initializer[0].dims[:]
    model.graph.initializer[0].dims.extend([2 ** 20, 2 ** 20])
    path.write_bytes(model.SerializeToString())
    os.remove(path.parent / "model.onnx.data")             # would be a FileFormatError if it were looked for
    with pytest.raises(DeclaredSizeError, match="over the limit"):
        refcam.load(path)


HAS_TORCH_EXPORT = all(importlib.util.find_spec(name) for name in ("torch", "onnxscript"))


@pytest.mark.skipif(not HAS_TORCH_EXPORT, reason="needs torch and onnxscript (torch.onnx.export's default)")
def test_the_default_torch_export_loads(tmp_path: Path) -> None:
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3))
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    model.eval()
    x = torch.randn(1, 2, 8, 8)
    path = tmp_path / "default.onnx"
    torch.onnx.export(model, (x,), str(path))
    assert (tmp_path / "default.onnx.data").is_file()
    ours = refcam.load(path).predict(x.double().numpy(), format="BCSS")
    with torch.no_grad():
        theirs = model.double()(x.double()).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
