"""The GEMM limit of a benchmark row: the network's GEMM work divided by this machine's GEMM throughput.

refcam runs every convolution and fully connected layer as GEMMs (im2col, then
``matmul``), so no implementation of the same arithmetic on the same BLAS can be
faster than the time those GEMMs take at the BLAS's best throughput. For a row:

* forward work: ``2 * F * (C/G) * prod(k) * prod(O) * B`` floating-point
  operations per convolution (``F`` filters, ``C/G`` channels per group, kernel
  ``k``, output positions ``O``, batch ``B``), ``2 * F * C * prod(S_in) * B`` per
  transposed convolution, ``2 * out * in * B`` per fully connected layer;
* Grad-CAM adds, per label, the input VJP of every such layer between the
  feature layer and the reduction layer (the head): ``W^T @ g_y``, the same count
  as its forward (refcam computes no weight gradients for Grad-CAM);
* throughput: the median of 10 products of two ``1024 x 1024`` matrices in the
  row's dtype (``2 * 1024^3`` operations each), measured in the same run with
  the same thread limit.

``limit ms = work / throughput``; ``refcam ms / limit ms`` says how far a row is
from it (PyTorch's oneDNN convolutions in float32 need no column matrix, but do
the same multiply-adds).
"""
from __future__ import annotations

import math
import statistics
import time
from typing import Any, Mapping

import numpy as np

from refcam.layers.convolution import ConvolutionLayer
from refcam.layers.linear import FullyConnectedLayer
from refcam.layers.transposed_convolution import TransposedConvolutionLayer

SIDE = 1024
REPEATS = 10


def layer_flops(layer: Any, shapes: dict[str, tuple[int, ...]], batch: int) -> int:
    """GEMM floating-point operations of ``layer``'s forward pass (0 for a layer without a GEMM)."""
    if isinstance(layer, ConvolutionLayer):
        return 2 * int(np.size(layer.weights)) * math.prod(shapes[layer.name][1:]) * batch
    if isinstance(layer, TransposedConvolutionLayer):
        return 2 * int(np.size(layer.weights)) * math.prod(shapes[layer.inputs[0]][1:]) * batch
    if isinstance(layer, FullyConnectedLayer):
        return 2 * int(np.size(layer.weights)) * batch
    return 0


def gradcam_flops(net: Any, input_shape: tuple[int, ...], batch: int, feature_layer: str | None,
                  reduction_layer: str | None, labels: int = 1) -> int:
    """Forward GEMM work, plus ``labels`` times the head's input VJPs when ``feature_layer`` is given."""
    shapes = net.infer_shapes(input_shape)
    forward = sum(layer_flops(layer, shapes, batch) for layer in net.layers)
    if feature_layer is None:
        return forward
    feature, reduction = net.resolve(feature_layer), net.resolve(reduction_layer)
    head = (net.downstream(feature) & (net.upstream(reduction) | {reduction})) - {feature}
    backward = sum(layer_flops(net.layer(name), shapes, batch) for name in head)
    return forward + labels * backward


def gemm_throughput(dtype: str) -> float:
    """Floating-point operations per second of a ``SIDE x SIDE`` matrix product in ``dtype`` (median of REPEATS)."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((SIDE, SIDE)).astype(dtype) for _ in range(2))
    np.matmul(a, b)
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        np.matmul(a, b)
        times.append(time.perf_counter() - start)
    return 2 * SIDE ** 3 / statistics.median(times)


KERNEL_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def kernel_override_warning(environ: Mapping[str, str]) -> str | None:
    """A warning when the environment overrides OpenBLAS's own choice of GEMM kernels, else None.

    ``OPENBLAS_CORETYPE`` (with ``OPENBLAS_L2_SIZE``) makes OpenBLAS run the named
    CPU's kernels; an older one than the CPU (``Haswell`` on an AVX-512
    machine) halves the GEMM throughput that refcam's convolutions run at,
    while PyTorch's oneDNN kernels are not affected.
    """
    found = {name: environ[name] for name in KERNEL_VARIABLES if environ.get(name)}
    if not found:
        return None
    settings = " ".join(f"{name}={value}" for name, value in found.items())
    return (f"WARNING: {settings} overrides OpenBLAS's choice of kernels, so refcam's GEMMs may run slower than "
            "NumPy would choose on this CPU (PyTorch's are not affected); to time OpenBLAS's own choice, run "
            f"with `env {' '.join('-u ' + name for name in KERNEL_VARIABLES)}`.")


def limit_ms(flops: int, throughput: float) -> float:
    """The GEMM limit in milliseconds."""
    return 1e3 * flops / throughput
