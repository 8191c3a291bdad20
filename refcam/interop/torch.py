"""``refcam.from_torch(model, example_input)``: a PyTorch model as a refcam Network (needs torch and onnx).

Route: a deep copy of ``model`` is converted to float64 on the CPU and exported
with the TorchScript exporter to a temporary ONNX file::

    torch.onnx.export(copy, (x,), path, dynamo=False, training=torch.onnx.TrainingMode.PRESERVE,
                      do_constant_folding=False, opset_version=18, input_names=["input"],
                      output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})

``PRESERVE`` and no constant folding keep batch normalisation as batch
normalisation, so the file holds the model's own weights, exactly (float32 ->
float64 is exact); the default exports fold it into the convolutions in float32
(``docs/import.md``, "Float64 agreement and the export flags"). The node names
are then rewritten to PyTorch module paths (:mod:`refcam.interop.scopes`) and
the file is read by refcam's ONNX importer
(:func:`refcam.io.onnx_import.load_onnx_with_tensors`): what it cannot import
is listed in one :class:`~refcam.errors.UnsupportedOperationError`. Containers
(``layer4``, ``features``) and modules whose own node made no layer become
aliases of the layer holding their output (:attr:`refcam.Network.aliases`).
Scalars that ONNX can only store as float32 (the ``1/6`` of ``nn.Hardsigmoid``,
batch-norm ``eps``...) are then set back to the modules' own float64 values
(:mod:`refcam.interop.torch_constants`).

``import refcam`` never imports torch; :func:`from_torch` imports it when called.
"""
from __future__ import annotations

import copy
import functools
import inspect
import os
import tempfile
import warnings
from collections import Counter
from typing import Any

from ..errors import (InputDtypeError, InputError, ModelConversionError, OptionalDependencyError, ParameterError,
                      RefcamError, UnsupportedOperationError)
from ..io.safe import DEFAULT_MAX_TENSOR_BYTES
from ..network import Network
from .scopes import GraphNode, plan_names
from .torch_constants import restore_module_constants

DEFAULT_OPSET = 18
INPUT_NAME = "input"
OUTPUT_NAME = "output"
INSTALL_HINT = 'pip install "refcam[torch]"'
# the exporter's notices that the TorchScript route is legacy: from_torch takes it on purpose (module docstring)
LEGACY_EXPORT_NOTICES = ("You are using the legacy TorchScript-based ONNX export", "The feature will be removed")


def from_torch(model: Any, example_input: Any, *, name: str | None = None, opset_version: int = DEFAULT_OPSET,
               max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> Network:
    """The refcam :class:`~refcam.network.Network` computing what ``model`` computes, layers named by module path.

    Parameters
    ----------
    model : torch.nn.Module
        In ``eval()`` mode (every submodule). It is not modified: a deep copy is
        converted to float64 on the CPU and exported.
    example_input : torch.Tensor
        One input ``(B, C, T)``, ``(B, C, H, W)`` or ``(B, C, H, W, D)`` of any
        real dtype (used in float64). Its channel and spatial sizes become the
        network's input size; the batch axis stays free.
    name : str, optional
        The network's name (default: the model's class name).
    opset_version : int
        ONNX operator set of the export (default 18).
    max_tensor_bytes : int
        Bound on every tensor of the export, as for :func:`refcam.load`.

    Returns
    -------
    Network
        Layers named after PyTorch module paths (``layer1.0.conv1``; a
        functional op ``layer1.0.Add``; a second call ``layer1.0.relu_1``) and
        ``net.aliases`` for containers (``layer4`` -> ``layer4.1.relu_1``), all
        usable as ``feature_layer=`` / ``reduction_layer=``. ``docs/import.md``
        gives the rules.

    Raises
    ------
    OptionalDependencyError
        torch or onnx is missing (``pip install "refcam[torch]"``).
    ModelConversionError
        ``model`` is not a ``torch.nn.Module``, is in training mode, or does not
        return one tensor.
    InputError
        ``example_input`` is not a tensor of rank 3, 4 or 5 (InputDtypeError: bool or complex).
    UnsupportedOperationError
        The exporter or refcam's importer cannot convert parts of the model (one
        message lists them).

    Examples
    --------
    >>> import torch                                                   # doctest: +SKIP
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()   # doctest: +SKIP
    >>> net = refcam.from_torch(model, torch.zeros(1, 3, 8, 8))          # doctest: +SKIP
    >>> net.layer_names                                                # doctest: +SKIP
    ['input', '0', '1']
    """
    torch, onnx = _import_torch_and_onnx()
    _check_model(torch, model)
    x = _example_input(torch, example_input)
    model_copy = copy.deepcopy(model).to(device="cpu", dtype=torch.float64)
    calls = _call_counts(torch, model_copy, x)
    modules = {path: next(module.children(), None) is None for path, module in model_copy.named_modules()}
    label = f"the ONNX export of {type(model).__name__}"
    with tempfile.TemporaryDirectory(prefix="refcam-from-torch-") as folder:
        path = os.path.join(folder, f"{type(model).__name__}.onnx")
        _export(torch, model_copy, x, path, opset_version)
        proto = onnx.load(path, load_external_data=False)
        nodes = [GraphNode(n.name, n.op_type, tuple(n.input), tuple(n.output)) for n in proto.graph.node]
        plan = plan_names(nodes, INPUT_NAME, [o.name for o in proto.graph.output], modules, calls)
        for node in proto.graph.node:
            node.name = plan.names[node.name]
        onnx.save(proto, path)
        from ..io.onnx_import import load_onnx_with_tensors
        try:
            net, tensor_layers = load_onnx_with_tensors(path, max_tensor_bytes=max_tensor_bytes)
        except RefcamError as err:
            raise _renamed(err, path, label) from err
    layer_names = set(net.layer_names)
    order = {path: index for index, path in enumerate(modules)}
    aliases = {module_path: tensor_layers[tensor]
               for module_path, tensor in sorted(plan.module_outputs.items(), key=lambda item: order.get(item[0], -1))
               if module_path not in layer_names and tensor in tensor_layers}
    layers = restore_module_constants(torch, model_copy, net.layers)
    return Network(layers, name=name or type(model).__name__, aliases=aliases)


def _import_torch_and_onnx() -> tuple[Any, Any]:
    """torch and onnx, or OptionalDependencyError naming the missing one and the extra to install."""
    try:
        import torch
    except ImportError as err:
        raise OptionalDependencyError(f"refcam.from_torch needs PyTorch: {INSTALL_HINT} (torch and onnx).") from err
    try:
        import onnx
    except ImportError as err:
        raise OptionalDependencyError(
            f"refcam.from_torch needs the 'onnx' package to export the model: {INSTALL_HINT}.") from err
    return torch, onnx


def _check_model(torch: Any, model: Any) -> None:
    """ModelConversionError unless ``model`` is a module in eval mode (listing the submodules still training)."""
    if not isinstance(model, torch.nn.Module):
        raise ModelConversionError(f"from_torch converts a torch.nn.Module, not {type(model).__name__}.")
    training = [path or "(the model)" for path, module in model.named_modules() if module.training]
    if training:
        shown = ", ".join(repr(path) for path in training[:10]) + (", ..." if len(training) > 10 else "")
        raise ModelConversionError(
            f"the model is in training mode ({len(training)} module(s): {shown}); batch normalisation and "
            "dropout would be exported as in training. Call model.eval() first.")


def _example_input(torch: Any, example_input: Any) -> Any:
    """``example_input`` as a detached float64 CPU tensor, after checking its type, dtype and rank."""
    if not isinstance(example_input, torch.Tensor):
        raise InputError(f"example_input must be a torch.Tensor (B, C, *spatial), not "
                         f"{type(example_input).__name__}; refcam networks take one input tensor.")
    if example_input.dtype == torch.bool or example_input.is_complex():
        raise InputDtypeError(f"example_input has dtype {example_input.dtype}; give a real (float or integer) tensor.")
    if example_input.dim() not in (3, 4, 5):
        raise InputError(f"example_input has shape {tuple(example_input.shape)}; refcam converts models taking "
                         "(B, C, T) sequences, (B, C, H, W) images or (B, C, H, W, D) volumes.")
    return example_input.detach().to(device="cpu", dtype=torch.float64).clone()


def _call_counts(torch: Any, model: Any, x: Any) -> Counter:
    """How many times each module (by qualified name) runs in one forward pass of ``x``; checks the output."""
    counts: Counter = Counter()
    handles = [module.register_forward_hook(functools.partial(_count_call, counts, path))
               for path, module in model.named_modules()]
    try:
        with torch.no_grad():
            output = model(x)
    finally:
        for handle in handles:
            handle.remove()
    if not isinstance(output, torch.Tensor):
        raise ModelConversionError(f"the model returns {type(output).__name__}, not one tensor; refcam networks "
                                   "have one output. Wrap the model in a module returning the tensor to explain.")
    return counts


def _count_call(counts: Counter, path: str, module: Any, inputs: Any, output: Any) -> None:
    counts[path] += 1


def _export(torch: Any, model: Any, x: Any, path: str, opset_version: int) -> None:
    """The TorchScript export of the module docstring; the exporter's own errors become UnsupportedOperationError."""
    options: dict[str, Any] = dict(
        training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False, opset_version=opset_version,
        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        options["dynamo"] = False
    exporter_error = getattr(getattr(torch.onnx, "errors", None), "OnnxExporterError", RuntimeError)
    with warnings.catch_warnings():
        for notice in LEGACY_EXPORT_NOTICES:
            warnings.filterwarnings("ignore", message=notice, category=DeprecationWarning)
        try:
            torch.onnx.export(model, (x,), path, **options)
        except exporter_error as err:
            raise UnsupportedOperationError(
                f"torch.onnx.export (TorchScript, opset {opset_version}) cannot export the model: {err}") from err


def _renamed(err: RefcamError, path: str, label: str) -> RefcamError:
    """The importer's error with the temporary file's path replaced by ``label``."""
    message = str(err).replace(path, label)
    if isinstance(err, ParameterError):
        return type(err)(message, err.param)
    return type(err)(message)
