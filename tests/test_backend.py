"""refcam.backend: array-module dispatch, device and dtype resolution, host transfers.

CPU tests need no CuPy: a fake class whose module is named ``cupy...`` stands for
a CuPy array, and ``_cupy_module`` is patched to play "CuPy missing" or "no
device". The real round trip is in ``gpu``-marked tests that skip without CuPy
and a CUDA device.
"""
from __future__ import annotations

import types

import numpy as np
import pytest

from refcam import backend
from refcam.autodiff import Tensor, grad
from refcam.backend import (get_xp, gpu_available, is_cupy_array, resolve_device, resolve_dtype,
                            scatter_add, to_device, to_numpy)
from refcam.errors import BackendError, RefcamError
from tests.tolerances import F64


def make_fake_cupy_array() -> object:
    """An object that looks like a CuPy ndarray to refcam (module ``cupy._core.core``)."""
    fake_type = type("ndarray", (), {"__module__": "cupy._core.core", "shape": (2,)})
    return fake_type()


# -- get_xp -----------------------------------------------------------------------
@pytest.mark.parametrize("args", [(np.zeros(2),), (np.zeros(2), np.ones((3, 1))), (np.float64(1.0),),
                                  (3.0,), (None,), (), (np.zeros(2), 3.0, None)])
def test_get_xp_is_numpy_for_numpy_arrays_scalars_and_none(args):
    assert get_xp(*args) is np


def test_is_cupy_array_looks_at_the_module_name():
    assert is_cupy_array(make_fake_cupy_array())
    assert not is_cupy_array(np.zeros(2))
    assert not is_cupy_array(3.0)


@pytest.mark.parametrize("order", ["numpy first", "cupy first"])
def test_get_xp_refuses_numpy_and_cupy_mixed(order):
    arrays = [np.zeros(2), make_fake_cupy_array()]
    if order == "cupy first":
        arrays.reverse()
    with pytest.raises(BackendError, match="to_device"):
        get_xp(*arrays)


# -- resolve_dtype ----------------------------------------------------------------
@pytest.mark.parametrize("dtype, expected", [
    ("float64", np.float64), ("float32", np.float32), (np.float32, np.float32),
    (np.float64, np.float64), (np.dtype("float64"), np.float64), (np.dtype("float32"), np.float32),
])
def test_resolve_dtype_accepts_the_two_compute_dtypes(dtype, expected):
    resolved = resolve_dtype(dtype)
    assert isinstance(resolved, np.dtype) and resolved == expected


@pytest.mark.parametrize("dtype", ["float16", np.float16, "int32", np.int64, int, np.dtype("int8"),
                                   bool, np.complex128, "double", "not a dtype", object()])
def test_resolve_dtype_rejects_everything_else(dtype):
    with pytest.raises(BackendError, match="'float64' or 'float32'"):
        resolve_dtype(dtype)


# -- resolve_device ---------------------------------------------------------------
def cupy_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend, "_cupy_module", lambda: None)


def cupy_without_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = types.SimpleNamespace(getDeviceCount=lambda: 0)
    fake_cupy = types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime))
    monkeypatch.setattr(backend, "_cupy_module", lambda: fake_cupy)


def test_resolve_device_cpu():
    assert resolve_device("cpu") == "cpu"


def test_resolve_device_auto_follows_gpu_availability():
    assert resolve_device("auto") == ("gpu" if gpu_available() else "cpu")


@pytest.mark.parametrize("setup", [cupy_missing, cupy_without_devices])
def test_resolve_device_auto_is_cpu_without_a_gpu(monkeypatch, setup):
    setup(monkeypatch)
    assert not gpu_available()
    assert resolve_device("auto") == "cpu"


def test_resolve_device_gpu_without_cupy_says_to_install_cupy(monkeypatch):
    cupy_missing(monkeypatch)
    with pytest.raises(BackendError, match="CuPy"):
        resolve_device("gpu")


def test_resolve_device_gpu_without_a_device_says_so(monkeypatch):
    cupy_without_devices(monkeypatch)
    with pytest.raises(BackendError, match="no CUDA device"):
        resolve_device("gpu")


def test_resolve_device_gpu_here_matches_availability():
    if gpu_available():
        assert resolve_device("gpu") == "gpu"
    else:
        with pytest.raises(BackendError, match="CuPy|CUDA"):
            resolve_device("gpu")


@pytest.mark.parametrize("device", ["GPU", "cuda", "", "cpu:0", None, 0])
def test_resolve_device_rejects_unknown_names(device):
    with pytest.raises(BackendError, match="'auto', 'cpu' or 'gpu'"):
        resolve_device(device)


def test_backend_error_is_a_refcam_error_and_a_runtime_error():
    assert issubclass(BackendError, RefcamError) and issubclass(BackendError, RuntimeError)


# -- transfers and scatter_add ------------------------------------------------------
def test_to_numpy_on_numpy_returns_the_array(rng):
    data = rng.standard_normal((2, 3))
    assert to_numpy(data) is data
    np.testing.assert_array_equal(to_numpy([1.0, 2.0]), [1.0, 2.0])


def test_to_device_cpu_is_numpy_and_bad_devices_raise(rng, monkeypatch):
    data = rng.standard_normal(3)
    assert to_device(data, "cpu") is data
    with pytest.raises(BackendError, match="'cpu' or 'gpu'"):
        to_device(data, "auto")
    cupy_missing(monkeypatch)
    with pytest.raises(BackendError, match="CuPy"):
        to_device(data, "gpu")


def test_scatter_add_accumulates_repeated_indices():
    target = np.zeros(4)
    scatter_add(np, target, np.array([1, 3, 1, 1]), np.array([1.0, 2.0, 3.0, 4.0]))
    np.testing.assert_array_equal(target, [0.0, 8.0, 0.0, 2.0])


# -- GPU (real CuPy) ----------------------------------------------------------------
@pytest.fixture
def cupy():
    """The real CuPy module, or skip when CuPy or a CUDA device is missing."""
    cupy = pytest.importorskip("cupy")
    if not gpu_available():
        pytest.skip("CuPy is installed but sees no CUDA device")
    return cupy


@pytest.mark.gpu
def test_gpu_round_trip(cupy, rng):
    data = rng.standard_normal((3, 4))
    on_gpu = to_device(data, "gpu")
    assert is_cupy_array(on_gpu) and get_xp(on_gpu) is cupy
    assert to_device(on_gpu, "gpu") is on_gpu
    back = to_numpy(on_gpu)
    assert isinstance(back, np.ndarray)
    np.testing.assert_array_equal(back, data)
    with pytest.raises(BackendError):
        get_xp(on_gpu, data)


@pytest.mark.gpu
def test_gpu_autodiff_matches_cpu(cupy, rng):
    data = rng.standard_normal((3, 4))

    def loss(x: Tensor) -> Tensor:
        repeated_rows = x.xp.asarray([2, 0, 2])
        return ((x @ x.T)[repeated_rows] * 0.5).max(axis=1).sum() + x.exp().mean()
    x_cpu = Tensor(data, requires_grad=True)
    x_gpu = Tensor(to_device(data, "gpu"), requires_grad=True)
    (grad_cpu,) = grad(loss(x_cpu), [x_cpu])
    (grad_gpu,) = grad(loss(x_gpu), [x_gpu])
    assert is_cupy_array(grad_gpu)
    np.testing.assert_allclose(to_numpy(grad_gpu), grad_cpu, **F64)


def test_get_xp_on_a_cupy_array_without_cupy_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(backend, "_cupy_module", lambda: None)
    with pytest.raises(BackendError, match="CuPy cannot be imported"):
        get_xp(make_fake_cupy_array())


def test_the_cupy_import_is_tried_once_per_process(monkeypatch):
    """device="auto" on a machine without CuPy must not search the import path at every call."""
    tries = []
    real_import = backend.importlib.import_module

    def counting_import(name, *args):
        tries.append(name)
        return real_import(name, *args)

    monkeypatch.setattr(backend.importlib, "import_module", counting_import)
    backend._cupy_module.cache_clear()
    try:
        first = backend._cupy_module()
        for _ in range(3):
            resolve_device("auto")
        assert backend._cupy_module() is first and tries == ["cupy"]
    finally:
        backend._cupy_module.cache_clear()
