"""refcam.golden: golden-output files (X1) round trip bit for bit; malformed files give specific errors."""
from __future__ import annotations

import re
import shutil

import h5py
import numpy as np
import pytest

import refcam
from refcam import golden
from refcam.cam.conventions import gradcam_as
from refcam.errors import FileFormatError, MissingDatasetError, RefcamError, SchemaVersionError
from refcam.golden import GoldenDtypeError, GoldenShapeError
from tests.cam import nets

ARRAY_FIELDS = ("input", "input_internal", "activations", "gradients", "weights", "scores", "raw_map", "map",
                "labels", "mask")
TEXT_FIELDS = ("feature_layer", "reduction_layer", "reduction", "reduction_source", "convention", "dtype",
               "map_axes", "options", "refcam_version", "numpy_version", "h5py_version", "python_version",
               "platform")


def regression_score(y):
    return y.sum() * 2.0


def make_case(kind, rng):
    """(net, x, label, options) for one golden configuration."""
    if kind == "classifier-labels":
        return nets.classifier_2d(rng), rng.uniform(0.0, 1.0, (8, 8, 3)), ["cat", 2], {}
    if kind == "batch-float32-uint8":
        x = rng.integers(0, 255, (8, 8, 3, 2)).astype(np.uint8)
        return nets.classifier_2d(rng), x, "dog", {"format": "SSCB", "dtype": "float32"}
    if kind == "segmentation-mask":
        mask = np.zeros((6, 6), dtype=bool)
        mask[1:4, 2:5] = True
        return nets.segmentation_2d(rng), rng.uniform(0.0, 1.0, (6, 6, 2)), "road", {"mask": mask}
    if kind == "regression-custom":
        return (nets.regression_2d(rng), rng.uniform(0.0, 1.0, (8, 8)), None,
                {"reduction": regression_score, "feature_layer": "relu_2", "reduction_layer": "fc"})
    if kind == "sequence-nearest":
        return nets.sequence_1d(rng), rng.standard_normal((4, 7)), "2", {"upsampling": "nearest"}
    if kind == "pytorch-grad-cam-3d":
        return nets.volume_3d(rng), rng.uniform(0.0, 1.0, (6, 6, 6)), "b", {"convention": "pytorch-grad-cam"}
    raise AssertionError(kind)


CASES = ("classifier-labels", "batch-float32-uint8", "segmentation-mask", "regression-custom",
         "sequence-nearest", "pytorch-grad-cam-3d")


def assert_same_golden(written, read_back):
    for name in ARRAY_FIELDS:
        a, b = getattr(written, name), getattr(read_back, name)
        if a is None or b is None:
            assert a is None and b is None, name
            continue
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert np.array_equal(a, b), name  # bit for bit: finite values, so equality is exact
    for name in TEXT_FIELDS:
        assert getattr(written, name) == getattr(read_back, name), name
    assert written.network.layer_names == read_back.network.layer_names
    for layer in written.network.layers:
        twin = read_back.network.layer(layer.name)
        for param, value in layer.params().items():
            assert np.array_equal(np.asarray(value), np.asarray(twin.params()[param])), (layer.name, param)


@pytest.mark.parametrize("kind", CASES)
def test_round_trip_is_bit_for_bit(kind, rng, tmp_path):
    net, x, label, options = make_case(kind, rng)
    path = tmp_path / "case.golden.h5"
    written = golden.write(path, net, x, label, **options)
    read_back = golden.read(path)
    assert_same_golden(written, read_back)
    assert read_back.path == str(path)


@pytest.mark.parametrize("kind", CASES)
def test_golden_holds_what_gradcam_returns(kind, rng, tmp_path):
    net, x, label, options = make_case(kind, rng)
    convention = options.pop("convention", "matlab")
    reduction = options.pop("reduction", None)
    expected = gradcam_as(convention, net, x, label, reduction=reduction, **options)
    stored = golden.write(tmp_path / "g.h5", net, x, label, reduction=reduction, convention=convention, **options)
    for name in ("activations", "gradients", "weights", "scores", "raw_map", "map"):
        assert np.array_equal(getattr(stored, name), getattr(expected, name)), name
    assert stored.feature_layer == expected.feature_layer
    assert stored.reduction_layer == expected.reduction_layer
    assert stored.input.dtype == np.asarray(x).dtype and np.array_equal(stored.input, x)
    assert stored.input_internal.dtype == np.dtype(options.get("dtype", "float64"))


@pytest.mark.parametrize("kind", ["classifier-labels", "segmentation-mask", "pytorch-grad-cam-3d"])
def test_recompute_reproduces_the_file(kind, rng, tmp_path):
    net, x, label, options = make_case(kind, rng)
    golden.write(tmp_path / "g.h5", net, x, label, **options)
    again = golden.read(tmp_path / "g.h5").recompute()
    stored = golden.read(tmp_path / "g.h5")
    assert np.array_equal(again.map, stored.map) and np.array_equal(again.gradients, stored.gradients)


def test_custom_reduction_keeps_its_source_for_reading_only(rng, tmp_path):
    net, x, label, options = make_case("regression-custom", rng)
    stored = golden.write(tmp_path / "g.h5", net, x, label, **options)
    read_back = golden.read(tmp_path / "g.h5")
    assert read_back.reduction == "custom" and read_back.labels is None
    assert "def regression_score" in read_back.reduction_source and "y.sum() * 2.0" in read_back.reduction_source
    assert stored.options["label"] is None
    with pytest.raises(RefcamError, match="custom reduction"):
        read_back.recompute()


def test_attributes_describe_the_run(rng, tmp_path):
    net, x, label, options = make_case("batch-float32-uint8", rng)
    golden.write(tmp_path / "g.h5", net, x, label, **options)
    stored = golden.read(tmp_path / "g.h5")
    assert stored.options == {"label": "dog", "convention": "matlab", "mask": False, "format": "SSCB",
                              "dtype": "float32", "device": "cpu"}
    assert stored.dtype == "float32" and stored.map_axes == "SSB" and stored.map.shape == (8, 8, 2)
    assert stored.refcam_version == refcam.__version__ and stored.numpy_version == np.__version__
    assert stored.h5py_version == h5py.__version__ and "endian" in stored.platform
    assert stored.labels.tolist() == [1]


def test_writing_is_deterministic(rng, tmp_path):
    net, x, label, options = make_case("classifier-labels", rng)
    golden.write(tmp_path / "a.h5", net, x, label, **options)
    golden.write(tmp_path / "b.h5", net, x, label, **options)
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()


def test_map_axes():
    assert golden.map_axes("SSC", stacked=False) == "SS"
    assert golden.map_axes("SSSCB", stacked=True) == "SSSKB"
    assert golden.map_axes("CT", stacked=False) == "1T"


def test_write_rejects_unknown_convention(rng, tmp_path):
    net, x, label, _ = make_case("classifier-labels", rng)
    with pytest.raises(RefcamError, match="convention"):
        golden.write(tmp_path / "g.h5", net, x, label, convention="gradcam++")


# --- malformed files ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("golden") / "good.h5"
    rng = np.random.default_rng(7)
    golden.write(path, nets.classifier_2d(rng), rng.uniform(0.0, 1.0, (8, 8, 3)), ["cat", "fox"])
    return path


def mutated(good_file, tmp_path, change):
    path = tmp_path / "bad.h5"
    shutil.copy(good_file, path)
    with h5py.File(path, "r+") as f:
        change(f)
    return path


def replace_dataset(name, data):
    def change(f):
        if name in f:
            del f[name]
        f.create_dataset(name, data=data)
    return change


def set_attribute(name, value):
    def change(f):
        f.attrs[name] = value
    return change


def delete(name):
    def change(f):
        del f[name]
    return change


def delete_attribute(name):
    def change(f):
        del f.attrs[name]
    return change


MALFORMED = {
    "wrong format": (set_attribute("format", "refcam-fixture-golden"), FileFormatError, "not 'refcam-golden'"),
    "newer schema": (set_attribute("schema_version", np.int64(3)), SchemaVersionError, "newer refcam"),
    "a method in version 1": (set_attribute("method", "hirescam"), FileFormatError, "belongs to schema_version 2"),
    "schema as text": (set_attribute("schema_version", "1"), SchemaVersionError, "one integer"),
    "no schema": (delete_attribute("schema_version"), SchemaVersionError, "missing"),
    "no feature layer": (delete_attribute("feature_layer"), FileFormatError, "'feature_layer' is missing"),
    "numeric dtype attribute": (set_attribute("dtype", np.int64(64)), GoldenDtypeError, "'dtype' must be one string"),
    "bad dtype attribute": (set_attribute("dtype", "float16"), FileFormatError, "'dtype' is 'float16'"),
    "bad convention": (set_attribute("convention", "gradcam++"), FileFormatError, "'convention'"),
    "options not JSON": (set_attribute("options", "{label: cat}"), FileFormatError, "not valid JSON"),
    "options with NaN": (set_attribute("options", '{"label": NaN}'), FileFormatError, "not valid JSON"),
    "options a list": (set_attribute("options", "[1, 2]"), FileFormatError, "JSON object"),
    "options incomplete": (set_attribute("options", '{"label": "cat"}'), FileFormatError, "lacks the keys"),
    "missing gradients": (delete("gradients"), MissingDatasetError, "/gradients is missing"),
    "missing network": (delete("network"), MissingDatasetError, "/network is missing"),
    "extra member": (replace_dataset("notes", np.zeros(3)), FileFormatError, "unexpected objects"),
    "weights wrong shape": (replace_dataset("weights", np.zeros((2, 1, 4))), GoldenShapeError, "/weights has shape"),
    "scores wrong shape": (replace_dataset("scores", np.zeros((3, 1))), GoldenShapeError, "/scores has shape"),
    "labels wrong count": (replace_dataset("labels", np.zeros(3, np.int64)), GoldenShapeError, "/labels"),
    "activations flat": (replace_dataset("activations", np.zeros((1, 5))), GoldenShapeError, "(B, C, *S)"),
    "raw map wrong size": (replace_dataset("raw_map", np.zeros((3, 3, 2))), GoldenShapeError, "/raw_map"),
    "map axes mismatch": (set_attribute("map_axes", "SS"), GoldenShapeError, "map_axes"),
    "map float32": (replace_dataset("map", np.zeros((8, 8, 2), np.float32)), GoldenDtypeError, "/map is float32"),
    "map as strings": (replace_dataset("map", np.array([b"a", b"b"])), GoldenDtypeError, "must be float"),
    "labels as floats": (replace_dataset("labels", np.array([0.0, 2.0])), GoldenDtypeError, "must be integer"),
    "map with NaN": (replace_dataset("map", np.full((8, 8, 2), np.nan)), FileFormatError, "NaN or Inf"),
    "custom with labels": (set_attribute("reduction", "custom"), FileFormatError, "/labels is present"),
    "unknown feature layer": (set_attribute("feature_layer", "conv_9"), FileFormatError, "not a layer"),
    "network weight missing": (delete("network/weights/fc/weights"), MissingDatasetError, "fc"),
    "external link": (lambda f: (f.__delitem__("map"), f.__setitem__("map", h5py.ExternalLink("x.h5", "/m"))),
                      FileFormatError, "an external link"),
    "group instead of dataset": (lambda f: (f.__delitem__("map"), f.create_group("map")), FileFormatError,
                                 "not a Dataset"),
    # issue 11: goldens that do not fit their network
    "label 99": (replace_dataset("labels", np.array([0, 99])), GoldenShapeError, "outside 0..2"),
    "label -5": (replace_dataset("labels", np.array([-5, 2])), GoldenShapeError, "/labels holds [-5]"),
    "empty map": (replace_dataset("map", np.zeros((0, 13))), GoldenShapeError, "/map has shape (0, 13)"),
    "raw map extra axis": (replace_dataset("raw_map", np.zeros((4, 4, 2, 1))), GoldenShapeError,
                           "expected (4, 4, 2) = map_axes at S"),
    "map axes XYZ": (set_attribute("map_axes", "XYZ"), GoldenShapeError, "map_axes is 'XYZ'"),
    "feature layer not the activations'": (set_attribute("feature_layer", "gap"), GoldenShapeError,
                                           "/activations has shape (1, 5, 4, 4), expected (1, 5, 1, 1)"),
    "feature layer without spatial axes": (set_attribute("feature_layer", "fc"), GoldenShapeError,
                                           "no spatial or time axis"),
    "input internal wrong size": (replace_dataset("input_internal", np.zeros((1, 3, 9, 9))), GoldenShapeError,
                                  "/input_internal has shape (1, 3, 9, 9)"),
    "input wrong size": (replace_dataset("input", np.zeros((8, 8, 4))), GoldenShapeError, "same input"),
    "options format junk": (lambda f: f.attrs.__setitem__("options", f.attrs["options"].replace(
        '"format": "SSC"', '"format": "XYZ"')), GoldenShapeError, "options['format']"),
    "options convention differs": (lambda f: f.attrs.__setitem__("options", f.attrs["options"].replace(
        '"convention": "matlab"', '"convention": "captum"')), FileFormatError, "record the same call"),
    "soft link at the root": (lambda f: (f.__delitem__("map"), f.__setitem__("map", h5py.SoftLink("/raw_map"))),
                              FileFormatError, "a soft link"),
    "huge map never written": (lambda f: (f.__delitem__("map"), f.create_dataset("map", shape=(10 ** 8,), dtype="f8",
                                                                                 chunks=(1024,))),
                               FileFormatError, "never written"),
    "huge map over the budget": (lambda f: (f.__delitem__("map"), f.create_dataset("map", shape=(10 ** 12,), dtype="f8",
                                                                                   chunks=(1024,))),
                                 FileFormatError, "max_tensor_bytes"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_files_raise_specific_errors(case, good_file, tmp_path):
    change, error, message = MALFORMED[case]
    with pytest.raises(error, match=re.escape(message)):
        golden.read(mutated(good_file, tmp_path, change))


def test_good_file_reads(good_file):
    assert golden.read(good_file).labels.tolist() == [0, 2]


def test_not_a_golden_file(tmp_path, good_file, rng):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(FileFormatError, match="text file"):
        golden.read(text)
    network = tmp_path / "net.h5"
    refcam.save(nets.classifier_2d(rng), network)
    with pytest.raises(FileFormatError, match="network file, not a golden"):
        golden.read(network)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good_file.read_bytes()[:3000])
    with pytest.raises(FileFormatError):
        golden.read(truncated)
    with pytest.raises(FileNotFoundError):
        golden.read(tmp_path / "missing.h5")
