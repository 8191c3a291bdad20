"""Padding rules shared by convolution and pooling, for N spatial dimensions.

Layout: arrays are (B, C, *spatial). A padding is a tuple
``(begin_1, ..., begin_N, end_1, ..., end_N)`` in spatial-axis order.

Output size of a window op on one axis (input ``n``, kernel ``k``, stride ``s``,
dilation ``d``, padding ``p_b + p_e``)::

    k_eff = (k - 1) * d + 1
    out   = floor((n + p_b + p_e - k_eff) / s) + 1

Named modes:

* ``"same"`` (MATLAB and TensorFlow SAME): ``out = ceil(n / s)``; total padding
  ``max((out - 1) * s + k_eff - n, 0)``, split evenly, the odd extra at the end
  (bottom/right).
* ``"causal"`` (1-D only): ``(k - 1) * d`` at the beginning, none at the end, so
  output step t sees only inputs at steps <= t.
"""
from __future__ import annotations

from typing import Any, Sequence

from ..errors import LayerConfigError

Padding = tuple[int, ...]


def effective_kernel(kernel: int, dilation: int) -> int:
    """Extent of a dilated kernel: ``(k - 1) * d + 1``."""
    return (kernel - 1) * dilation + 1


def output_length(n: int, kernel: int, stride: int, dilation: int, pad_begin: int, pad_end: int) -> int:
    """``floor((n + p_b + p_e - k_eff) / s) + 1`` (see module docstring)."""
    return (n + pad_begin + pad_end - effective_kernel(kernel, dilation)) // stride + 1


def same_padding(spatial: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
                 dilation: Sequence[int]) -> Padding:
    """MATLAB/TensorFlow 'same' padding ``(begins..., ends...)``; the odd extra goes to the end."""
    begins, ends = [], []
    for n, k, s, d in zip(spatial, kernel, stride, dilation):
        out = -(-n // s)
        total = max((out - 1) * s + effective_kernel(k, d) - n, 0)
        begins.append(total // 2)
        ends.append(total - total // 2)
    return tuple(begins + ends)


def causal_padding(kernel: Sequence[int], dilation: Sequence[int]) -> Padding:
    """1-D causal padding: ``((k - 1) * d, 0)``."""
    if len(kernel) != 1:
        raise LayerConfigError(f"'causal' padding is defined for 1-D inputs only, got {len(kernel)}-D.")
    return ((kernel[0] - 1) * dilation[0], 0)


def resolve_padding(padding: Any, spatial: Sequence[int], kernel: Sequence[int],
                    stride: Sequence[int], dilation: Sequence[int]) -> Padding:
    """Turn any padding specification into explicit ``(begins..., ends...)``.

    ``padding`` is ``"same"``, ``"causal"``, ``"valid"`` (zero), an int (same on
    every side), N ints (symmetric per axis) or 2N ints ``(begins..., ends...)``.
    """
    nd = len(spatial)
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "same":
            return same_padding(spatial, kernel, stride, dilation)
        if mode == "causal":
            return causal_padding(kernel, dilation)
        if mode == "valid":
            return (0,) * (2 * nd)
        raise LayerConfigError(f"unknown padding mode {padding!r}; use 'same', 'causal', 'valid' or numbers.")
    values = (int(padding),) * nd if isinstance(padding, int) else tuple(int(p) for p in padding)
    if len(values) == nd:
        values = values + values
    if len(values) != 2 * nd or any(p < 0 for p in values):
        raise LayerConfigError(
            f"padding {padding!r} does not fit {nd} spatial dimension(s): give {nd} or {2 * nd} "
            "non-negative integers (begins..., ends...).")
    return values


def pad_constant(x: Any, padding: Padding, value: float = 0.0) -> Any:
    """Pad the spatial axes of a (B, C, *spatial) array with a constant; no copy when padding is zero."""
    nd = len(padding) // 2
    if not any(padding):
        return x
    from ..backend import get_xp
    xp = get_xp(x)
    widths = [(0, 0), (0, 0)] + [(padding[i], padding[nd + i]) for i in range(nd)]
    return xp.pad(x, widths, mode="constant", constant_values=value)


def unpad(x: Any, padding: Padding) -> Any:
    """Crop what :func:`pad_constant` added (the adjoint of zero padding)."""
    nd = len(padding) // 2
    slices = [slice(None), slice(None)]
    for i in range(nd):
        slices.append(slice(padding[i], x.shape[2 + i] - padding[nd + i]))
    return x[tuple(slices)]
