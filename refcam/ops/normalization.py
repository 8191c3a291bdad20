"""Batch normalisation (inference form) and layer normalisation.

Layout: ``x`` is (B, C, *spatial) with 0 to 3 spatial axes; every parameter
(``mean``, ``variance``, ``scale``, ``offset``) has shape (C,) and is broadcast
along axis 1. The output has ``x``'s shape and dtype: parameters are cast to
``x``'s dtype, and their gradients are in it too.

Batch normalisation with stored statistics (MATLAB ``batchNormalizationLayer``
at prediction, PyTorch ``eval()`` mode)::

    inv_std = 1 / sqrt(variance + epsilon)
    x_hat   = (x - mean) * inv_std
    y       = scale * x_hat + offset

It is affine in ``x``, so its VJPs are sums over every axis but the channel
axis (written ``S[.]``)::

    dx        = g * scale * inv_std
    dscale    = S[g * x_hat]
    doffset   = S[g]
    dmean     = -S[g] * scale * inv_std
    dvariance = -S[g * (x - mean)] * scale * inv_std**3 / 2

Layer normalisation over the internal axes ``axes`` (which exclude the batch
axis 0) of each observation, with the biased variance (divide by the count
``N`` of elements normalised together, ``M[.]`` the mean over ``axes``)::

    mu      = M[x]
    var     = M[(x - mu)**2]
    inv_std = 1 / sqrt(var + epsilon)
    x_hat   = (x - mu) * inv_std
    y       = scale * x_hat + offset

MATLAB's ``layerNormalizationLayer`` is ``axes = (1, ..., ndim - 1)``
("batch-excluded", the R2021a rule, and "spatial-channel" for images) or
``axes = (1,)`` ("channel-only"). Its VJP, with ``h = g * scale`` the gradient
with respect to ``x_hat``::

    dx      = inv_std * (h - M[h] - x_hat * M[h * x_hat])
    dscale  = S[g * x_hat]
    doffset = S[g]

Both ops are smooth everywhere (``epsilon > 0`` keeps ``inv_std`` finite).
"""
from __future__ import annotations

from typing import Any, Sequence

from ..autodiff import Tensor, record
from ..backend import get_xp
from ..errors import LayerConfigError, ShapeError


# --- shared helpers -------------------------------------------------------------
def per_channel(param: Any, ndim: int, dtype: Any) -> Any:
    """A (C,) parameter as a (1, C, 1, ..., 1) array of ``ndim`` axes and ``dtype``."""
    return param.astype(dtype, copy=False).reshape((1, -1) + (1,) * (ndim - 2))


def sum_but_channels(a: Any) -> Any:
    """Sum a (B, C, *spatial) array over every axis but the channels: shape (C,)."""
    return a.sum(axis=(0,) + tuple(range(2, a.ndim)))


def _check_channel_params(op: str, x: Tensor, params: dict[str, Tensor]) -> None:
    """Raise ShapeError unless ``x`` is (B, C, ...) and every parameter has shape (C,)."""
    if x.ndim < 2:
        raise ShapeError(f"{op}: the input must be (B, C, *spatial), got shape {x.shape}.")
    channels = x.shape[1]
    for name, p in params.items():
        if p.shape != (channels,):
            raise ShapeError(
                f"{op}: {name} has shape {p.shape}, expected ({channels},) for an input of shape "
                f"{x.shape} (one value per channel); check the layer's parameters.")


# --- batch normalisation --------------------------------------------------------
def batch_norm_forward(x: Any, mean: Any, variance: Any, scale: Any, offset: Any,
                       epsilon: float) -> Any:
    """``scale * (x - mean) / sqrt(variance + epsilon) + offset``, per channel."""
    xp = get_xp(x)
    inv_std = 1.0 / xp.sqrt(per_channel(variance, x.ndim, x.dtype) + epsilon)
    y = x - per_channel(mean, x.ndim, x.dtype)        # the same operations in the same order as
    y *= inv_std                                      # scale * ((x - mean) * inv_std) + offset,
    y *= per_channel(scale, x.ndim, x.dtype)          # updated in place: one temporary, not four
    y += per_channel(offset, x.ndim, x.dtype)
    return y


def batch_norm_vjp(x: Any, mean: Any, variance: Any, scale: Any, grad_y: Any, epsilon: float,
                   needs: Sequence[bool]) -> tuple[Any, ...]:
    """Gradients for ``(x, mean, variance, scale, offset)``; ``None`` where not needed."""
    xp = get_xp(x)
    scale_c = scale.astype(x.dtype, copy=False)  # (C,)
    inv_std = 1.0 / xp.sqrt(variance.astype(x.dtype, copy=False) + epsilon)  # (C,)
    grad_x = grad_y * per_channel(scale_c * inv_std, x.ndim, x.dtype) if needs[0] else None
    sum_g = sum_but_channels(grad_y) if needs[1] or needs[4] else None
    sum_g_centred = (sum_but_channels(grad_y * (x - per_channel(mean, x.ndim, x.dtype)))
                     if needs[2] or needs[3] else None)
    return (grad_x,
            -sum_g * scale_c * inv_std if needs[1] else None,
            -0.5 * sum_g_centred * scale_c * inv_std ** 3 if needs[2] else None,
            sum_g_centred * inv_std if needs[3] else None,
            sum_g if needs[4] else None)


def batch_norm(x: Tensor, mean: Tensor, variance: Tensor, scale: Tensor, offset: Tensor, *,
               epsilon: float) -> Tensor:
    """Inference-mode batch normalisation with stored per-channel statistics.

    ``y = scale * (x - mean) / sqrt(variance + epsilon) + offset``; ``x`` is
    (B, C, *spatial), the four parameters are (C,). MATLAB's default epsilon is
    1e-5, Keras's 1e-3: the layer always passes its own.

    >>> import numpy as np
    >>> c = lambda v: Tensor(np.array([v]))
    >>> batch_norm(Tensor(np.array([[3.0]])), c(1.0), c(4.0), c(2.0), c(0.5), epsilon=0.0).data
    array([[2.5]])
    """
    params = {"mean": mean, "variance": variance, "scale": scale, "offset": offset}
    _check_channel_params("batch_norm", x, params)
    epsilon = float(epsilon)
    y = batch_norm_forward(x.data, mean.data, variance.data, scale.data, offset.data, epsilon)

    def vjp(g, needs):
        return batch_norm_vjp(x.data, mean.data, variance.data, scale.data, g, epsilon, needs)
    return record("batch_norm", y, (x, mean, variance, scale, offset), vjp)


# --- layer normalisation --------------------------------------------------------
def normalised_axes(axes: Sequence[int], ndim: int) -> tuple[int, ...]:
    """Validate layer-norm axes for an ``ndim``-axis input: sorted, non-negative, without axis 0.

    Raises :class:`~refcam.errors.LayerConfigError` for an empty tuple, a repeated
    axis, the batch axis or an axis out of range.
    """
    axes = tuple(int(a) for a in axes)
    resolved = tuple(sorted(a % ndim for a in axes if -ndim <= a < ndim))
    if not axes or len(resolved) != len(axes) or len(set(resolved)) != len(resolved) or 0 in resolved:
        raise LayerConfigError(
            f"layer_norm axes {axes} are invalid for an input with {ndim} axes (B, C, *spatial): "
            f"give distinct axes among 1..{ndim - 1}; axis 0 is the batch.")
    return resolved


def layer_norm_statistics(x: Any, axes: tuple[int, ...], epsilon: float) -> tuple[Any, Any]:
    """``(x_hat, inv_std)``: ``x`` standardised over ``axes`` and ``1 / sqrt(var + epsilon)``.

    ``inv_std`` keeps the reduced axes as size 1, so it broadcasts against ``x``.
    """
    xp = get_xp(x)
    centred = x - x.mean(axis=axes, keepdims=True)
    inv_std = 1.0 / xp.sqrt((centred * centred).mean(axis=axes, keepdims=True) + epsilon)
    return centred * inv_std, inv_std


def layer_norm_forward(x: Any, scale: Any, offset: Any, axes: tuple[int, ...],
                       epsilon: float) -> tuple[Any, Any, Any]:
    """``(y, x_hat, inv_std)`` with ``y = scale * x_hat + offset``; the VJP reuses ``x_hat, inv_std``."""
    x_hat, inv_std = layer_norm_statistics(x, axes, epsilon)
    y = per_channel(scale, x.ndim, x.dtype) * x_hat + per_channel(offset, x.ndim, x.dtype)
    return y, x_hat, inv_std


def layer_norm_vjp_x(x_hat: Any, inv_std: Any, scale: Any, grad_y: Any,
                     axes: tuple[int, ...]) -> Any:
    """``inv_std * (h - M[h] - x_hat * M[h * x_hat])`` with ``h = g * scale``, ``M`` the mean over ``axes``."""
    grad_x_hat = grad_y * per_channel(scale, x_hat.ndim, x_hat.dtype)
    return inv_std * (grad_x_hat - grad_x_hat.mean(axis=axes, keepdims=True)
                      - x_hat * (grad_x_hat * x_hat).mean(axis=axes, keepdims=True))


def layer_norm(x: Tensor, scale: Tensor, offset: Tensor, *, axes: Sequence[int],
               epsilon: float) -> Tensor:
    """Layer normalisation over the internal axes ``axes`` of each observation.

    ``x`` is (B, C, *spatial); ``scale`` and ``offset`` are (C,). ``axes`` lists
    the axes normalised together (never 0): all non-batch axes for MATLAB's
    "batch-excluded"/"spatial-channel" rule, ``(1,)`` for "channel-only".

    >>> import numpy as np
    >>> one, zero = Tensor(np.ones(2)), Tensor(np.zeros(2))
    >>> layer_norm(Tensor(np.array([[1.0, 3.0]])), one, zero, axes=(1,), epsilon=0.0).data
    array([[-1.,  1.]])
    """
    _check_channel_params("layer_norm", x, {"scale": scale, "offset": offset})
    axes = normalised_axes(axes, x.ndim)
    epsilon = float(epsilon)
    y, x_hat, inv_std = layer_norm_forward(x.data, scale.data, offset.data, axes, epsilon)

    def vjp(g, needs):
        grad_x = layer_norm_vjp_x(x_hat, inv_std, scale.data, g, axes) if needs[0] else None
        grad_scale = sum_but_channels(g * x_hat) if needs[1] else None
        grad_offset = sum_but_channels(g) if needs[2] else None
        return grad_x, grad_scale, grad_offset
    return record("layer_norm", y, (x, scale, offset), vjp)
