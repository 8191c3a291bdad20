"""Golden files sized for CI: the network stored compactly (exactly) and by SHA-256, or named instead of embedded.

The network (1.5 MB in float64) has float64 weights that are all float32 numbers, as
an import of a float32 model gives, so the compact storage must store them as
float32 and give back the float64 arrays bit for bit.
"""
from __future__ import annotations

import os
import shutil

import h5py
import numpy as np
import pytest

import refcam
import refcam.golden
from refcam import cli
from refcam.errors import ExternalReferenceError, FileFormatError, RefcamError
from refcam.golden import GoldenNetworkError, file_sha256
from refcam.layers import Convolution2dLayer, FullyConnectedLayer, ImageInputLayer, ReLULayer
from refcam.network import Network

OPTIONS = {"feature_layer": "relu2", "format": "SSC"}


def float32_numbers(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return (0.1 * rng.standard_normal(shape)).astype(np.float32).astype(np.float64)


def sized_net(seed: int = 0) -> Network:
    """16x16x3 -> conv 3x3x32 -> relu -> conv 3x3x64 -> relu2 -> fc 10: about 1.5 MB of float64 weights."""
    rng = np.random.default_rng(seed)
    return Network([
        ImageInputLayer(name="in", input_size=(16, 16, 3), normalization="none"),
        Convolution2dLayer(name="conv1", filter_size=3, num_filters=32, padding="same",
                           weights=float32_numbers(rng, 32, 3, 3, 3), bias=float32_numbers(rng, 32)),
        ReLULayer(name="relu1"),
        Convolution2dLayer(name="conv2", filter_size=3, num_filters=64, padding="same",
                           weights=float32_numbers(rng, 64, 32, 3, 3), bias=float32_numbers(rng, 64)),
        ReLULayer(name="relu2"),
        FullyConnectedLayer(name="fc", output_size=10, weights=float32_numbers(rng, 10, 64 * 16 * 16),
                            bias=float32_numbers(rng, 10)),
    ], name="sized")


X = np.random.default_rng(1).uniform(0.0, 1.0, (16, 16, 3))


@pytest.fixture
def network_file(tmp_path) -> str:
    path = str(tmp_path / "net.h5")
    refcam.save(sized_net(), path)
    return path


def parameters(net: refcam.network.Network) -> dict[tuple[str, str], np.ndarray]:
    return {(layer.name, name): np.asarray(value) for layer in net.layers for name, value in layer.params().items()}


def test_compact_save_gives_back_every_parameter_bit_for_bit(tmp_path) -> None:
    net = sized_net()
    net.layers[1].weights = net.layers[1].weights + 1e-12          # one parameter float32 cannot hold
    plain, compact = tmp_path / "plain.h5", tmp_path / "compact.h5"
    refcam.save(net, plain)
    refcam.save(net, compact, compact=True)
    back = parameters(refcam.load(compact))
    for key, value in parameters(net).items():
        assert back[key].dtype == value.dtype and np.array_equal(back[key], value), key
    assert os.path.getsize(compact) < 0.6 * os.path.getsize(plain)
    with h5py.File(compact, "r") as f:
        stored = {name: f["weights"][name] for name in f["weights"]}
        widened = stored[refcam.io.hdf5.group_name(net.layers[1].name)]["weights"]
        assert widened.dtype == np.float64 and "dtype" not in widened.attrs
        narrowed = [d for g in stored.values() for d in g.values() if d.dtype == np.float32]
        assert len(narrowed) == 5 and all(d.attrs["dtype"] == "float64" for d in narrowed)
        assert stored["fc"]["weights"].compression == "gzip" and stored["fc"]["bias"].compression is None
    again = tmp_path / "again.h5"
    refcam.save(net, again, compact=True)
    assert again.read_bytes() == compact.read_bytes()


@pytest.mark.parametrize("value, dtype", [("float16", np.float32), ("float64", np.float64)])
def test_a_wrong_dtype_mark_is_refused(tmp_path, value, dtype) -> None:
    path = tmp_path / "marked.h5"
    refcam.save(sized_net(), path, compact=True)
    with h5py.File(path, "r+") as f:
        group = f["weights"][list(f["weights"])[0]]
        name = list(group)[0]
        data = group[name][()].astype(dtype)
        del group[name]
        group.create_dataset(name, data=data).attrs["dtype"] = value
    with pytest.raises(FileFormatError, match="the attribute is only 'float64', on float32"):
        refcam.load(path)


def test_an_embedded_golden_is_compact_exact_and_names_its_network_by_hash(tmp_path, network_file) -> None:
    net = refcam.load(network_file)
    path = tmp_path / "embedded.golden.h5"
    written = refcam.golden.write(path, net, X, 1, **OPTIONS)
    assert written.network_file is None and len(written.network_sha256) == 64
    assert os.path.getsize(path) < 0.6 * os.path.getsize(network_file)
    golden = refcam.golden.read(path)
    assert golden.network_sha256 == written.network_sha256
    back = parameters(golden.network)
    assert all(np.array_equal(back[key], value) and back[key].dtype == value.dtype
               for key, value in parameters(net).items())
    np.testing.assert_array_equal(golden.recompute().raw_map, golden.raw_map)


@pytest.fixture
def referencing(tmp_path) -> tuple[str, str]:
    """A golden written with network_file=: (its path, the network file beside it)."""
    network = str(tmp_path / "unet.h5")
    refcam.save(sized_net(), network)
    path = str(tmp_path / "named.golden.h5")
    refcam.golden.write(path, refcam.load(network), X, 1, network_file=network, **OPTIONS)
    return path, network


def test_a_referencing_golden_holds_no_network_and_reads_it_beside(referencing) -> None:
    path, network = referencing
    with h5py.File(path, "r") as f:
        assert "network" not in f and f.attrs["schema_version"] == 2
        assert f.attrs["network_file"] == "unet.h5" and f.attrs["network_sha256"] == file_sha256(network)
    assert os.path.getsize(path) < 0.2 * os.path.getsize(network)       # the intermediates only
    golden = refcam.golden.read(path)
    assert golden.network_file == "unet.h5"
    np.testing.assert_array_equal(golden.recompute().raw_map, golden.raw_map)
    assert refcam.compare(golden.map, path).passed


def test_a_referencing_golden_finds_a_moved_network_only_when_told(referencing, tmp_path) -> None:
    path, network = referencing
    moved = tmp_path / "elsewhere" / "renamed.h5"
    moved.parent.mkdir()
    shutil.move(network, moved)
    with pytest.raises(GoldenNetworkError, match="names its network file 'unet.h5'"):
        refcam.golden.read(path)
    assert refcam.golden.read(path, network_file=moved).network_file == "unet.h5"
    assert refcam.compare(refcam.golden.read(path, network_file=moved).map, path, network_file=moved).passed


def test_another_network_file_is_refused_by_its_hash(referencing) -> None:
    path, network = referencing
    other = refcam.load(network)
    other.layers[1].weights = other.layers[1].weights * 2.0
    refcam.save(other, network)
    with pytest.raises(GoldenNetworkError, match="SHA-256"):
        refcam.golden.read(path)


@pytest.mark.parametrize("name", ["../unet.h5", "sub/unet.h5", "/etc/passwd", "..", ""])
def test_a_network_name_with_a_folder_is_refused(referencing, name) -> None:
    path, _ = referencing
    with h5py.File(path, "r+") as f:
        f.attrs["network_file"] = name
    with pytest.raises(ExternalReferenceError, match="plain file name"):
        refcam.golden.read(path)


def test_a_symbolic_link_leaving_the_folder_is_refused(referencing, tmp_path) -> None:
    path, network = referencing
    outside = tmp_path.parent / f"{tmp_path.name}_outside.h5"
    shutil.move(network, outside)
    os.symlink(outside, network)
    try:
        with pytest.raises(ExternalReferenceError, match="outside the golden's folder"):
            refcam.golden.read(path)
    finally:
        outside.unlink()


def test_a_network_file_that_is_not_the_network_is_refused_when_writing(tmp_path, network_file) -> None:
    other = tmp_path / "other.h5"
    refcam.save(sized_net(seed=2), other)
    with pytest.raises(RefcamError, match="does not load to the network given"):
        refcam.golden.write(tmp_path / "g.h5", refcam.load(network_file), X, 1, network_file=other, **OPTIONS)


def test_the_command_line_writes_and_compares_a_referencing_golden(tmp_path, network_file, capsys) -> None:
    network = tmp_path / "net.h5"
    image = tmp_path / "x.npy"
    np.save(image, X)
    path = tmp_path / "x.golden.h5"
    assert cli.main(["golden", str(network), str(image), "-o", str(path), "--no-network", "--label", "1",
                     "--feature-layer", "relu2"]) == 0
    assert "network not embedded" in capsys.readouterr().out
    golden = refcam.golden.read(path)
    np.save(tmp_path / "map.npy", golden.map)
    moved = tmp_path / "moved.h5"
    shutil.move(network, moved)
    assert cli.main(["compare", str(path), str(tmp_path / "map.npy"), "--network", str(moved)]) == 0
