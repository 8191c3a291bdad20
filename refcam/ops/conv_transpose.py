"""N-d transposed convolution, the adjoint of :mod:`refcam.ops.conv` in its input, written once for N = 1, 2, 3.

Layout
------
``x`` is ``(B, C, *S)``, ``weight`` is ``(C, F/G, *k)`` (PyTorch's
``ConvTranspose`` and ONNX's layout: input channels first), ``bias`` is
``(F,)`` or absent, the output is ``(B, F, *O)``. ``cropping`` is
``(begin_1..begin_N, end_1..end_N)`` (PyTorch's and ONNX's ``padding``/``pads``
of a transposed convolution), ``output_padding`` has N entries.

Formula
-------
Every input cell scatters its value times the kernel onto a full output of
length ``L = (n - 1) s + (k - 1) d + 1`` per axis (``s`` stride, ``d``
dilation), channels grouped as in :mod:`refcam.ops.conv` (``G`` groups; input
channel ``c`` of group ``g`` feeds output channels ``[g F/G, (g+1) F/G)``)::

    full[b, g F/G + f, o s + k d] += weight[c, f, k] * x[b, c, o]

then the output is cropped and extended and the bias added::

    y[b, f, t] = bias[f] + full[b, f, t + crop_begin]    (0 where t + crop_begin >= L)

    out = (n - 1) s + (k - 1) d + 1 - crop_begin - crop_end + output_padding

``output_padding`` adds cells at the end: first the cells ``crop_end`` would
have removed, then cells beyond the full output, which receive only the bias.
This is PyTorch's ``conv_transposeNd(padding=p, output_padding=op)`` with
``crop_begin = crop_end = p`` (checked in ``tests/ops/test_conv_transpose.py``:
with ``op <= p`` the added cells hold computed values); PyTorch and ONNX ask
for ``output_padding`` below the stride or the dilation, refcam does not.

Implementation: one kernel to audit
-----------------------------------
The full output is the input-gradient of a convolution: ``conv(Y, weight)``
with ``Y`` of shape ``(B, F, *L)`` and the same stride, dilation and groups
has output size ``n``, so ``full = conv_vjp_input(x, weight, (B, F, *L))``
(im2col's adjoint, col2im, tiled within ``COLUMN_BUDGET_BYTES``). Cropping is
that convolution's zero padding: with ``e = crop_end - output_padding``,

    y = conv_vjp_input(x, weight, padding = (crop_begin, max(e, 0)))   then max(-e, 0) zero cells at the end

VJPs (``g = dL/dy``, ``g_core`` = ``g`` without the cells beyond the full output)
-------------------------------------------------------------------------------
* input:  ``dL/dx = conv(g_core, weight, padding = (crop_begin, max(e, 0)))``,
  a convolution (:func:`refcam.ops.conv.conv_forward`);
* weight: ``dL/dweight[c, f, k] = sum_{b, o} x[b, c, o] g_pad[b, f, o s + k d]``
  = :func:`refcam.ops.conv.conv_vjp_weight` with the roles of ``x`` and ``g`` swapped;
* bias:   ``dL/dbias[f] = sum_{b, t} g[b, f, t]`` (extension cells included).

Linear in each argument: no non-differentiable points.
"""
from __future__ import annotations

from typing import Any, Sequence

from ..autodiff import Tensor, record
from ..backend import get_xp
from ..errors import LayerConfigError, ShapeError
from .conv import as_ints, conv_forward, conv_vjp_bias, conv_vjp_input, conv_vjp_weight
from .padding import effective_kernel, pad_constant

Ints = tuple[int, ...]


def full_length(n: int, kernel: int, stride: int, dilation: int) -> int:
    """``(n - 1) s + (k - 1) d + 1``: the length every input cell's kernel copy spans together."""
    return (n - 1) * stride + effective_kernel(kernel, dilation)


def _geometry(x_shape: Sequence[int], w_shape: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
              cropping: Sequence[int], output_padding: Sequence[int], groups: int) -> tuple[Ints, ...]:
    """Validated ``(stride, dilation, cropping, output_padding, out, padding, extension)``.

    ``padding`` is the equivalent convolution's ``(crop_begin..., max(e, 0)...)``
    and ``extension`` the zero cells added at the end, ``max(-e, 0)``.
    """
    x_shape, w_shape = tuple(x_shape), tuple(w_shape)
    nd = len(w_shape) - 2
    if nd < 1 or len(x_shape) != nd + 2:
        raise ShapeError(f"conv_transpose needs x (B, C, *spatial) and weight (C, F/groups, *kernel) with the "
                         f"same number of spatial axes (1, 2 or 3); got x {x_shape} and weight {w_shape}.")
    stride = as_ints("stride", stride, nd, 1, nd, "conv_transpose")
    dilation = as_ints("dilation", dilation, nd, 1, nd, "conv_transpose")
    cropping = as_ints("cropping", cropping, 2 * nd, 0, nd, "conv_transpose")
    output_padding = as_ints("output_padding", output_padding, nd, 0, nd, "conv_transpose")
    if int(groups) < 1:
        raise LayerConfigError(f"conv_transpose groups must be >= 1, got {groups!r}.")
    if x_shape[1] != w_shape[0] or x_shape[1] % groups:
        raise ShapeError(f"conv_transpose weight {w_shape} expects {w_shape[0]} input channels (divisible by "
                         f"groups={groups}); x {x_shape} has {x_shape[1]}.")
    full = tuple(full_length(n, k, s, d) for n, k, s, d in zip(x_shape[2:], w_shape[2:], stride, dilation))
    ends = tuple(cropping[nd + a] - output_padding[a] for a in range(nd))
    padding = cropping[:nd] + tuple(max(e, 0) for e in ends)
    extension = tuple(max(-e, 0) for e in ends)
    core = tuple(length - padding[a] - padding[nd + a] for a, length in enumerate(full))
    if any(c < 1 for c in core):
        raise ShapeError(f"conv_transpose cropping {cropping} (output padding {output_padding}) removes every "
                         f"computed cell of the full output {full} (x {x_shape}, weight {w_shape}); crop less.")
    out = tuple(c + e for c, e in zip(core, extension))
    return stride, dilation, cropping, output_padding, out, padding, extension


def conv_transpose_output_shape(x_shape: Sequence[int], w_shape: Sequence[int], stride: Sequence[int],
                                dilation: Sequence[int], cropping: Sequence[int],
                                output_padding: Sequence[int], groups: int = 1) -> Ints:
    """Validate a transposed convolution's shapes and return its output shape ``(B, F, *O)``.

    >>> conv_transpose_output_shape((2, 4, 5, 5), (4, 3, 3, 3), (2, 2), (1, 1), (1, 1, 1, 1), (1, 1))
    (2, 3, 10, 10)
    """
    *_, out, _, _ = _geometry(x_shape, w_shape, stride, dilation, cropping, output_padding, groups)
    return (int(x_shape[0]), int(w_shape[1]) * groups) + out


def _check_bias(bias_shape: Sequence[int], filters: int) -> None:
    if tuple(bias_shape) != (filters,):
        raise ShapeError(f"conv_transpose bias has shape {tuple(bias_shape)}; the output has {filters} "
                         f"channels, so the bias must be ({filters},).")


def _core(grad_y: Any, extension: Ints) -> Any:
    """``grad_y`` without the extension cells at the end of each axis (they do not depend on x or weight)."""
    if not any(extension):
        return grad_y
    index = (slice(None), slice(None)) + tuple(slice(0, n - e) for n, e in zip(grad_y.shape[2:], extension))
    return grad_y[index]


# --- array kernels -------------------------------------------------------------
def conv_transpose_forward(x: Any, w: Any, b: Any | None, stride: Sequence[int], dilation: Sequence[int],
                           cropping: Sequence[int], output_padding: Sequence[int], groups: int = 1) -> Any:
    """``y = crop(full) + bias`` with ``full = conv_vjp_input(x, w)`` (module docstring).

    >>> import numpy as np
    >>> conv_transpose_forward(np.array([[[1.0, 2.0]]]), np.ones((1, 1, 2)), None, (2,), (1,), (0, 0), (0,))
    array([[[1., 1., 2., 2.]]])
    """
    stride, dilation, _, _, out, padding, extension = _geometry(
        x.shape, w.shape, stride, dilation, cropping, output_padding, groups)
    filters = w.shape[1] * groups
    if b is not None:
        _check_bias(b.shape, filters)
    core_shape = (x.shape[0], filters) + tuple(o - e for o, e in zip(out, extension))
    y = conv_vjp_input(x, w, core_shape, stride, dilation, padding, groups)
    if any(extension):
        y = pad_constant(y, (0,) * len(extension) + extension, 0.0)
    if b is not None:
        y = y + b.reshape((filters,) + (1,) * len(out))
    return get_xp(y).ascontiguousarray(y)


def conv_transpose_vjp_input(grad_y: Any, w: Any, x_shape: Sequence[int], stride: Sequence[int],
                             dilation: Sequence[int], cropping: Sequence[int], output_padding: Sequence[int],
                             groups: int = 1) -> Any:
    """``dL/dx = conv(g_core, w)`` with the equivalent convolution's padding (module docstring)."""
    stride, dilation, _, _, out, padding, extension = _geometry(
        x_shape, w.shape, stride, dilation, cropping, output_padding, groups)
    _check_grad_y(grad_y, (int(x_shape[0]), w.shape[1] * groups) + out)
    return conv_forward(_core(grad_y, extension), w, None, stride, dilation, padding, groups)


def conv_transpose_vjp_weight(grad_y: Any, x: Any, w_shape: Sequence[int], stride: Sequence[int],
                              dilation: Sequence[int], cropping: Sequence[int], output_padding: Sequence[int],
                              groups: int = 1) -> Any:
    """``dL/dw[c, f, k] = sum_{b, o} x[b, c, o] g_pad[b, f, o s + k d]``: conv_vjp_weight with x and g swapped."""
    stride, dilation, _, _, out, padding, extension = _geometry(
        x.shape, w_shape, stride, dilation, cropping, output_padding, groups)
    _check_grad_y(grad_y, (x.shape[0], int(w_shape[1]) * groups) + out)
    return conv_vjp_weight(x, _core(grad_y, extension), w_shape, stride, dilation, padding, groups)


def conv_transpose_vjp_bias(grad_y: Any) -> Any:
    """``dL/dbias[f] = sum over batch and every output position of grad_y[:, f]``."""
    return conv_vjp_bias(grad_y)


def _check_grad_y(grad_y: Any, expected: Ints) -> None:
    if tuple(grad_y.shape) != expected:
        raise ShapeError(f"conv_transpose VJP got grad_y of shape {tuple(grad_y.shape)}; the output has shape "
                         f"{expected}.")


# --- Tensor level --------------------------------------------------------------
def conv_transpose(x: Tensor, weight: Tensor, bias: Tensor | None, *, stride: Sequence[int],
                   dilation: Sequence[int], cropping: Sequence[int], output_padding: Sequence[int] | None = None,
                   groups: int = 1) -> Tensor:
    """N-d transposed convolution of ``x (B, C, *S)`` with ``weight (C, F/groups, *k)``.

    Records one node ``"conv_transpose"`` with inputs ``(x, weight)`` or
    ``(x, weight, bias)``; its VJP computes only the gradients asked for.

    Parameters
    ----------
    x, weight, bias : Tensor
        Input, filters (input channels first) and per-filter bias ``(F,)`` (or None).
    stride, dilation : tuple of N ints
        Step between the kernel copies of neighbouring input cells, and between kernel taps.
    cropping : tuple of 2N ints
        Cells removed from the full output, ``(begins..., ends...)``.
    output_padding : tuple of N ints, optional
        Cells added at the end (default none).
    groups : int
        Channel groups; must divide C (the output has ``weight.shape[1] * groups`` channels).

    >>> import numpy as np
    >>> x = Tensor(np.ones((1, 2, 4, 4)))
    >>> w = Tensor(np.ones((2, 3, 3, 3)))
    >>> conv_transpose(x, w, None, stride=(2, 2), dilation=(1, 1), cropping=(1, 1, 1, 1),
    ...                output_padding=(1, 1)).shape
    (1, 3, 8, 8)
    """
    nd = weight.ndim - 2
    stride, dilation, cropping = tuple(stride), tuple(dilation), tuple(cropping)
    output_padding = (0,) * nd if output_padding is None else tuple(output_padding)
    geometry = (stride, dilation, cropping, output_padding, groups)
    inputs = (x, weight) if bias is None else (x, weight, bias)
    y = conv_transpose_forward(x.data, weight.data, None if bias is None else bias.data, *geometry)

    def vjp(grad_y: Any, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        grad_x = conv_transpose_vjp_input(grad_y, weight.data, x.shape, *geometry) if needs[0] else None
        grad_w = conv_transpose_vjp_weight(grad_y, x.data, weight.shape, *geometry) if needs[1] else None
        if bias is None:
            return grad_x, grad_w
        return grad_x, grad_w, conv_transpose_vjp_bias(grad_y) if needs[2] else None

    return record("conv_transpose", y, inputs, vjp)
