"""refcam.dataset under faults: a killed writer, a Dask LocalCluster of two worker processes, a killed worker.

Every case ends with the same golden files as a serial run, byte for byte (SHA-256). Files written in Dask
workers once differed in HDF5 layout (the same content in another order) until refcam's files were written
without HDF5's chunk cache (refcam/io/untimed_hdf5.py; tests/io/test_untimed_hdf5.py).

The cluster tests start and stop their own LocalCluster (two processes, one thread each, no dashboard) and
are skipped where dask.distributed is not installed (pip install "refcam[dask]").
"""
from __future__ import annotations

import glob
import hashlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import refcam
from refcam.dataset import collect, local_client, run
from tests.cam import nets


def digests(store):
    """{golden file name: SHA-256 of its bytes}."""
    return {os.path.basename(path): hashlib.sha256(open(path, "rb").read()).hexdigest()
            for path in sorted(glob.glob(os.path.join(store, "*.golden.h5")))}


@pytest.fixture()
def dataset(tmp_path):
    """A 32x32 classifier and 60 inputs: slow enough (several ms an item) to be interrupted mid-run."""
    net = nets.classifier_2d(np.random.default_rng(0), size=32)
    refcam.save(net, tmp_path / "net.h5")
    xs = np.random.default_rng(1).standard_normal((60, 32, 32, 3))
    np.save(tmp_path / "x.npy", xs)
    return str(tmp_path / "net.h5"), str(tmp_path / "x.npy")


def test_a_killed_writer_loses_nothing_and_the_rerun_finishes(dataset, tmp_path):
    network, source = dataset
    store = str(tmp_path / "killed")
    command = [sys.executable, "-m", "refcam", "golden", network, source, "--store", store, "--batch-size", "1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(glob.glob(os.path.join(store, "*.golden.h5"))) < 5 and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = digests(store)
    assert 5 <= len(finished) < 60, "the run was not interrupted mid-way"
    for name in finished:                                   # every file there is a whole golden
        refcam.golden.read(os.path.join(store, name))
    summary = run(network, source, store)
    assert (summary.count("skipped"), summary.count("done")) == (len(finished), 60 - len(finished))
    assert not glob.glob(os.path.join(store, ".*.tmp"))
    serial = str(tmp_path / "serial")
    run(network, source, serial)
    assert digests(store) == digests(serial)               # as if never interrupted
    assert {k: v for k, v in digests(store).items() if k in finished} == finished


def test_two_dask_workers_give_the_serial_bytes(dataset, tmp_path):
    pytest.importorskip("distributed")
    network, source = dataset
    run(network, source, tmp_path / "serial")
    with local_client(workers=2) as client:
        summary = run(network, source, tmp_path / "dask", batch_size=4, client=client)
    assert summary.count("done") == 60 and not summary.failures
    assert digests(tmp_path / "dask") == digests(tmp_path / "serial")


def test_a_killed_dask_worker_loses_no_item_and_duplicates_none(dataset, tmp_path):
    pytest.importorskip("distributed")
    network, source = dataset
    killed = []
    with local_client(workers=2) as client:
        pids = sorted(client.run(os.getpid).values())

        def kill_one_worker(finished, total, item_id):
            if not killed:
                os.kill(pids[0], signal.SIGKILL)             # the nanny restarts it; its tasks run again
                killed.append(finished)
        summary = run(network, source, tmp_path / "dask", batch_size=2, client=client, progress=kill_one_worker)
    assert killed and killed[0] < 60
    ids = [outcome.id for outcome in summary.outcomes]
    assert sorted(ids) == sorted(item.id for item in collect(source))          # each item reported once
    assert {outcome.status for outcome in summary.outcomes} <= {"done", "skipped"}
    run(network, source, tmp_path / "serial")
    assert digests(tmp_path / "dask") == digests(tmp_path / "serial")        # one whole file per item
    assert not glob.glob(os.path.join(tmp_path / "dask", ".*.tmp"))


def test_the_command_line_with_workers(dataset, tmp_path, capsys):
    pytest.importorskip("distributed")
    import refcam.cli as cli
    network, source = dataset
    assert cli.main(["golden", network, source, "--store", str(tmp_path / "s"), "--workers", "2"]) == 0
    assert "60 items: 60 done" in capsys.readouterr().out
