"""refcam's HDF5 files carry no timestamps: the same network or golden gives the same bytes at any time.

Measured with h5py 3.14 (HDF5 1.14.6): before refcam made its groups untimed, two saves of one network a
second apart differed; h5py 3.16 (HDF5 2.0) happened not to show it.
"""
from __future__ import annotations

import h5py
import numpy as np

import refcam
from tests.cam import nets


def object_times(path) -> dict[str, bool]:
    """Whether HDF5 tracks the times of the root and of every group (their creation properties; datasets are
    written with h5py's ``track_times=False``, whose read-back property is not reliable across HDF5 versions)."""
    times = {}
    with h5py.File(path, "r") as f:
        def record(name, obj):
            if isinstance(obj, h5py.Group):
                times[name] = bool(obj.id.get_create_plist().get_obj_track_times())
        record("/", f["/"])
        f.visititems(record)
    return times


def test_a_saved_network_has_no_timestamps(tmp_path):
    net = nets.classifier_2d(np.random.default_rng(0))
    for compact in (False, True):
        path = tmp_path / f"net_{compact}.h5"
        refcam.save(net, path, compact=compact)
        times = object_times(path)
        assert len(times) > 2 and set(times.values()) == {False}, times


def test_a_golden_file_has_no_timestamps(tmp_path):
    net = nets.classifier_2d(np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal(tuple(net.input_layer.input_size))
    path = tmp_path / "golden.h5"
    refcam.golden.write(path, net, x, 0)
    times = object_times(path)
    assert any(name.startswith("network") for name in times)
    assert set(times.values()) == {False}, times


def test_the_check_sees_times_where_hdf5_writes_them(tmp_path):
    """A group made with HDF5's default creation properties is time-stamped (h5py before 3.16 makes its groups
    so; refcam's files then differed a second apart), and ``object_times`` sees it: the tests above can fail."""
    with h5py.File(tmp_path / "stamped.h5", "w") as f:
        gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
        gcpl.set_obj_track_times(True)
        h5py.h5g.create(f.id, b"g", gcpl=gcpl)
    assert object_times(tmp_path / "stamped.h5")["g"] is True


def write_chunked(f: h5py.File, keep_alive: bool) -> None:
    """Two compressed, chunked datasets, each followed by a small one; ``keep_alive`` holds the dataset objects
    until the file closes (what a garbage-collection cycle or another thread holding h5py's lock does)."""
    kept = []
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        dataset = f.create_dataset(name, data=rng.standard_normal((3, 32, 32)), chunks=(1, 16, 32),
                                   compression="gzip", shuffle=True, track_times=False)
        if keep_alive:
            kept.append(dataset)
        del dataset
        f.create_dataset(name + "_small", data=rng.standard_normal(100), track_times=False)
    f.close()


def test_the_bytes_do_not_depend_on_when_a_dataset_is_freed(tmp_path):
    """Measured in a Dask worker: one golden file in about thirty had its compressed chunks written later than in
    the serial run (same content, 268 bytes more). Without the chunk cache the order is the writing order."""
    from refcam.io.untimed_hdf5 import create_file
    written = {}
    for keep_alive in (False, True):
        write_chunked(create_file(tmp_path / f"refcam_{keep_alive}.h5"), keep_alive)
        write_chunked(h5py.File(tmp_path / f"default_{keep_alive}.h5", "w", track_order=True), keep_alive)
        for kind in ("refcam", "default"):
            written[kind, keep_alive] = (tmp_path / f"{kind}_{keep_alive}.h5").read_bytes()
    assert written["refcam", False] == written["refcam", True]
    assert written["default", False] != written["default", True]        # the check can fail
