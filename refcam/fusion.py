"""Fast mode: fold inference batch normalisation into the convolution before it.

The reference mode (an unmodified :class:`~refcam.network.Network`) evaluates
every layer literally. :func:`fuse_batchnorm` returns a second network in which
each batch-normalisation layer that directly follows a convolution is merged
into it. With per-filter ``a[f] = scale[f] / sqrt(variance[f] + epsilon)``::

    bn(conv(x))[f] = scale[f] * (conv(x)[f] - mean[f]) / sqrt(variance[f] + epsilon) + offset[f]
                   = sum_{c, k} (a[f] * w[f, c, k]) * x_pad[c, o*s + k*d]
                     + (a[f] * (bias[f] - mean[f]) + offset[f])

so the fused layer is one convolution with weights ``w'[f] = a[f] * w[f]`` and
bias ``b'[f] = a[f] * (bias[f] - mean[f]) + offset[f]`` (``bias = 0`` when the
convolution has none). The two networks compute the same function; they differ
only in floating-point rounding, because the products are rounded in another
order (in float64 the outputs agree to a few units of 1e-16 relative per layer;
``docs/performance.md`` gives the measured difference on the benchmark networks).

Which pairs are fused: a batch-normalisation layer whose single input is a
convolution layer (any of 1-D, 2-D, 3-D, grouped) with weights, when that
batch normalisation is the convolution's only consumer. The fused layer takes
the **batch-normalisation layer's name** (so feature layers such as
``res5b_relu`` and every downstream connection are unchanged) and the
convolution's inputs; the convolution's own name disappears from the network
(with any alias of it; the other aliases are kept).
All other layers are shared with the original network, which is not modified.
"""
from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

from .backend import get_xp
from .layers.convolution import ConvolutionLayer
from .layers.normalization import BatchNormalizationLayer
from .network import Network


def fused_parameters(conv_layer: ConvolutionLayer, bn_layer: BatchNormalizationLayer) -> tuple[Any, Any]:
    """``(w', b')`` of the module docstring: the convolution that equals ``bn_layer(conv_layer(x))``.

    Computed in the parameters' precision (float64 for float64 parameters).
    """
    weights = conv_layer.weights
    xp = get_xp(weights)
    variance = xp.asarray(bn_layer.trained_variance).reshape(-1)
    a = xp.asarray(bn_layer.scale).reshape(-1) / xp.sqrt(variance + float(bn_layer.epsilon))   # (F,)
    bias = (xp.zeros(weights.shape[0], dtype=weights.dtype) if conv_layer.bias is None
            else xp.asarray(conv_layer.bias).reshape(-1))
    fused_weights = weights * a.reshape((-1,) + (1,) * (weights.ndim - 1))
    mean, offset = xp.asarray(bn_layer.trained_mean).reshape(-1), xp.asarray(bn_layer.offset).reshape(-1)
    fused_bias = a * (bias - mean) + offset
    return fused_weights, fused_bias


def _fusable_pairs(net: Network) -> dict[str, ConvolutionLayer]:
    """``{batch-norm name: convolution}`` for every batch norm that can absorb its input convolution."""
    uses = Counter(source for layer in net.layers for source in layer.inputs)
    pairs = {}
    for layer in net.layers:
        if not isinstance(layer, BatchNormalizationLayer) or len(layer.inputs) != 1:
            continue
        source = net.layer(layer.inputs[0])
        if (isinstance(source, ConvolutionLayer) and source.weights is not None
                and uses[source.name] == 1 and layer.trained_mean is not None):
            pairs[layer.name] = source
    return pairs


def fuse_batchnorm(net: Network) -> Network:
    """A copy of ``net`` with every batch normalisation that follows a convolution folded into it.

    The default (unfused) network stays the literal reference; use the fused one
    where speed matters more than matching the reference to the last bit (it
    agrees within float64 rounding). The original network is not modified.

    >>> fast = fuse_batchnorm(net)              # doctest: +SKIP
    >>> gradcam(fast, image, "cat")             # doctest: +SKIP
    """
    pairs = _fusable_pairs(net)
    absorbed = {conv_layer.name for conv_layer in pairs.values()}
    layers = []
    for layer in net.layers:
        if layer.name in absorbed:
            continue
        if layer.name in pairs:
            conv_layer = pairs[layer.name]
            weights, bias = fused_parameters(conv_layer, layer)
            layer = dataclasses.replace(conv_layer, name=layer.name, inputs=conv_layer.inputs,
                                        weights=weights, bias=bias)
        layers.append(layer)
    aliases = {alias: target for alias, target in net.aliases.items() if target not in absorbed}
    return Network(layers, name=net.name, aliases=aliases)
