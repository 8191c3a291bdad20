"""refcam HDF5 format v1: bit-exact round trips, determinism, and one specific error per malformed file."""
from __future__ import annotations

import json
import pickle
import re
import time
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np
import pytest

import refcam.io
from refcam import layers as L
from refcam.errors import (CycleError, DuplicateLayerNameError, FileFormatError, LayerConfigError,
                           MissingDatasetError, RefcamError, SchemaVersionError, UnknownInputError,
                           UnknownLayerTypeError, WeightShapeError)
from refcam.io.hdf5 import dataset_path, group_name, optional_params
from refcam.network import Network

DOCS = Path(__file__).resolve().parents[2] / "docs" / "hdf5-format.md"


# --- networks -----------------------------------------------------------------------
def _normal(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


def series_2d(rng: np.random.Generator, dtype: Any = np.float64) -> Network:
    """image input -> conv -> bn -> relu -> max pool -> fc -> softmax -> classification."""
    layers = [
        L.ImageInputLayer(name="input", input_size=(6, 6, 2), mean=_normal(rng, (2, 6, 6), dtype)),
        L.Convolution2dLayer(name="conv", inputs=("input",), filter_size=3, num_filters=4, padding="same",
                             weights=_normal(rng, (4, 2, 3, 3), dtype), bias=_normal(rng, (4,), dtype)),
        L.BatchNormalizationLayer(name="bn", inputs=("conv",), epsilon=1e-3,
                                  trained_mean=_normal(rng, (4,), dtype),
                                  trained_variance=rng.uniform(0.5, 2.0, 4).astype(dtype),
                                  scale=_normal(rng, (4,), dtype), offset=_normal(rng, (4,), dtype)),
        L.ReLULayer(name="relu", inputs=("bn",)),
        L.MaxPooling2dLayer(name="pool", inputs=("relu",), pool_size=2, stride=2, padding=(0, 1, 0, 1)),
        L.FullyConnectedLayer(name="fc", inputs=("pool",), output_size=3,
                              weights=_normal(rng, (3, 36), dtype), bias=_normal(rng, (3,), dtype)),
        L.SoftmaxLayer(name="softmax", inputs=("fc",)),
        L.ClassificationLayer(name="output", inputs=("softmax",), classes=["cat", "dog", "naïve ü"]),
    ]
    return Network(layers, name="series 2-D")


def dag_2d(rng: np.random.Generator) -> Network:
    """Two branches joined by depth concatenation, a residual addition; names that need escaping."""
    layers = [
        L.ImageInputLayer(name="data", input_size=(5, 5, 3), normalization="none"),
        L.Convolution2dLayer(name="fire/squeeze", inputs=("data",), filter_size=1, num_filters=2,
                             weights=_normal(rng, (2, 3, 1, 1), np.float64)),
        L.Convolution2dLayer(name="fire/expand1x1", inputs=("fire/squeeze",), filter_size=1, num_filters=2,
                             weights=_normal(rng, (2, 2, 1, 1), np.float64), bias=_normal(rng, (2,), np.float64)),
        L.Convolution2dLayer(name="fire/expand3x3 100%", inputs=("fire/squeeze",), filter_size=3,
                             num_filters=2, padding=1, weights=_normal(rng, (2, 2, 3, 3), np.float64),
                             bias=_normal(rng, (2,), np.float64)),
        L.DepthConcatenationLayer(name="concat", inputs=("fire/expand1x1", "fire/expand3x3 100%")),
        L.Convolution2dLayer(name="res", inputs=("concat",), filter_size=3, num_filters=4, padding="same",
                             weights=_normal(rng, (4, 4, 3, 3), np.float64), bias=_normal(rng, (4,), np.float64)),
        L.AdditionLayer(name="add", inputs=("res", "concat")),
        L.LeakyReLULayer(name="leaky", inputs=("add",), scale=0.2),
        L.GlobalAveragePooling2dLayer(name="gap", inputs=("leaky",)),
        L.FullyConnectedLayer(name="fc", inputs=("gap",), output_size=2,
                              weights=_normal(rng, (2, 4), np.float64), bias=_normal(rng, (2,), np.float64)),
        L.SoftmaxLayer(name="prob", inputs=("fc",)),
        L.ClassificationLayer(name="classoutput", inputs=("prob",), classes=["a/b", "c%d"]),
    ]
    return Network(layers, name="dag")


def sequence_1d(rng: np.random.Generator) -> Network:
    """sequence input -> causal conv1d -> relu -> layer norm -> global average pooling -> fc -> softmax -> classification."""
    layers = [
        L.SequenceInputLayer(name="sequence", input_size=3, min_length=4, normalization="zscore",
                             mean=_normal(rng, (3, 1), np.float64),
                             standard_deviation=rng.uniform(0.5, 2.0, (3, 1))),
        L.Convolution1dLayer(name="conv1d", inputs=("sequence",), filter_size=3, num_filters=5,
                             padding="causal", dilation_factor=2,
                             weights=_normal(rng, (5, 3, 3), np.float64), bias=_normal(rng, (5,), np.float64)),
        L.ReLULayer(name="relu", inputs=("conv1d",)),
        L.LayerNormalizationLayer(name="layernorm", inputs=("relu",), scale=_normal(rng, (5,), np.float64),
                                  offset=_normal(rng, (5,), np.float64)),
        L.GlobalAveragePooling1dLayer(name="gap1d", inputs=("layernorm",)),
        L.FullyConnectedLayer(name="fc", inputs=("gap1d",), output_size=4,
                              weights=_normal(rng, (4, 5), np.float64), bias=_normal(rng, (4,), np.float64)),
        L.SoftmaxLayer(name="softmax", inputs=("fc",)),
        L.ClassificationLayer(name="classification", inputs=("softmax",), classes=["1", "2", "3", "4"]),
    ]
    return Network(layers)


def volume_3d(rng: np.random.Generator) -> Network:
    """3-D image input (scalar statistics) -> conv3d -> clipped relu -> avg pool -> dropout -> flatten -> fc -> regression."""
    layers = [
        L.Image3dInputLayer(name="volume", input_size=(4, 4, 4, 1), normalization="zscore",
                            mean=np.array(0.25), standard_deviation=np.array(1.5)),
        L.Convolution3dLayer(name="conv3d", inputs=("volume",), filter_size=(2, 2, 2), num_filters=2,
                             stride=(1, 1, 2), weights=_normal(rng, (2, 1, 2, 2, 2), np.float64),
                             bias=_normal(rng, (2,), np.float64)),
        L.ClippedReLULayer(name="clipped", inputs=("conv3d",), ceiling=6.0),
        L.AveragePooling3dLayer(name="avg", inputs=("clipped",), pool_size=2, padding_value="mean",
                                padding="same"),
        L.DropoutLayer(name="drop", inputs=("avg",), probability=0.3),
        L.FlattenLayer(name="flatten", inputs=("drop",)),
        L.FullyConnectedLayer(name="fc", inputs=("flatten",), output_size=1,
                              weights=_normal(rng, (1, 36), np.float64)),
        L.RegressionLayer(name="regression", inputs=("fc",), response_names=["angle"]),
    ]
    return Network(layers, name="volume")


NETWORKS: dict[str, Callable[[np.random.Generator], Network]] = {
    "series_2d": series_2d,
    "series_2d_float32": lambda rng: series_2d(rng, np.float32),
    "dag_2d": dag_2d,
    "sequence_1d": sequence_1d,
    "volume_3d": volume_3d,
}


# --- helpers ---------------------------------------------------------------------------
def _topology(net: Network) -> list[tuple[Any, ...]]:
    return [(type(layer), layer.name, layer.inputs, layer.properties()) for layer in net.layers]


def _assert_same_network(loaded: Network, original: Network) -> None:
    assert loaded.name == original.name
    assert _topology(loaded) == _topology(original)
    for got, want in zip(loaded.layers, original.layers):
        assert list(got.params()) == list(want.params())
        for param_name, array in want.params().items():
            assert got.params()[param_name].dtype == array.dtype, (got.name, param_name)
            assert np.array_equal(got.params()[param_name], array), (got.name, param_name)


def _saved(tmp_path: Path, rng: np.random.Generator, builder: Callable = series_2d) -> Path:
    path = tmp_path / "net.h5"
    refcam.io.save(builder(rng), path)
    return path


def _edit(path: Path, change: Callable[[h5py.File], None]) -> Path:
    with h5py.File(path, "r+") as f:
        change(f)
    return path


def _edit_topology(path: Path, change: Callable[[dict], None]) -> Path:
    def rewrite(f: h5py.File) -> None:
        topology = json.loads(f.attrs["topology"])
        change(topology)
        f.attrs["topology"] = json.dumps(topology)
    return _edit(path, rewrite)


def _entry(topology: dict, name: str) -> dict:
    return next(entry for entry in topology["layers"] if entry["name"] == name)


def _replace_dataset(path: Path, where: str, data: Any, **kwargs: Any) -> Path:
    def replace(f: h5py.File) -> None:
        del f[where]
        f.create_dataset(where, data=data, **kwargs)
    return _edit(path, replace)


# --- round trips ---------------------------------------------------------------------------
@pytest.mark.parametrize("builder", list(NETWORKS.values()), ids=list(NETWORKS))
def test_round_trip_is_bit_exact(tmp_path: Path, rng: np.random.Generator, builder: Callable) -> None:
    original = builder(rng)
    path = tmp_path / "net.h5"
    refcam.io.save(original, path)
    loaded = refcam.io.load(path)
    _assert_same_network(loaded, original)
    again = tmp_path / "again.h5"
    refcam.io.save(loaded, again)
    assert path.read_bytes() == again.read_bytes()


def test_round_trip_predicts_the_same(tmp_path: Path, rng: np.random.Generator) -> None:
    original = series_2d(rng)
    refcam.io.save(original, tmp_path / "net.h5")
    image = rng.standard_normal((6, 6, 2))
    assert np.array_equal(refcam.io.load(tmp_path / "net.h5").predict(image), original.predict(image))


def test_saving_is_deterministic_across_time(tmp_path: Path, rng: np.random.Generator) -> None:
    net = dag_2d(rng)
    refcam.io.save(net, tmp_path / "first.h5")
    time.sleep(1.1)  # HDF5 object timestamps have one-second resolution
    refcam.io.save(net, tmp_path / "second.h5")
    assert (tmp_path / "first.h5").read_bytes() == (tmp_path / "second.h5").read_bytes()


def test_file_layout_matches_the_documented_schema(tmp_path: Path, rng: np.random.Generator) -> None:
    path = _saved(tmp_path, rng, dag_2d)
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "refcam-network"
        assert f.attrs["schema_version"] == 1 and f.attrs["schema_version"].dtype.kind == "i"
        assert f.attrs["refcam_version"] == refcam.__version__
        assert f.attrs["name"] == "dag"
        topology = json.loads(f.attrs["topology"])
        assert [entry["name"] for entry in topology["layers"]] == dag_2d(rng).layer_names
        assert all(list(entry) == ["name", "kind", "inputs", "properties"] for entry in topology["layers"])
        assert _entry(topology, "classoutput")["properties"]["classes"] == ["a/b", "c%d"]
        assert list(f) == ["weights"]
        assert list(f["weights"]) == ["fire%2Fsqueeze", "fire%2Fexpand1x1", "fire%2Fexpand3x3 100%25",
                                      "res", "fc"]
        assert list(f["weights/fire%2Fsqueeze"]) == ["weights"]
        assert f[dataset_path("fire/expand3x3 100%", "weights")].shape == (2, 2, 3, 3)


def test_group_names_escape_slash_and_percent() -> None:
    assert group_name("conv1") == "conv1"
    assert group_name("a/b%c") == "a%2Fb%25c"
    assert group_name("%2F") == "%252F"
    assert group_name(".") == "%2E"
    assert dataset_path("a/b", "bias") == "/weights/a%2Fb/bias"


def test_matlab_style_file_loads(tmp_path: Path, rng: np.random.Generator) -> None:
    """Fixed-length ASCII string attributes, an int32 schema version of shape (1,), big-endian compressed weights."""
    path = _saved(tmp_path, rng)
    original = refcam.io.load(path)

    def matlabify(f: h5py.File) -> None:
        for name in ("format", "refcam_version", "name", "topology"):
            text = f.attrs[name].encode("utf-8")
            f.attrs.create(name, np.bytes_(text), dtype=h5py.string_dtype("ascii", len(text)))
        f.attrs.create("schema_version", np.array([1], dtype=np.int32))
        weights = f["weights/conv/weights"][()]
        del f["weights/conv/weights"]
        f.create_dataset("weights/conv/weights", data=weights.astype(">f8"), compression="gzip")

    _edit(path, matlabify)
    loaded = refcam.io.load(path)
    _assert_same_network(loaded, original)
    assert loaded.layer("conv").weights.dtype == np.dtype("<f8")


def test_optional_datasets_may_be_absent(tmp_path: Path, rng: np.random.Generator) -> None:
    path = _edit(_saved(tmp_path, rng), lambda f: f.__delitem__("weights/fc/bias"))
    assert refcam.io.load(path).layer("fc").bias is None
    assert optional_params(L.Convolution2dLayer) == ("bias",)
    assert optional_params(L.BatchNormalizationLayer) == ()


def test_detect_format(tmp_path: Path, rng: np.random.Generator) -> None:
    assert refcam.io.detect_format(_saved(tmp_path, rng)) == "refcam"
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(FileFormatError, match=r"notes.txt is not a refcam network file: it is a text file"):
        refcam.io.detect_format(text)


# --- files that are not refcam networks ------------------------------------------------------
def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        refcam.io.load(tmp_path / "absent.h5")


@pytest.mark.parametrize("content, message", [
    (b"", "it is empty"),
    (b'{"layers": []}\n', "it is a text file"),
    (b"\x80\x04\x95 pickled", "pickle; refcam never unpickles"),
    (b"PK\x03\x04 zipped", "zip archive"),
    (b"MATLAB 5.0 MAT-file, Platform: GLNXA64", "MATLAB v5/v7 MAT-file"),
    (b"\x00\xff\x13\x88binary", "unknown binary format"),
])
def test_non_hdf5_files_are_named(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(content)
    with pytest.raises(FileFormatError, match=re.escape(message)):
        refcam.io.load(path)


@pytest.mark.parametrize("fraction", [0.3, 0.9])
def test_truncated_file(tmp_path: Path, rng: np.random.Generator, fraction: float) -> None:
    data = _saved(tmp_path, rng).read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[:int(len(data) * fraction)])
    with pytest.raises(FileFormatError, match="truncated or corrupt"):
        refcam.io.load(cut)


def test_missing_format_attribute(tmp_path: Path, rng: np.random.Generator) -> None:
    path = _edit(_saved(tmp_path, rng), lambda f: f.attrs.__delitem__("format"))
    with pytest.raises(FileFormatError, match="HDF5 file without a 'format' attribute"):
        refcam.io.load(path)


def test_wrong_format_value(tmp_path: Path, rng: np.random.Generator) -> None:
    path = _edit(_saved(tmp_path, rng), lambda f: f.attrs.__setitem__("format", "refcam-golden"))
    with pytest.raises(FileFormatError, match="'format' attribute is 'refcam-golden', not 'refcam-network'"):
        refcam.io.load(path)


def test_keras_file_is_recognised(tmp_path: Path) -> None:
    path = tmp_path / "model.h5"
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = "2.15.0"
        f.create_group("model_weights")
    with pytest.raises(FileFormatError, match="Keras HDF5 model"):
        refcam.io.load_refcam_hdf5(path)
    with pytest.raises(FileFormatError, match="'model_config'"):
        refcam.io.load(path)  # handed to the Keras importer, which finds no architecture


def test_matlab_v73_mat_file_is_recognised(tmp_path: Path) -> None:
    path = tmp_path / "net.mat"
    with h5py.File(path, "w", userblock_size=512) as f:
        f.create_dataset("net", data=np.zeros(3))
    with open(path, "r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Thu Jan  1 00:00:00 2026 HDF5 schema 1.00 .")
    with pytest.raises(FileFormatError, match="MATLAB v7.3 MAT-file"):
        refcam.io.load(path)


def test_corrupted_bytes_never_escape_as_other_exceptions(tmp_path: Path, rng: np.random.Generator) -> None:
    """Random byte damage either still loads (raw weight bytes have no checksum) or raises a RefcamError."""
    data = _saved(tmp_path, rng).read_bytes()
    damaged = tmp_path / "damaged.h5"
    failures = 0
    for _ in range(60):
        copy = bytearray(data)
        for position in rng.integers(0, len(copy), size=3):
            copy[position] = int(rng.integers(0, 256))
        damaged.write_bytes(bytes(copy))
        try:
            refcam.io.load(damaged)
        except RefcamError:
            failures += 1
    assert failures > 0


# --- schema version ----------------------------------------------------------------------------
@pytest.mark.parametrize("value, message", [
    (None, "'schema_version' is missing"),
    (np.int64(3), "newer refcam"),
    (np.int32(0), "not a valid refcam schema version"),
    (np.float64(1.0), "must be one integer"),
    ("1", "must be one integer"),
    (np.array([1, 1], dtype=np.int64), "must be one integer"),
])
def test_bad_schema_version(tmp_path: Path, rng: np.random.Generator, value: Any, message: str) -> None:
    def set_version(f: h5py.File) -> None:
        del f.attrs["schema_version"]
        if value is not None:
            f.attrs["schema_version"] = value
    path = _edit(_saved(tmp_path, rng), set_version)
    with pytest.raises(SchemaVersionError, match=message):
        refcam.io.load(path)


@pytest.mark.parametrize("attribute", ["refcam_version", "name", "topology"])
def test_missing_or_non_string_root_attribute(tmp_path: Path, rng: np.random.Generator, attribute: str) -> None:
    path = _edit(_saved(tmp_path, rng), lambda f: f.attrs.__delitem__(attribute))
    with pytest.raises(FileFormatError, match=f"root attribute '{attribute}' is missing"):
        refcam.io.load(path)
    path = _edit(path, lambda f: f.attrs.__setitem__(attribute, np.arange(3.0)))
    with pytest.raises(FileFormatError, match=f"root attribute '{attribute}' must be one string"):
        refcam.io.load(path)


# --- topology ------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    ('{"layers": [], "layers": []}', "duplicate keys"),
    ('{"layers": [{"name": "x", "kind": "relu", "inputs": [], "properties": {"scale": NaN}}]}',
     "NaN is not allowed"),
    ('[1, 2]', 'exactly the key \'layers\''),
    ('{"layers": [], "extra": 1}', "exactly the key 'layers'"),
    ('{"layers": []}', "lists no layers"),
    ('{"layers": ["relu"]}', "layer #0 must be an object"),
    ('{"layers": [{"name": "x", "kind": "relu", "inputs": []}]}', "found ['inputs', 'kind', 'name']"),
    ('{"layers": [{"name": "", "kind": "relu", "inputs": [], "properties": {}}]}', "non-empty string"),
    ('{"layers": [{"name": "x", "kind": 3, "inputs": [], "properties": {}}]}', "'kind' must be a string"),
    ('{"layers": [{"name": "x", "kind": "relu", "inputs": "y", "properties": {}}]}', "'inputs' must be a list"),
    ('{"layers": [{"name": "x", "kind": "relu", "inputs": [], "properties": []}]}', "'properties' must be"),
])
def test_malformed_topology(tmp_path: Path, rng: np.random.Generator, text: str, message: str) -> None:
    path = _edit(_saved(tmp_path, rng), lambda f: f.attrs.__setitem__("topology", text))
    with pytest.raises(FileFormatError, match=re.escape(message)):
        refcam.io.load(path)


def test_unknown_layer_kind(tmp_path: Path, rng: np.random.Generator) -> None:
    path = _edit_topology(_saved(tmp_path, rng), lambda t: _entry(t, "relu").__setitem__("kind", "mish"))
    with pytest.raises(UnknownLayerTypeError, match=r"layer 'relu' has kind 'mish'.*Known kinds: .*convolution2d"):
        refcam.io.load(path)


def test_unknown_property(tmp_path: Path, rng: np.random.Generator) -> None:
    path = _edit_topology(_saved(tmp_path, rng),
                          lambda t: _entry(t, "conv")["properties"].__setitem__("strides", 2))
    with pytest.raises(FileFormatError, match=r"layer 'conv' \(convolution2d\): unknown properties \['strides'\]; "
                                              r"valid properties are \['filter_size', 'num_filters', 'stride'"):
        refcam.io.load(path)


def test_missing_property_without_default(tmp_path: Path, rng: np.random.Generator) -> None:
    path = _edit_topology(_saved(tmp_path, rng), lambda t: _entry(t, "conv")["properties"].pop("num_filters"))
    with pytest.raises(FileFormatError, match=r"layer 'conv' .*properties \['num_filters'\] are missing"):
        refcam.io.load(path)


def test_missing_property_with_default_takes_the_default(tmp_path: Path, rng: np.random.Generator) -> None:
    path = _edit_topology(_saved(tmp_path, rng), lambda t: _entry(t, "bn")["properties"].pop("epsilon"))
    assert refcam.io.load(path).layer("bn").epsilon == 1e-5


def test_invalid_property_value_keeps_the_layer_error(tmp_path: Path, rng: np.random.Generator) -> None:
    path = _edit_topology(_saved(tmp_path, rng), lambda t: _entry(t, "pool")["properties"].__setitem__("stride", -1))
    with pytest.raises(LayerConfigError, match=r"net.h5: layer 'pool' .*stride -1 must hold integers >= 1"):
        refcam.io.load(path)


# --- network-level problems -----------------------------------------------------------------------
def test_cycle(tmp_path: Path, rng: np.random.Generator) -> None:
    path = _edit_topology(_saved(tmp_path, rng, dag_2d),
                          lambda t: _entry(t, "fire/squeeze").__setitem__("inputs", ["leaky"]))
    with pytest.raises(CycleError, match="cycle"):
        refcam.io.load(path)


def test_unknown_input(tmp_path: Path, rng: np.random.Generator) -> None:
    path = _edit_topology(_saved(tmp_path, rng), lambda t: _entry(t, "relu").__setitem__("inputs", ["ghost"]))
    with pytest.raises(UnknownInputError, match="ghost"):
        refcam.io.load(path)


def test_duplicate_layer_names(tmp_path: Path, rng: np.random.Generator) -> None:
    path = _edit_topology(_saved(tmp_path, rng), lambda t: _entry(t, "softmax").__setitem__("name", "relu"))
    with pytest.raises(DuplicateLayerNameError, match="two layers named 'relu'"):
        refcam.io.load(path)


# --- weights ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("layer, param", [("conv", "weights"), ("bn", "scale"), ("input", "mean")])
def test_missing_dataset(tmp_path: Path, rng: np.random.Generator, layer: str, param: str) -> None:
    path = _edit(_saved(tmp_path, rng), lambda f: f.__delitem__(dataset_path(layer, param)))
    with pytest.raises(MissingDatasetError, match=rf"layer '{layer}'.*dataset /weights/{layer}/{param} is missing"):
        refcam.io.load(path)


def test_missing_weights_group(tmp_path: Path, rng: np.random.Generator) -> None:
    path = _edit(_saved(tmp_path, rng), lambda f: f.__delitem__("weights"))
    with pytest.raises(FileFormatError, match="group /weights is missing"):
        refcam.io.load(path)


@pytest.mark.parametrize("where, message", [
    ("weights/conv/extra", r"unexpected dataset /weights/conv/extra: layer 'conv' \(convolution2d\) has the "
                           r"parameters \['weights', 'bias'\]"),
    ("weights/relu/weights", r"unexpected dataset /weights/relu/weights: layer 'relu' \(relu\) has the parameters \[\]"),
    ("weights/ghost/weights", "unexpected group /weights/ghost"),
    ("weights/fire/squeeze/weights", "unexpected group /weights/fire"),
    ("extra", "unexpected object /extra at the root"),
])
def test_unexpected_objects(tmp_path: Path, rng: np.random.Generator, where: str, message: str) -> None:
    path = _edit(_saved(tmp_path, rng), lambda f: f.create_dataset(where, data=np.zeros(3)))
    with pytest.raises(FileFormatError, match=message):
        refcam.io.load(path)


def test_wrong_shape_seen_by_the_layer(tmp_path: Path, rng: np.random.Generator) -> None:
    path = _replace_dataset(_saved(tmp_path, rng), "weights/conv/weights", np.zeros((3, 3, 2, 4)))
    with pytest.raises(WeightShapeError, match=r"net.h5: layer 'conv'.*shape \(3, 3, 2, 4\); expected \(4, 2, 3, 3\)"
                                               r".*/weights/conv/weights \(3, 3, 2, 4\) float64"):
        refcam.io.load(path)


def test_wrong_shape_seen_by_shape_inference(tmp_path: Path, rng: np.random.Generator) -> None:
    """Without the optional input_size property only the network's shape inference sees the mismatch."""
    path = _edit_topology(_saved(tmp_path, rng), lambda t: _entry(t, "fc")["properties"].pop("input_size"))
    path = _replace_dataset(path, "weights/fc/weights", np.zeros((3, 35)))
    with pytest.raises(WeightShapeError, match=r"'fc'.*expects 35 input values.*found shape \(4, 3, 3\) = 36"
                                               r".*/weights/fc/weights \(3, 35\)"):
        refcam.io.load(path)


def test_channel_mismatch_between_layers(tmp_path: Path, rng: np.random.Generator) -> None:
    path = _edit_topology(_saved(tmp_path, rng), lambda t: _entry(t, "conv")["properties"].pop("num_channels"))
    path = _replace_dataset(path, "weights/conv/weights", np.zeros((4, 3, 3, 3)))
    with pytest.raises(WeightShapeError, match=r"'conv'.*expects 3 input channels; found 2.*/weights/conv/weights"):
        refcam.io.load(path)


@pytest.mark.parametrize("data, kind", [
    (np.ones((4, 2, 3, 3), dtype=np.int32), "int32"),
    (np.ones((4, 2, 3, 3), dtype=np.uint8), "uint8"),
    (np.ones((4, 2, 3, 3), dtype=bool), "bool"),
    (np.ones((4, 2, 3, 3), dtype=np.complex128), "complex128"),
    (np.ones((4, 2, 3, 3), dtype=np.float16), "float16"),
])
def test_non_float_weights(tmp_path: Path, rng: np.random.Generator, data: np.ndarray, kind: str) -> None:
    path = _replace_dataset(_saved(tmp_path, rng), "weights/conv/weights", data)
    with pytest.raises(WeightShapeError, match=rf"/weights/conv/weights has dtype {kind}.*float32 or float64"):
        refcam.io.load(path)


@pytest.mark.parametrize("data, dtype", [
    (np.array(["a", "b"], dtype=object), h5py.string_dtype()),
    (np.array([(1.0, 2.0)], dtype=[("re", "f8"), ("im", "f4")]), None),
    (np.array([np.arange(2.0), np.arange(3.0)], dtype=object), h5py.vlen_dtype(np.float64)),
])
def test_non_numeric_weights_are_refused(tmp_path: Path, rng: np.random.Generator, data: Any, dtype: Any) -> None:
    path = _replace_dataset(_saved(tmp_path, rng), "weights/fc/bias", data, dtype=dtype)
    with pytest.raises(FileFormatError, match=r"/weights/fc/bias has the HDF5 type class (STRING|COMPOUND|VLEN)"):
        refcam.io.load(path)


UNPICKLED: list[str] = []


def _record_unpickling(tag: str) -> str:
    UNPICKLED.append(tag)
    return tag


class _Trap:
    """Unpickling this object calls ``_record_unpickling``: any code path that unpickles is caught."""

    def __reduce__(self) -> tuple[Callable, tuple[str]]:
        return _record_unpickling, ("unpickled",)


def test_pickled_objects_are_never_unpickled(tmp_path: Path, rng: np.random.Generator) -> None:
    payload = pickle.dumps(_Trap())
    path = _replace_dataset(_saved(tmp_path, rng), "weights/fc/bias", np.void(payload))
    with pytest.raises(FileFormatError, match=r"/weights/fc/bias has the HDF5 type class OPAQUE"):
        refcam.io.load(path)
    as_bytes = np.empty(1, dtype=object)
    as_bytes[0] = np.frombuffer(payload, dtype=np.uint8)
    path = _replace_dataset(path, "weights/fc/bias", as_bytes, dtype=h5py.vlen_dtype(np.uint8))
    with pytest.raises(FileFormatError, match="VLEN"):
        refcam.io.load(path)
    path = _edit(path, lambda f: f.attrs.__setitem__("topology", np.void(payload)))
    with pytest.raises(FileFormatError, match="'topology' must be one string"):
        refcam.io.load(path)
    assert UNPICKLED == []


def test_non_finite_weights(tmp_path: Path, rng: np.random.Generator) -> None:
    bias = np.array([0.0, np.nan, np.inf])
    path = _replace_dataset(_saved(tmp_path, rng), "weights/fc/bias", bias)
    with pytest.raises(FileFormatError, match=r"/weights/fc/bias holds 2 NaN or Inf value\(s\) of 3"):
        refcam.io.load(path)


def test_links_are_refused(tmp_path: Path, rng: np.random.Generator) -> None:
    def soft(f: h5py.File) -> None:
        del f["weights/fc/bias"]
        f["weights/fc/bias"] = h5py.SoftLink("/weights/conv/bias")
    path = _edit(_saved(tmp_path, rng), soft)
    with pytest.raises(FileFormatError, match="/weights/fc/bias is a soft link"):
        refcam.io.load(path)

    def external(f: h5py.File) -> None:
        del f["weights/fc/bias"]
        f["weights/fc/bias"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/bias")
    path = _edit(path, external)
    with pytest.raises(FileFormatError, match="/weights/fc/bias is an external link"):
        refcam.io.load(path)


def test_external_storage_is_refused(tmp_path: Path, rng: np.random.Generator) -> None:
    raw = tmp_path / "bias.raw"
    raw.write_bytes(np.zeros(3).tobytes())
    path = _saved(tmp_path, rng)
    with h5py.File(path, "r+") as f:
        del f["weights/fc/bias"]
        f.create_dataset("weights/fc/bias", shape=(3,), dtype="f8", external=[(str(raw), 0, 24)])
    with pytest.raises(FileFormatError, match="outside the file"):
        refcam.io.load(path)


# --- saving ------------------------------------------------------------------------------------------
def test_save_refuses_parameters_it_could_not_load(tmp_path: Path, rng: np.random.Generator) -> None:
    net = series_2d(rng)
    net.layer("fc").bias = np.array([1.0, np.nan, 0.0])
    with pytest.raises(ValueError, match=r"layer 'fc' \(fully_connected\) parameter 'bias' holds NaN or Inf"):
        refcam.io.save(net, tmp_path / "net.h5")
    net.layer("fc").bias = np.array([1, 2, 3])
    with pytest.raises(TypeError, match=r"parameter 'bias' has dtype int64"):
        refcam.io.save(net, tmp_path / "net.h5")


# --- the format document -------------------------------------------------------------------------------
def _documented_kinds() -> dict[str, tuple[list[str], list[str]]]:
    """``{kind: (parameters, properties)}`` from the table of docs/hdf5-format.md."""
    text = DOCS.read_text(encoding="utf-8")
    section = text[text.index("## 4. Layer kinds"):text.index("## 5. ")]
    rows = re.findall(r"^\| `([a-z0-9_]+)` \|[^|]*\|([^|]*)\|([^|]*)\|", section, re.M)
    return {kind: (re.findall(r"`([a-z_]+)`", params), re.findall(r"`([a-z_]+)`", props))
            for kind, props, params in rows}


def test_document_lists_every_layer_kind() -> None:
    documented = _documented_kinds()
    assert sorted(documented) == sorted(L.LAYER_KINDS)
    for kind, cls in L.LAYER_KINDS.items():
        params, props = documented[kind]
        assert params == list(cls.param_names()), kind
        assert props == list(cls.property_names()), kind


def test_document_examples_write_a_loadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The h5py example of docs/hdf5-format.md runs and writes a file refcam loads."""
    code = re.search(r"```python\n(# write-example\n.*?)```", DOCS.read_text(encoding="utf-8"), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(DOCS), "exec"), {})  # the documentation's own example, not file content
    net = refcam.io.load(tmp_path / "tiny.h5")
    assert net.layer_names == ["input", "conv", "bn", "relu", "pool", "fc", "softmax", "output"]
    assert net.classes == ["cat", "dog", "fish"]
