"""Input layers: ``imageInputLayer``, ``image3dInputLayer``, ``sequenceInputLayer``.

An input layer has no inputs; it fixes the per-observation shape of the network
input and normalises it. ``input_size`` is given in MATLAB order (``[h w c]``,
``[h w d c]``, or ``c`` for sequences); internally an observation is
``(C, *S)``: ``(c, h, w)``, ``(c, h, w, d)``, ``(c, T)`` with ``T`` free (None).

Normalisations (``x`` the (B, C, *S) input, statistics broadcast over the batch)::

    "none"               y = x
    "zerocenter"         y = x - mean
    "zscore"             y = (x - mean) / standard_deviation
    "rescale-symmetric"  y = 2 (x - min) / (max - min) - 1
    "rescale-zero-one"   y = (x - min) / (max - min)

Statistics are stored in internal layout, per element ``(C, *S)``, per channel
``(C, 1, ..., 1)`` or scalar (``(1, ..., 1)`` or 0-d), and broadcast as stored.
MATLAB's ``h x w x c`` statistic becomes ``(c, h, w)`` (``transpose(2, 0, 1)``).
The normalisation is affine, so it is differentiable everywhere.

Limits: each entry of ``input_size`` and ``min_length`` is an integer from 1 to
``MAX_OBSERVATION_ELEMENTS`` (2**28), and a network refuses an observation of
more elements than that (SizeLimitError); ``normalization`` is one of the names
above (case-insensitive).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..autodiff import Tensor
from ..errors import LayerShapeError, MissingParameterError, ParameterError, ParameterShapeError
from .base import Layer, param, register
from .common import (MAX_OBSERVATION_ELEMENTS, as_array, check_input_count, choice, constant,
                     describe_owner, int_tuple, positive_int, size_text)

NORMALIZATIONS = ("none", "zerocenter", "zscore", "rescale-symmetric", "rescale-zero-one")
NEEDED_STATISTICS = {
    "none": (),
    "zerocenter": ("mean",),
    "zscore": ("mean", "standard_deviation"),
    "rescale-symmetric": ("min", "max"),
    "rescale-zero-one": ("min", "max"),
}


@dataclass(eq=False, kw_only=True)
class InputLayer(Layer):
    """Common base of the input layers: normalisation of a ``(C, *S)`` observation."""

    input_size: Any
    normalization: str = "zerocenter"
    mean: Any = param(default=None)
    standard_deviation: Any = param(default=None)
    min: Any = param(default=None)
    max: Any = param(default=None)

    num_inputs = 0
    spatial_rank: ClassVar[int] = 0
    default_format: ClassVar[str] = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.input_size = self._validated_size(self.input_size)
        self.normalization = choice(self, "normalization", self.normalization, NORMALIZATIONS)
        for stat in ("mean", "standard_deviation", "min", "max"):
            setattr(self, stat, as_array(self, stat, getattr(self, stat)))
            self._check_statistic(stat)
        for stat in NEEDED_STATISTICS[self.normalization]:
            if getattr(self, stat) is None:
                raise MissingParameterError(
                    f"{describe_owner(self)}: normalization {self.normalization!r} needs the "
                    f"statistic {stat!r}; give it (internal layout (C, *S), per channel or scalar).", stat)
        self._check_rescale_range()

    # -- shapes ---------------------------------------------------------------------
    def _validated_size(self, size: Any) -> tuple[int, ...]:
        return int_tuple(self, "input_size", size, self.spatial_rank + 1, 1, MAX_OBSERVATION_ELEMENTS)

    def per_observation_shape(self) -> tuple[int | None, ...]:
        """Internal ``(C, *S)`` of one observation; None for a free (time) axis."""
        *spatial, channels = self.input_size
        return (channels, *spatial)

    def output_shape(self, *shapes: tuple[int, ...]) -> tuple[int | None, ...]:
        """The per-observation shape (an input layer takes no inputs)."""
        check_input_count(self, shapes)
        return self.per_observation_shape()

    def _check_statistic(self, stat: str) -> None:
        array = getattr(self, stat)
        if array is None or array.ndim == 0:
            return
        expected = self.per_observation_shape()
        fits = array.ndim == len(expected) and all(
            found in (1, want) for found, want in zip(array.shape, expected))
        if not fits:
            shown = ", ".join("1" if n is None else f"{n} or 1" for n in expected)
            raise ParameterShapeError(
                f"{describe_owner(self)}: statistic {stat!r} has shape {tuple(array.shape)}; expected "
                f"({shown}) in internal layout (C, *S), or a 0-d scalar.", stat)

    def _check_rescale_range(self) -> None:
        if self.normalization.startswith("rescale") and bool((self.max <= self.min).any()):
            raise ParameterError(
                f"{describe_owner(self)}: normalization {self.normalization!r} needs max > min "
                "everywhere; some entries of 'max' are <= 'min'.", "max")

    def _check_input(self, shape: tuple[int, ...]) -> None:
        expected = self.per_observation_shape()
        found = tuple(shape[1:])
        if len(found) != len(expected) or any(e is not None and e != f for e, f in zip(expected, found)):
            raise LayerShapeError(
                f"{describe_owner(self)} expects observations of internal shape {expected} "
                f"(None: any length); found {found} (batch shape {tuple(shape)}).")

    # -- maths ----------------------------------------------------------------------
    def forward(self, *xs: Tensor) -> Tensor:
        """Normalise ``x`` (B, C, *S) as ``normalization`` says (see the module docstring)."""
        (x,) = xs
        self._check_input(x.shape)
        mode = self.normalization
        if mode == "none":
            return x
        if mode == "zerocenter":
            return x - constant(self, "mean", x)
        if mode == "zscore":
            return (x - constant(self, "mean", x)) / constant(self, "standard_deviation", x)
        low, high = constant(self, "min", x), constant(self, "max", x)
        unit = (x - low) / (high - low)
        return unit * 2.0 - 1.0 if mode == "rescale-symmetric" else unit

    def _normalization_text(self) -> str:
        return "" if self.normalization == "none" else f" with '{self.normalization}' normalization"


@register
@dataclass(eq=False, kw_only=True)
class ImageInputLayer(InputLayer):
    """MATLAB ``imageInputLayer(inputSize)``: ``input_size = (h, w, c)``; internal ``(c, h, w)``.

    ``y = normalize(x)`` (module docstring); default normalisation ``"zerocenter"``.
    """

    kind = "image_input"
    type = "Image Input"
    spatial_rank = 2
    default_format = "SSC"

    def describe(self) -> str:
        """``28x28x1 images with 'zerocenter' normalization``."""
        return f"{size_text(self.input_size)} images{self._normalization_text()}"


@register
@dataclass(eq=False, kw_only=True)
class Image3dInputLayer(InputLayer):
    """MATLAB ``image3dInputLayer(inputSize)``: ``input_size = (h, w, d, c)``; internal ``(c, h, w, d)``.

    ``y = normalize(x)`` (module docstring); default normalisation ``"zerocenter"``.
    """

    kind = "image3d_input"
    type = "3-D Image Input"
    spatial_rank = 3
    default_format = "SSSC"

    def describe(self) -> str:
        """``28x28x28x1 images with 'zerocenter' normalization``."""
        return f"{size_text(self.input_size)} images{self._normalization_text()}"


@register
@dataclass(eq=False, kw_only=True)
class SequenceInputLayer(InputLayer):
    """MATLAB ``sequenceInputLayer(inputSize)``: ``input_size = c`` features; internal ``(c, T)``.

    ``y = normalize(x)`` (module docstring); default normalisation ``"none"``.
    Sequences shorter than ``min_length`` are refused.
    """

    normalization: str = "none"
    min_length: int = 1

    kind = "sequence_input"
    type = "Sequence Input"
    spatial_rank = 1
    default_format = "CT"

    def __post_init__(self) -> None:
        self.min_length = positive_int(self, "min_length", self.min_length)
        super().__post_init__()

    def _validated_size(self, size: Any) -> int:
        return positive_int(self, "input_size", size)

    def per_observation_shape(self) -> tuple[int | None, ...]:
        """``(C, None)``: the time axis is free."""
        return (self.input_size, None)

    def _check_input(self, shape: tuple[int, ...]) -> None:
        super()._check_input(shape)
        if shape[2] < self.min_length:
            raise LayerShapeError(
                f"{describe_owner(self)} needs sequences of at least {self.min_length} steps; "
                f"found {shape[2]}.")

    def describe(self) -> str:
        """``Sequence input with 12 dimensions`` (MATLAB does not show the normalisation here)."""
        return f"Sequence input with {self.input_size} dimensions"
