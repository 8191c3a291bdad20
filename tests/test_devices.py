"""Every op, batched Grad-CAM and the seed fixtures on each array backend: NumPy, and CuPy on a GPU.

Standard 6 asks for one code path for NumPy and CuPy. Each test here takes the
``device`` fixture: ``"cpu"`` always, ``"gpu"`` marked ``gpu`` (skipped cleanly
unless CuPy sees a CUDA device). The test body is the same for both, and its
references never share the code under test:

* forward values against the loop twins of ``tests/ops`` (on the host);
* VJPs against central finite differences computed on the device itself
  (:func:`refcam.testing.check_vjp` runs on CuPy arrays too);
* Grad-CAM on the fixtures against the PyTorch goldens in ``fixtures/``.

Every result must stay on the device it was computed on. Two tests look for
host/device copies inside the graph: no download in its source, and (GPU
only) none at run time in a taped forward pass and reverse sweep.

Without a GPU, the last test runs every gpu-marked test in a subprocess on
``tests/cupy_stand_in``, a NumPy-backed stand-in for CuPy that refuses to mix
host and device arrays: the CuPy branches of the dispatch and the device
discipline are exercised on every CI run; CuPy itself only on a GPU
(``benchmarks/device.sh``).
"""
from __future__ import annotations

import importlib
import inspect
import math
import os
import pkgutil
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

import refcam
import refcam.ops
from refcam import gradcam
from refcam.autodiff import Tensor, grad
from refcam.backend import gpu_available, is_cupy_array, to_device, to_numpy
from refcam.ops import activation, combine, linear, normalization, pooling, reduce, shape
from refcam.ops import conv as conv_module
from refcam.ops import conv_transpose, resample
from refcam.testing import check_vjp
from tests.cam import nets
from tests.ops.naive_conv import naive_conv
from tests.ops.naive_conv_transpose import naive_conv_transpose
from tests.ops.naive_resample import naive_resize
from tests.ops.naive_ops import (
    batch_norm_loops,
    concat_loops,
    flatten_loops,
    fully_connected_loops,
    layer_norm_loops,
    softmax_loops,
)
from tests.ops.naive_pooling import naive_avg_pool, naive_max_pool
from tests.ops.naive_shape import (channel_shuffle_loops, channel_slice_loops, crop_loops, multiply_loops,
                                   reduce_loops)
from tests.test_fixtures import INTERMEDIATES, golden_files, network, raw_map_internal, read_golden, relative_error
from tests.tolerances import F32, F64, GOLDEN_RELATIVE

DEVICES = ["cpu", pytest.param("gpu", marks=pytest.mark.gpu)]


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    return request.param


def assert_on(device: str, array: Any) -> None:
    """``array`` lives on ``device`` (a CuPy array for "gpu", a NumPy array for "cpu")."""
    assert is_cupy_array(array) == (device == "gpu"), f"result on the wrong device: {type(array)}"


# --- every op: forward against its loop twin, VJPs against finite differences, on the device ----
@dataclass(frozen=True)
class OpCase:
    """One op call: ``run(*tensors)`` and its loop-twin ``expected(*arrays)``, with float64 inputs."""

    name: str
    op: str                                           # the refcam.ops function under test
    run: Callable[..., Tensor]
    expected: Callable[..., np.ndarray]
    inputs: tuple[np.ndarray, ...]
    column_budget: int | None = field(default=None)   # set: conv tiled over output rows


def _op_cases() -> list[OpCase]:
    rng = np.random.default_rng(7)
    normal = rng.standard_normal

    def conv_case(name, x_shape, w_shape, stride, dilation, padding, groups, budget=None):
        geometry = (stride, dilation, padding, groups)
        return OpCase(name, "conv", lambda x, w, b: conv_module.conv(x, w, b, stride=stride, dilation=dilation,
                                                             padding=padding, groups=groups),
                      lambda x, w, b: naive_conv(x, w, b, *geometry),
                      (normal(x_shape), normal(w_shape), normal(w_shape[:1])), budget)

    def pool_case(name, op, twin, x_shape, kernel, stride, padding, **options):
        return OpCase(name, op.__name__, lambda x: op(x, kernel=kernel, stride=stride, padding=padding, **options),
                      lambda x: twin(x, kernel, stride, padding, **options)[0], (normal(x_shape),))

    channels = 3
    positive = rng.uniform(0.5, 1.5, channels)
    bn_params = (normal(channels), positive, normal(channels), normal(channels))
    return [
        conv_case("conv1d-causal-dilated", (2, 3, 9), (4, 3, 3), (1,), (2,), (4, 0), 1),
        conv_case("conv2d-grouped-strided", (2, 4, 7, 6), (6, 2, 3, 2), (2, 1), (1, 2), (1, 0, 2, 1), 2),
        conv_case("conv3d", (1, 2, 5, 4, 4), (3, 2, 3, 3, 2), (1, 2, 1), (1, 1, 1), (1, 1, 0, 1, 0, 1), 1),
        conv_case("conv3d-tiled", (1, 2, 5, 4, 4), (3, 2, 3, 3, 2), (1, 2, 1), (1, 1, 1), (1, 1, 0, 1, 0, 1), 1,
                  budget=1),
        pool_case("maxpool2d-padded", pooling.max_pool, naive_max_pool, (2, 3, 7, 6), (3, 2), (2, 2),
                  (1, 0, 1, 1)),
        pool_case("maxpool3d-ceil", pooling.max_pool, naive_max_pool, (1, 2, 5, 5, 3), (2, 2, 2), (2, 2, 2),
                  (0, 0, 0, 0, 0, 0), ceil_mode=True),
        pool_case("avgpool2d-exclude-pad", pooling.avg_pool, naive_avg_pool, (2, 3, 6, 5), (3, 3), (2, 2),
                  (1, 1, 1, 1), count_include_pad=False),
        pool_case("avgpool1d", pooling.avg_pool, naive_avg_pool, (2, 3, 8), (3,), (1,), (1, 1)),
        OpCase("global-avg-pool", "global_avg_pool", pooling.global_avg_pool,
               lambda x: x.mean(axis=(2, 3), keepdims=True), (normal((2, 3, 4, 5)),)),
        OpCase("global-max-pool", "global_max_pool", pooling.global_max_pool,
               lambda x: x.max(axis=(2, 3, 4), keepdims=True), (normal((2, 3, 3, 4, 2)),)),
        OpCase("batch-norm", "batch_norm",
               lambda x, m, v, s, o: normalization.batch_norm(x, m, v, s, o, epsilon=1e-5),
               lambda x, m, v, s, o: batch_norm_loops(x, m, v, s, o, 1e-5),
               (normal((2, channels, 4, 3)),) + bn_params),
        OpCase("layer-norm", "layer_norm",
               lambda x, s, o: normalization.layer_norm(x, s, o, axes=(1, 2), epsilon=1e-5),
               lambda x, s, o: layer_norm_loops(x, s, o, (1, 2), 1e-5),
               (normal((2, channels, 6)), normal(channels), normal(channels))),
        OpCase("relu", "relu", activation.relu, lambda x: np.maximum(x, 0.0), (normal((2, 3, 4)),)),
        OpCase("leaky-relu", "leaky_relu", lambda x: activation.leaky_relu(x, 0.1),
               lambda x: np.where(x > 0, x, 0.1 * x), (normal((2, 3, 4)),)),
        OpCase("clipped-relu", "clipped_relu", lambda x: activation.clipped_relu(x, 0.8),
               lambda x: np.clip(x, 0.0, 0.8), (normal((2, 3, 4)),)),
        OpCase("softmax", "softmax", activation.softmax, lambda x: softmax_loops(x, 1), (normal((2, 5, 3)),)),
        OpCase("sigmoid", "sigmoid", activation.sigmoid, lambda x: 1.0 / (1.0 + np.exp(-x)), (normal((2, 3, 4)),)),
        OpCase("tanh", "tanh", activation.tanh, np.tanh, (normal((2, 3, 4)),)),
        OpCase("swish", "swish", activation.swish, lambda x: x / (1.0 + np.exp(-x)), (normal((2, 3, 4)),)),
        OpCase("gelu", "gelu", activation.gelu, lambda x: 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0))),
               (normal((2, 3, 4)),)),
        OpCase("gelu-tanh", "gelu", lambda x: activation.gelu(x, approximation="tanh"),
               lambda x: 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3))),
               (normal((2, 3, 4)),)),
        OpCase("hard-sigmoid", "hard_sigmoid", lambda x: activation.hard_sigmoid(x, 0.2, 0.5),
               lambda x: np.clip(0.2 * x + 0.5, 0.0, 1.0), (2.0 * normal((2, 3, 4)),)),
        OpCase("hard-swish", "hard_swish", activation.hard_swish, lambda x: x * np.clip(x / 6.0 + 0.5, 0.0, 1.0),
               (2.0 * normal((2, 3, 4)),)),
        OpCase("erf", "erf", activation.erf, np.vectorize(math.erf), (normal((2, 3, 4)),)),
        OpCase("flatten-matlab", "flatten", lambda x: linear.flatten(x, "matlab"), lambda x: flatten_loops(x, "matlab"),
               (normal((2, 3, 4, 2)),)),
        OpCase("fully-connected", "fully_connected", linear.fully_connected, fully_connected_loops,
               (normal((2, 6)), normal((4, 6)), normal(4))),
        OpCase("concat", "concat", lambda a, b: combine.concat([a, b], axis=1), lambda a, b: concat_loops([a, b], 1),
               (normal((2, 3, 4)), normal((2, 2, 4)))),
        OpCase("add", "add", lambda a, b, c: combine.add([a, b, c]), lambda a, b, c: a + b + c,
               (normal((2, 3, 4)), normal((2, 3, 4)), normal((2, 3, 4)))),
        OpCase("conv-transpose2d", "conv_transpose",
               lambda x, w, b: conv_transpose.conv_transpose(x, w, b, stride=(2, 1), dilation=(1, 2),
                                                             cropping=(1, 0, 0, 1), output_padding=(2, 1)),
               lambda x, w, b: naive_conv_transpose(x, w, b, (2, 1), (1, 2), (1, 0, 0, 1), (2, 1)),
               (normal((2, 3, 3, 4)), normal((3, 2, 3, 2)), normal(2))),
        OpCase("resize2d-linear", "resize",
               lambda x: resample.resize(x, (7, 3), scale=(2.5, 0.7), method="linear"),
               lambda x: naive_resize(x, (7, 3), (2.5, 0.7), "linear", "half-pixel", "round-prefer-floor"),
               (normal((2, 3, 3, 5)),)),
        OpCase("resize3d-nearest", "resize",
               lambda x: resample.resize(x, (5, 2, 4), geometric_transform_mode="asymmetric",
                                         nearest_rounding_mode="ceil"),
               lambda x: naive_resize(x, (5, 2, 4), None, "nearest", "asymmetric", "ceil"),
               (normal((1, 2, 2, 3, 2)),)),
        OpCase("pad", "pad", lambda x: shape.pad(x, (1, 0, 2, 1), 0.5),
               lambda x: np.pad(x, ((0, 0), (0, 0), (1, 2), (0, 1)), constant_values=0.5),
               (normal((2, 3, 4, 3)),)),
        OpCase("multiply", "multiply", lambda a, b, c: combine.multiply([a, b, c]),
               lambda a, b, c: multiply_loops([a, b, c]), (normal((2, 3, 1, 1)), normal((2, 3, 4, 3)), normal((2, 1, 4, 3)))),
        OpCase("crop", "crop", lambda x: shape.crop(x, (1, 0, 0, 2)), lambda x: crop_loops(x, (1, 0, 0, 2)),
               (normal((2, 3, 4, 5)),)),
        OpCase("channel-shuffle", "channel_shuffle", lambda x: shape.channel_shuffle(x, 2),
               lambda x: channel_shuffle_loops(x, 2), (normal((2, 6, 3)),)),
        OpCase("channel-slice", "channel_slice", lambda x: shape.channel_slice(x, 1, 3),
               lambda x: channel_slice_loops(x, 1, 3), (normal((2, 4, 3)),)),
        OpCase("reduce-mean", "reduce_mean", lambda x: reduce.reduce_mean(x, (1, 3)),
               lambda x: reduce_loops(x, (1, 3), "mean"), (normal((2, 3, 4, 2)),)),
        OpCase("reduce-max", "reduce_max", lambda x: reduce.reduce_max(x, (2, 3)),
               lambda x: reduce_loops(x, (2, 3), "max"), (normal((2, 3, 4, 2)),)),
    ]


OP_CASES = _op_cases()


@pytest.mark.parametrize("case", OP_CASES, ids=[case.name for case in OP_CASES])
def test_op_forward_and_vjps_on_device(case: OpCase, device: str, monkeypatch):
    if case.column_budget is not None:
        monkeypatch.setattr(conv_module, "COLUMN_BUDGET_BYTES", case.column_budget)
    arrays = [to_device(a, device) for a in case.inputs]
    y = case.run(*(Tensor(a) for a in arrays)).data
    assert_on(device, y)
    np.testing.assert_allclose(to_numpy(y), case.expected(*case.inputs), **F64)
    check_vjp(case.run, arrays)


def tensor_level_ops() -> set[str]:
    """Every public function of the refcam.ops modules that returns a Tensor (a recorded op)."""
    found = set()
    for info in pkgutil.iter_modules(refcam.ops.__path__):
        module = importlib.import_module(f"refcam.ops.{info.name}")
        found |= {name for name, fn in vars(module).items()
                  if inspect.isfunction(fn) and fn.__module__ == module.__name__ and not name.startswith("_")
                  and fn.__annotations__.get("return") == "Tensor"}
    return found


def test_the_op_table_covers_every_tensor_level_op():
    """A new op in refcam.ops must get a case in OP_CASES."""
    ops = tensor_level_ops()
    assert {"conv", "max_pool", "batch_norm", "softmax", "add"} <= ops
    assert {case.op for case in OP_CASES} == ops


# --- Grad-CAM on the device ---------------------------------------------------------------------
@pytest.mark.parametrize("dtype, tolerance", [("float64", F64), ("float32", F32)])
def test_batched_gradcam_on_device_equals_single_cpu_runs(device: str, dtype: str, tolerance: dict, rng):
    """A batch of 3 on the device gives, per observation, the map of a single float64 CPU run."""
    net = nets.classifier_2d(rng)
    batch = rng.uniform(0, 1, (8, 8, 3, 3))
    res = gradcam(net, to_device(batch, device), ["cat", "fox"], format="SSCB", device=device, dtype=dtype,
                  keep_on_device=True)
    for array in (res.map, res.raw_map, res.gradients, res.activations, res.weights, res.scores):
        assert_on(device, array)
    assert res.map.shape == (8, 8, 2, 3) and res.info["device"] == device
    for b in range(3):
        single = gradcam(net, batch[..., b], ["cat", "fox"], device="cpu")
        np.testing.assert_allclose(to_numpy(res.map[..., b]), single.map, **tolerance)
        np.testing.assert_allclose(to_numpy(res.scores[:, b]), single.scores[:, 0], **tolerance)


@pytest.mark.parametrize("make", [nets.sequence_1d, nets.volume_3d, nets.skip_head_2d, nets.regression_2d],
                         ids=["sequence", "volume", "skip-head", "regression"])
def test_gradcam_of_every_input_kind_on_device(device: str, make, rng):
    """Sequences, volumes, a residual head and a regression: the device agrees with the CPU in float64."""
    net = make(rng)
    shape_ = tuple(n if n is not None else 7 for n in net.input_layer.per_observation_shape())
    x = rng.standard_normal(shape_[1:] + shape_[:1]) if len(shape_) > 2 else rng.standard_normal(shape_)
    score = {"reduction": lambda y: y.sum()} if make is nets.regression_2d else {"label": 1}
    on_device = gradcam(net, to_device(x, device), device=device, keep_on_device=True, **score)
    assert_on(device, on_device.map)
    on_cpu = gradcam(net, x, device="cpu", **score)
    np.testing.assert_allclose(to_numpy(on_device.map), on_cpu.map, **F64)
    np.testing.assert_allclose(to_numpy(on_device.gradients), on_cpu.gradients, **F64)


@pytest.mark.parametrize("convention", ["pytorch-grad-cam", "captum", "torchcam"])
def test_peer_conventions_on_device(device: str, convention: str, rng):
    """The peer recipes (refcam.cam.conventions) give the CPU's maps from a run on the device."""
    net = nets.classifier_2d(rng)
    image = rng.uniform(0, 1, (8, 8, 3))
    on_device = gradcam(net, to_device(image, device), "cat", convention=convention, device=device)
    on_cpu = gradcam(net, image, "cat", convention=convention, device="cpu")
    np.testing.assert_allclose(to_numpy(on_device.map), on_cpu.map, **F64)


def test_segmentation_mask_on_device(device: str, rng):
    net = nets.segmentation_2d(rng)
    image = rng.standard_normal((6, 6, 2))
    mask = np.zeros((6, 6), dtype=bool)
    mask[1:3, 2:5] = True
    on_device = gradcam(net, image, "car", mask=to_device(mask, device), feature_layer="relu_1", device=device,
                        keep_on_device=True)
    assert_on(device, on_device.map)
    on_cpu = gradcam(net, image, "car", mask=mask, feature_layer="relu_1", device="cpu")
    np.testing.assert_allclose(to_numpy(on_device.map), on_cpu.map, **F64)
    np.testing.assert_allclose(to_numpy(on_device.scores), on_cpu.scores, **F64)


FIXTURE_NETWORKS = ("e1_squeezenet_mini", "e2_digits_regression", "e3_japanese_vowels", "volume3d", "residual2d")


@pytest.mark.parametrize("stem", FIXTURE_NETWORKS)
def test_fixture_gradcam_on_device_matches_the_torch_golden(device: str, stem: str):
    """The first golden case of each seed fixture, computed on the device (network moved up front)."""
    golden = read_golden(golden_files(stem)[0])
    name, case = next(iter(golden["cases"].items()))
    net = network(stem).to_device(device)
    score = ({"label": [int(k) for k in case["labels"]]} if case["score"] == "class"
             else {"reduction": lambda y: y})
    res = gradcam(net, to_device(golden["input"], device), feature_layer=str(case["feature_layer"]),
                  reduction_layer=str(case["reduction_layer"]), format=str(golden["format"]), device=device,
                  **score)
    candidate = {key: getattr(res, key) for key in INTERMEDIATES}
    candidate["raw_map"] = raw_map_internal(res.raw_map, str(golden["format"]), case["score"] == "class")
    for key, value in candidate.items():
        error = relative_error(np.asarray(value).reshape(case[key].shape), case[key])
        assert error <= GOLDEN_RELATIVE, f"{stem} {name} {key}: relative error {error:.2e} on {device}"


# --- no host/device copies inside the graph ------------------------------------------------------
GRAPH_MODULES = ("ops", "layers", "autodiff", "network.py")
DOWNLOADS = ("to_numpy", "asnumpy", ".get()", ".item()", ".tolist()")


def test_graph_modules_never_download_to_the_host():
    """The code that runs inside a forward pass or reverse sweep has no device-to-host conversion in it."""
    root = Path(refcam.__file__).parent
    files = [path for name in GRAPH_MODULES
             for path in ([root / name] if name.endswith(".py") else sorted((root / name).rglob("*.py")))]
    assert len(files) > 20
    for path in files:
        text = path.read_text()
        for download in DOWNLOADS:
            assert download not in text, f"{path.relative_to(root)} uses {download}: a device-to-host copy"


@pytest.mark.gpu
def test_no_host_device_copy_inside_the_forward_pass_and_reverse_sweep(rng, monkeypatch):
    """After ``to_device``, a taped forward pass and reverse sweep on CuPy inputs never copy across the bus."""
    import cupy

    import refcam.layers.common

    networks = [nets.classifier_2d(rng).to_device("gpu"), nets.skip_head_2d(rng).to_device("gpu")]
    inputs = [cupy.asarray(rng.uniform(0, 1, (2, 3, 8, 8))), cupy.asarray(rng.standard_normal((2, 2, 6, 6)))]

    def device_only(convert):
        def guarded(a, *args, **kwargs):
            if isinstance(a, np.ndarray) and a.ndim > 0:
                raise AssertionError(f"host array of shape {a.shape} copied to the GPU inside the graph")
            return convert(a, *args, **kwargs)
        return guarded

    def no_transfer(*args, **kwargs):
        raise AssertionError("an array crossed between host and GPU inside the graph")

    monkeypatch.setattr(cupy, "asarray", device_only(cupy.asarray))
    monkeypatch.setattr(cupy, "array", device_only(cupy.array))
    monkeypatch.setattr(cupy, "asnumpy", no_transfer)
    monkeypatch.setattr(refcam.layers.common, "to_device", no_transfer)   # parameter staging
    for net, x in zip(networks, inputs, strict=True):   # every layer taped: every VJP runs
        outputs = net.forward_tensors(Tensor(x), ["input", "softmax"], grad_from="input")
        (gradient,) = grad(outputs["softmax"][:, 1].sum(), [outputs["input"]])
        assert is_cupy_array(gradient) and is_cupy_array(outputs["softmax"].data)


# --- parameter staging: the only host/device copy of a pass, made before it (CPU-testable) -------
class FakeGpuArray:
    """Looks like a CuPy ndarray to refcam (its type's module is ``cupy``); counts its downloads."""

    __module__ = "cupy._core.core"

    def __init__(self, host: np.ndarray):
        self.host, self.shape, self.dtype, self.ndim, self.downloads = host, host.shape, host.dtype, host.ndim, 0

    def get(self) -> np.ndarray:
        self.downloads += 1
        return self.host.copy()


def test_a_parameter_on_the_other_device_is_staged_once_before_the_pass(rng):
    net = nets.classifier_2d(rng)
    image = rng.uniform(0, 1, (8, 8, 3))
    expected = net.predict(image)
    fc = net.layer("fc")
    fc.weights = FakeGpuArray(fc.weights)
    np.testing.assert_array_equal(net.predict(image), expected)
    assert fc.weights.downloads == 1
    np.testing.assert_array_equal(gradcam(net, image, "cat").scores[0], expected[:, 0])
    assert fc.weights.downloads == 1                       # kept on the layer for later passes
    net.predict(image, dtype="float32")
    assert fc.weights.downloads == 2                       # one more copy, in the new dtype
    fc.weights = FakeGpuArray(fc.weights.host * 2.0)       # a replaced parameter is staged anew
    assert not np.array_equal(net.predict(image), expected) and fc.weights.downloads == 1


def test_an_unstaged_parameter_on_the_other_device_is_an_error_not_a_copy(rng):
    from refcam.errors import BackendError
    from refcam.layers.common import constant

    fc = nets.classifier_2d(rng).layer("fc")
    fc.weights = FakeGpuArray(fc.weights)
    with pytest.raises(BackendError, match=r"'fc'.*'weights' is on the GPU but the input is on the CPU"):
        constant(fc, "weights", Tensor(np.zeros((1, 4))))
    assert fc.weights.downloads == 0


# --- the gpu-marked tests on a NumPy-backed stand-in for CuPy (every CI run, no GPU needed) --------
ROOT = Path(__file__).resolve().parents[1]
STAND_IN = ROOT / "tests" / "cupy_stand_in"


@pytest.mark.skipif(gpu_available(), reason="a GPU is here: the gpu-marked tests run on it instead")
def test_gpu_marked_tests_pass_on_a_numpy_backed_stand_in_for_cupy():
    """Every gpu-marked test, in a subprocess where ``import cupy`` gets tests/cupy_stand_in.

    The stand-in keeps device arrays apart from host arrays as CuPy does, so
    this runs the CuPy branches of the dispatch and the tests' own logic on
    every CI run; CuPy's numerics and API coverage need a real GPU.
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(STAND_IN), str(ROOT)]))
    completed = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider"],
                               cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-2000:]
    assert "needs CuPy" not in completed.stdout, completed.stdout[-4000:]   # the stand-in was found
    passed = re.search(r"(\d+) passed", completed.stdout.strip().splitlines()[-1])
    assert passed and int(passed.group(1)) >= 40, completed.stdout[-2000:]
