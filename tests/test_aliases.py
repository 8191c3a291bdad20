"""Network aliases: other names for layers, resolved by every lookup, kept by save/load, to_device and fusion."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

import refcam
from refcam.errors import FileFormatError, LayerNotFoundError, NetworkError
from refcam.fusion import fuse_batchnorm
from refcam.layers import (BatchNormalizationLayer, Convolution2dLayer, FullyConnectedLayer, ImageInputLayer,
                           ReLULayer)
from refcam.network import Network

ALIASES = {"block": "relu", "stem": "bn"}


def small_net(rng, aliases=ALIASES) -> Network:
    """input 6x6x2 -> conv -> bn -> relu -> fc (3 outputs)."""
    layers = [
        ImageInputLayer(name="in", input_size=(6, 6, 2), normalization="none"),
        Convolution2dLayer(name="conv", filter_size=3, num_filters=4, padding="same",
                           weights=rng.standard_normal((4, 2, 3, 3)), bias=rng.standard_normal(4)),
        BatchNormalizationLayer(name="bn", trained_mean=rng.standard_normal(4),
                                trained_variance=rng.uniform(0.5, 2.0, 4), scale=rng.standard_normal(4),
                                offset=rng.standard_normal(4)),
        ReLULayer(name="relu"),
        FullyConnectedLayer(name="fc", output_size=3, weights=rng.standard_normal((3, 144)),
                            bias=rng.standard_normal(3)),
    ]
    return Network(layers, name="small", aliases=aliases)


def test_lookups_resolve_aliases_and_results_keep_the_names_asked_for(rng) -> None:
    net = small_net(rng)
    assert dict(net.aliases) == ALIASES and net.resolve("block") == "relu" and net.resolve("fc") == "fc"
    assert net.layer("block") is net.layer("relu")
    with pytest.raises(TypeError):
        net.aliases["x"] = "fc"                                   # read-only
    x = rng.standard_normal((6, 6, 2))
    both = net.activations(x, ["block", "relu"])
    assert set(both) == {"block", "relu"}
    np.testing.assert_array_equal(both["block"], both["relu"])
    assert net.upstream("block") == net.upstream("relu")
    with pytest.raises(LayerNotFoundError, match=r"no layer named 'nope'.*its aliases are \{'block': 'relu'"):
        net.layer("nope")


def test_gradcam_takes_aliases_and_reports_the_layer(rng) -> None:
    net = small_net(rng)
    x = rng.standard_normal((6, 6, 2))
    by_alias = refcam.gradcam(net, x, 1, feature_layer="block")
    by_name = refcam.gradcam(net, x, 1, feature_layer="relu")
    assert by_alias.feature_layer == "relu"
    np.testing.assert_array_equal(by_alias.map, by_name.map)
    with pytest.raises(LayerNotFoundError, match=r"aliases: 'block' \(-> 'relu'\)"):
        refcam.gradcam(net, x, 1, feature_layer="blok")


@pytest.mark.parametrize("aliases, words", [
    ({"relu": "fc"}, "already the name of a layer"),
    ({"block": "nothing"}, "not a layer of the network"),
    ({"": "fc"}, "non-empty strings"),
    ({"block": 3}, "non-empty strings"),
])
def test_bad_aliases_are_refused(rng, aliases, words) -> None:
    with pytest.raises(NetworkError, match=words):
        small_net(rng, aliases)


def test_save_load_to_device_and_fusion_keep_aliases(rng, tmp_path) -> None:
    net = small_net(rng)
    path = tmp_path / "net.h5"
    refcam.save(net, path)
    assert dict(refcam.load(path).aliases) == ALIASES
    assert dict(net.to_device("cpu").aliases) == ALIASES
    assert dict(fuse_batchnorm(net).aliases) == ALIASES      # the convolution is absorbed, bn keeps its name
    plain = small_net(rng, aliases=None)
    refcam.save(plain, tmp_path / "plain.h5")
    with h5py.File(tmp_path / "plain.h5", "r") as f:
        assert "aliases" not in f.attrs                      # files without aliases are as before


@pytest.mark.parametrize("text, words", [
    ("not json", "not valid JSON"),
    ('["block"]', "must be a JSON object"),
    ('{"block": "missing"}', "is not an alias"),
    ('{"relu": "fc"}', "is not an alias"),
    ('{"block": "relu", "block": "fc"}', "not valid JSON"),
])
def test_a_bad_aliases_attribute_is_a_file_format_error(rng, tmp_path, text, words) -> None:
    path = tmp_path / "net.h5"
    refcam.save(small_net(rng), path)
    with h5py.File(path, "a") as f:
        f.attrs["aliases"] = text
    with pytest.raises(FileFormatError, match=words):
        refcam.load(path)
    with h5py.File(path, "a") as f:
        f.attrs["aliases"] = np.arange(3)
    with pytest.raises(FileFormatError, match="must be one string"):
        refcam.load(path)
