"""Full torchvision architectures through ``refcam.from_torch``: forward and raw Grad-CAM map within 1e-10 of float64.

Runs when torchvision's model code imports (on a CPU-only torch 2.13 it does not:
``bash benchmarks/import_targets/torchvision_cpu.sh FOLDER`` and
``PYTHONPATH=FOLDER``, see benchmarks/import_targets/README.md); skipped otherwise.
The architectures, their inputs, feature modules, random batch-norm statistics,
PyTorch's float64 Grad-CAM and both routes (``from_torch`` and the default
``torch.onnx.export``) are those of ``benchmarks/import_targets/torchvision_models.py``,
which makes the table in docs/import.md.

Without torchvision the same patterns run on hand-written equivalents with
torchvision's module names: ``tests/interop/test_from_torch.py`` (ResNet, VGG,
DenseNet naming) and ``tests/io/test_torch_twin_fixtures.py`` (MobileNet-v3,
EfficientNet, ShuffleNet-v2, ConvNeXt, U-Net and FCN twins, converted once).
"""
from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

import refcam  # noqa: E402

pytestmark = pytest.mark.crosscheck
SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "import_targets", "torchvision_models.py")
NAMES = ["resnet18", "resnet50", "vgg11_bn", "densenet121", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0",
         "squeezenet1_1", "shufflenet_v2_x0_5", "googlenet", "inception_v3", "regnet_y_400mf", "convnext_tiny",
         "fcn_resnet50", "r3d_18"]


def torchvision_imports() -> bool:
    try:
        import torchvision.models  # noqa: F401
    except Exception:  # a CPU-only torch makes torchvision's C extension fail at import, not only ImportError
        return False
    return True


@pytest.fixture(scope="module")
def measured() -> Any:
    """The benchmark module (its targets, batch-norm randomisation and PyTorch Grad-CAM)."""
    if not torchvision_imports():
        pytest.skip("torchvision's models do not import (see benchmarks/import_targets/torchvision_cpu.sh)")
    spec = importlib.util.spec_from_file_location("refcam_torchvision_targets", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module          # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_list_is_the_issue_list(measured) -> None:
    assert [target.name for target in measured.targets()] == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_both_routes_meet_their_targets(measured, name: str, tmp_path) -> None:
    """``from_torch``: forward and raw map within 1e-10; the default ``torch.onnx.export``: loads, forward
    within 1e-5 (its file holds batch norm folded into float32 weights)."""
    row = measured.measure(next(t for t in measured.targets() if t.name == name), str(tmp_path))
    assert "from_torch_error" not in row and "onnx_default_error" not in row, row
    assert row["map_max"] > 0.0
    assert row["from_torch_forward"] <= measured.FROM_TORCH_TARGET, row
    assert row["from_torch_map"] <= measured.FROM_TORCH_TARGET, row
    assert row["onnx_default_forward"] <= measured.ONNX_DEFAULT_TARGET, row
