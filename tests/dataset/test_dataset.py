"""refcam.dataset in one process: sources, bit-identity with single calls, resuming, bad items, the CLI."""
from __future__ import annotations

import glob
import json
import os

import h5py
import numpy as np
import pytest

import refcam
import refcam.cli as cli
from refcam.dataset import StoreError, collect, compare_store, run
from refcam.errors import InputError
from tests.cam import nets


@pytest.fixture()
def network(tmp_path):
    net = nets.classifier_2d(np.random.default_rng(0))
    path = tmp_path / "net.h5"
    refcam.save(net, path)
    return net, str(path)


def inputs(net, count, seed=1):
    return np.random.default_rng(seed).standard_normal((count,) + tuple(net.input_layer.input_size))


def golden_of(store, item):
    return refcam.golden.read(os.path.join(store, item.file_stem + ".golden.h5"))


def test_every_item_is_bit_identical_to_a_single_gradcam_call(network, tmp_path):
    net, path = network
    xs = inputs(net, 5)
    np.save(tmp_path / "x.npy", xs)
    summary = run(path, str(tmp_path / "x.npy"), tmp_path / "store", batch_size=2)
    assert summary.count("done") == 5 and not summary.failures
    for item, x in zip(collect(str(tmp_path / "x.npy")), xs):
        golden = golden_of(tmp_path / "store", item)
        label = int(np.argmax(net.predict(x)))                     # the predicted top-1
        single = refcam.gradcam(net, x, label)
        assert golden.labels.tolist() == [label]
        for stage in ("map", "raw_map", "weights", "activations", "gradients", "scores"):
            assert np.array_equal(getattr(golden, stage), getattr(single, stage)), stage


def test_the_sources_and_their_ids(network, tmp_path):
    net, path = network
    xs = inputs(net, 3)
    np.save(tmp_path / "a.npy", xs)
    np.savez(tmp_path / "b.npz", first=xs[0], second=xs[1])
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f["images"] = xs
    folder = tmp_path / "folder"
    folder.mkdir()
    np.save(folder / "one.npy", xs[:1])
    (tmp_path / "list.csv").write_text("path,label\nfolder/one.npy,dog\n")
    items = collect([str(tmp_path / "a.npy"), str(tmp_path / "b.npz"), f"{tmp_path / 'c.h5'}:images",
                     str(folder)])
    assert [item.id for item in items][:3] == ["a.npy[0]", "a.npy[1]", "a.npy[2]"]
    assert [item.id for item in items][3:9] == ["b.npz:first", "b.npz:second", "c.h5:images[0]",
                                                "c.h5:images[1]", "c.h5:images[2]", "one.npy[0]"]
    assert [item.id for item in collect(str(tmp_path / "*" / "*.npy"))] == [os.path.join("folder", "one.npy[0]")]
    with pytest.raises(InputError, match="two inputs have the id 'b.npz:first'"):
        collect([str(tmp_path / "b.npz"), str(tmp_path / "b.npz")])
    listed = collect(str(tmp_path / "list.csv"))
    assert [(item.id, item.label) for item in listed] == [("folder/one.npy", "dog")]
    summary = run(path, [f"{tmp_path / 'c.h5'}:images", str(tmp_path / "b.npz")], tmp_path / "store")
    assert summary.count("done") == 5
    item = collect(f"{tmp_path / 'c.h5'}:images")[2]
    assert np.array_equal(golden_of(tmp_path / "store", item).input, xs[2])


def test_labels_from_a_list_by_name_or_for_all(network, tmp_path):
    net, path = network
    xs = inputs(net, 2)
    for i, x in enumerate(xs):
        np.save(tmp_path / f"x{i}.npy", x[None])
    summary = run(path, [str(tmp_path / "x0.npy"), str(tmp_path / "x1.npy")], tmp_path / "all_fox",
                  labels="fox")
    assert summary.count("done") == 2
    for item in collect([str(tmp_path / "x0.npy"), str(tmp_path / "x1.npy")]):
        assert golden_of(tmp_path / "all_fox", item).labels.tolist() == [2]
    summary = run(path, [str(tmp_path / "x0.npy"), str(tmp_path / "x1.npy")], tmp_path / "each", labels=[0, 1])
    assert [golden_of(tmp_path / "each", item).labels.tolist() for item in
            collect([str(tmp_path / "x0.npy"), str(tmp_path / "x1.npy")])] == [[0], [1]]


def test_a_rerun_keeps_finished_items_and_computes_only_the_rest(network, tmp_path):
    net, path = network
    np.save(tmp_path / "x.npy", inputs(net, 6))
    source, store = str(tmp_path / "x.npy"), tmp_path / "store"
    run(path, source, store)
    kept = sorted(glob.glob(str(store / "*.golden.h5")))
    stamps = {name: os.stat(name).st_mtime_ns for name in kept}
    os.remove(kept[1]), os.remove(kept[4])
    (store / ".half.golden.h5.0123.tmp").write_bytes(b"half")       # what a killed run leaves
    summary = run(path, source, store)
    assert (summary.count("done"), summary.count("skipped")) == (2, 4)
    assert not glob.glob(str(store / ".*.tmp"))
    for name in set(kept) - {kept[1], kept[4]}:
        assert os.stat(name).st_mtime_ns == stamps[name]           # never rewritten


def test_a_bad_item_is_recorded_and_the_run_goes_on(network, tmp_path):
    net, path = network
    xs = inputs(net, 2)
    np.savez(tmp_path / "x.npz", good=xs[0], wrong_shape=np.zeros((5, 5)), also_good=xs[1])
    source, store = str(tmp_path / "x.npz"), tmp_path / "store"
    summary = run(path, source, store)
    assert (summary.count("done"), summary.count("failed")) == (2, 1)
    bad = next(item for item in collect(source) if item.key == "wrong_shape")
    error = json.loads((store / f"{bad.file_stem}.error.json").read_text())
    assert error["id"] == "x.npz:wrong_shape" and error["error"] == "InputError"
    assert "x.npz:wrong_shape" in str(summary) and "1 failed" in str(summary)
    again = run(path, source, store)
    assert (again.count("skipped"), again.count("failed")) == (2, 1)
    assert "failed before" in again.outcomes[2].message and again.failures
    assert run(path, source, store, retry_failed=True).count("failed") == 1


def test_a_store_of_another_run_is_refused(network, tmp_path):
    net, path = network
    np.save(tmp_path / "x.npy", inputs(net, 1))
    run(path, str(tmp_path / "x.npy"), tmp_path / "store")
    with pytest.raises(StoreError, match="method: store 'gradcam', this run 'hirescam'"):
        run(path, str(tmp_path / "x.npy"), tmp_path / "store", method="hirescam")
    other = nets.classifier_2d(np.random.default_rng(5))
    with pytest.raises(StoreError, match="network_sha256"):
        run(other, str(tmp_path / "x.npy"), tmp_path / "store")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="not empty"):
        run(path, str(tmp_path / "x.npy"), tmp_path / "busy")


def test_hostile_array_sources(network, tmp_path):
    net, path = network
    np.save(tmp_path / "scalar.npy", np.float64(1))
    with pytest.raises(InputError, match="0-d array has no items"):
        collect(str(tmp_path / "scalar.npy"))
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f["names"] = np.array([b"a", b"b"])
    summary = run(path, f"{tmp_path / 's.h5'}:names", tmp_path / "store")
    assert summary.count("failed") == 2 and "not numbers" in summary.outcomes[0].message
    with pytest.raises(InputError, match="pattern matches no file"):
        collect(str(tmp_path / "nothing*.png"))


def test_an_array_of_one_input_is_not_taken_for_a_batch(network, tmp_path):
    net, path = network
    one = inputs(net, 1)[0]                                         # h x w x c: one input, no batch axis
    np.save(tmp_path / "one.npy", one)
    with h5py.File(tmp_path / "one.h5", "w") as f:
        f["x"] = one
    summary = run(path, [str(tmp_path / "one.npy"), f"{tmp_path / 'one.h5'}:x"], tmp_path / "store")
    assert summary.count("failed") == 2 * one.shape[0] and summary.count("done") == 0
    assert all("one input of the network, not a batch" in outcome.message and "x[np.newaxis]" in outcome.message
               for outcome in summary.outcomes)
    np.save(tmp_path / "batch.npy", one[np.newaxis])                # what the message asks for
    assert run(path, str(tmp_path / "batch.npy"), tmp_path / "batch").count("done") == 1


def test_images_go_through_the_preprocessing(network, tmp_path):
    pytest.importorskip("PIL")
    from PIL import Image
    net, path = network
    folder = tmp_path / "photos"
    folder.mkdir()
    pixels = np.random.default_rng(3).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / "a.png")
    (folder / "broken.png").write_bytes(b"not a png")
    summary = run(path, str(folder), tmp_path / "store", preprocessing="none")
    assert (summary.count("done"), summary.count("failed")) == (1, 1)
    x, _ = refcam.preprocess(pixels, "none", net.input_layer.input_size)
    item = collect(str(folder))[0]
    assert np.array_equal(golden_of(tmp_path / "store", item).input, x)


def test_compare_store(network, tmp_path):
    net, path = network
    np.save(tmp_path / "x.npy", inputs(net, 4))
    store = tmp_path / "store"
    run(path, str(tmp_path / "x.npy"), store)
    items = collect(str(tmp_path / "x.npy"))
    candidates = tmp_path / "mine"
    candidates.mkdir()
    for item, factor in zip(items[:3], (1.0, 1 + 1e-13, 1.01)):
        np.save(candidates / f"{item.file_stem}.npy", golden_of(store, item).map * factor)
    report = compare_store(store, candidates)
    by_id = {score.id: score for score in report.scores}
    assert report.passed == 2 and not report.all_passed
    assert by_id["x.npy[2]"].first_divergence == "map" and by_id["x.npy[3]"].first_divergence == "missing"
    assert report.worst(2)[0].id in ("x.npy[2]", "x.npy[3]")
    assert dict(report.histogram())["missing or not finite"] == 1
    assert "passed 2 of 4 items (50.0%)" in str(report)
    archive = {item.id: golden_of(store, item).map for item in items}
    np.savez(tmp_path / "all.npz", **archive)
    assert compare_store(store, tmp_path / "all.npz").all_passed


def test_the_command_line(network, tmp_path, capsys):
    net, path = network
    np.save(tmp_path / "x.npy", inputs(net, 3))
    store = str(tmp_path / "store")
    assert cli.main(["golden", path, str(tmp_path / "x.npy"), "--store", store, "--label", "dog"]) == 0
    assert "3 items: 3 done, 0 failed, 0 skipped" in capsys.readouterr().out
    assert cli.main(["golden", path, str(tmp_path / "x.npy"), "--store", store, "--label", "dog"]) == 0
    assert "0 done, 0 failed, 3 skipped" in capsys.readouterr().out
    assert cli.main(["golden", path, str(tmp_path / "x.npy"), "-o", "x.h5", "--store", store]) == 2
    assert "--store and -o" in capsys.readouterr().err
    mine = tmp_path / "mine"
    mine.mkdir()
    for item in collect(str(tmp_path / "x.npy")):
        np.save(mine / f"{item.file_stem}.npy", golden_of(store, item).map)
    assert cli.main(["compare", "--store", store, str(mine)]) == 0
    assert "passed 3 of 3 items (100.0%)" in capsys.readouterr().out
    os.remove(next(mine.iterdir()))
    assert cli.main(["compare", "--store", store, str(mine)]) == 1
