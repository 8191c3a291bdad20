"""Input layouts: the only place where a caller's array is put into refcam's layout.

Format strings
--------------
A ``format`` names each axis of the caller's array with one letter, as MATLAB's
``dlarray`` does: ``S`` spatial, ``C`` channel, ``B`` batch (observations),
``T`` time. Letters are case-insensitive (normalised to upper case); ``C``,
``B`` and ``T`` appear at most once each. Examples: ``"SSC"`` (an h x w x c
image, MATLAB's default), ``"SSCB"`` (a batch), ``"CSS"`` / ``"BCSS"``
(PyTorch's layout), ``"SSSC"`` (a volume), ``"CT"`` / ``"CBT"`` / ``"TCB"``
(sequences).

The conversion
--------------
Inside refcam every array is ``(B, C, *spatial)``. :func:`to_internal` maps a
caller's array ``x`` with format ``f`` to that layout:

* the default format is the input layer's (``SSC`` for image input, ``SSSC``
  for 3-D image input, ``CT`` for sequence input);
* trailing axes of size 1 may be left out, as MATLAB drops trailing singleton
  dimensions: an ``h x w`` array is an ``h x w x 1`` image in format ``SSC``;
* a format without ``B`` means one observation (batch 1);
* ``S`` and ``T`` axes are the internal spatial axes, kept in their order of
  appearance in ``f``; their number must equal the input layer's spatial rank;
* the data are converted to the compute dtype (float64 by default, float32 on
  request) from any real dtype (float16/32/64, int8..64, uint8..64); bool,
  complex, object and string arrays are refused, so are NaN and Inf;
* the channel count and the spatial size must be the input layer's; a sequence
  may have any length ``>= MinLength``.

With ``x_c`` the caller's array (padded with trailing singleton axes) and
``b, c, s_1..s_N`` the positions of the letters ``B, C`` and the spatial
letters in ``f``, the result is ``x_c.transpose(b, c, s_1, ..., s_N)``
(a leading batch axis of size 1 is inserted first when ``f`` has no ``B``).

The returned :class:`Layout` remembers ``f`` and the caller's sizes, and
:meth:`Layout.from_internal` applies the inverse permutation to a result.

Map side (Grad-CAM): maps computed internally as ``(K, B, *S)`` (K labels) are
returned in MATLAB's map layout ``(*S, [K], [B])`` by
:meth:`Layout.map_from_internal`: spatial axes first in the caller's order (a
single spatial/time axis as MATLAB's ``1 x t`` row), then the label axis when
several labels were asked for, then the batch axis when the format has ``B``.
:meth:`Layout.map_for_resize` / :meth:`Layout.map_from_resized` wrap the
resize, which takes ``(*S, K*B)``.

Arrays stay on their device: NumPy in, NumPy out; CuPy in, CuPy out.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .backend import get_xp, resolve_dtype
from .errors import FormatStringError, InputDtypeError, InputError, NonFiniteInputError, ShapeError

FORMAT_LETTERS = "SCBT"
SPATIAL_LETTERS = "ST"
ACCEPTED_DTYPE_KINDS = "fiu"  # real floats, signed and unsigned integers
ACCEPTED_DTYPES_TEXT = "float16/32/64, int8/16/32/64 or uint8/16/32/64"


def parse_format(fmt: str) -> str:
    """Validate a format string and return it in upper case.

    Letters: ``S`` (spatial, any number), ``C``, ``B``, ``T`` (at most one each).

    >>> parse_format("sscb")
    'SSCB'

    Raises
    ------
    FormatStringError
        When ``fmt`` is not a non-empty string of those letters or repeats C, B or T.
    """
    allowed = ("letters S (spatial, any number), C (channel), B (batch) and T (time), "
               "with at most one each of C, B and T, e.g. 'SSC', 'SSCB', 'CT', 'CBT'")
    if not isinstance(fmt, str) or not fmt:
        raise FormatStringError(f"format must be a non-empty string of {allowed}; got {fmt!r}.")
    letters = fmt.upper()
    unknown = sorted(set(letters) - set(FORMAT_LETTERS))
    if unknown:
        raise FormatStringError(
            f"format {fmt!r} has the letter(s) {', '.join(map(repr, unknown))}; "
            f"a format is made of {allowed}.")
    repeated = [letter for letter in "CBT" if letters.count(letter) > 1]
    if repeated:
        raise FormatStringError(
            f"format {fmt!r} has more than one {' / '.join(repeated)}; a format is made of {allowed}.")
    return letters


@dataclass(frozen=True)
class Layout:
    """The caller's layout of an input: its format letters and its array shape.

    ``format`` is upper case and names every axis of ``shape`` (``shape`` has
    any left-out trailing singleton axes restored). ``spatial_sizes`` are in
    the caller's order, which is also the internal order.

    >>> layout = Layout("SSC", (28, 28, 1))
    >>> layout.batch_size, layout.channels, layout.spatial_sizes
    (1, 1, (28, 28))
    """

    format: str
    shape: tuple[int, ...]

    @property
    def has_batch_axis(self) -> bool:
        """True when the caller's format has a ``B`` axis."""
        return "B" in self.format

    @property
    def batch_size(self) -> int:
        """Number of observations (1 when the format has no ``B``)."""
        return self.shape[self.format.index("B")] if self.has_batch_axis else 1

    @property
    def channels(self) -> int:
        """Size of the ``C`` axis."""
        return self.shape[self.format.index("C")]

    @property
    def spatial_letters(self) -> str:
        """The ``S``/``T`` letters in the caller's order, e.g. ``"SS"`` or ``"T"``."""
        return "".join(letter for letter in self.format if letter in SPATIAL_LETTERS)

    @property
    def spatial_sizes(self) -> tuple[int, ...]:
        """Sizes of the spatial/time axes, in the caller's (= internal) order."""
        return tuple(n for letter, n in zip(self.format, self.shape) if letter in SPATIAL_LETTERS)

    def internal_permutation(self) -> tuple[int, ...]:
        """Axes of the caller's array (with a leading batch axis when ``B`` is absent) in internal order."""
        letters = self.format if self.has_batch_axis else "B" + self.format
        spatial = tuple(i for i, letter in enumerate(letters) if letter in SPATIAL_LETTERS)
        return (letters.index("B"), letters.index("C"), *spatial)

    def from_internal(self, y: Any) -> Any:
        """Put a network result ``(B, C, *spatial)`` back in the caller's layout.

        * A result without spatial extent, ``(B, K)`` or ``(B, K, 1, ..., 1)`` (a
          classifier's scores after global pooling, a regression), is returned as
          ``(B, K)``: MATLAB's N x K.
        * A result with as many spatial axes as the input is returned in the
          caller's letters with the result's sizes: ``(B, K, h', w')`` for
          format ``"SSC"`` becomes ``h' x w' x K`` (the batch axis, of size 1,
          is dropped when the format has no ``B``).

        >>> Layout("SSC", (4, 4, 3)).from_internal(np.zeros((1, 5, 2, 2))).shape
        (2, 2, 5)
        >>> Layout("SSC", (4, 4, 3)).from_internal(np.zeros((1, 5, 1, 1))).shape
        (1, 5)

        Raises
        ------
        ShapeError
            When the result has spatial axes but not as many as the input.
        """
        if y.ndim == 2:
            return y
        if all(n == 1 for n in y.shape[2:]):
            return y.reshape(y.shape[:2])
        if y.ndim != 2 + len(self.spatial_letters):
            raise ShapeError(
                f"a result of shape {tuple(y.shape)} (B, C, *spatial) cannot be put in the input's "
                f"format {self.format!r}: it has {y.ndim - 2} spatial axes, the input "
                f"{len(self.spatial_letters)}; use Network.activations for the internal layout.")
        inverse = tuple(int(i) for i in np.argsort(self.internal_permutation()))
        result = y.transpose(inverse)  # internal (B, C, *S) -> caller's letters (with B)
        return result if self.has_batch_axis else result[0]

    # -- the map side (Grad-CAM) ------------------------------------------------------
    def map_from_internal(self, maps: Any, stacked: bool) -> Any:
        """Grad-CAM maps ``(K, B, *S)`` (K labels, B observations) in MATLAB's map layout.

        The spatial axes come first, in the caller's order: ``h x w``,
        ``h x w x d``, or ``1 x t`` for one spatial/time axis (MATLAB stores a
        sequence map as a row); then the label axis ``K`` when ``stacked`` (a
        sequence of labels was given, else K must be 1 and is dropped); then
        the batch axis ``B`` when the caller's format has one (else B is 1 and
        is dropped).

        >>> Layout("SSCB", (4, 5, 3, 2)).map_from_internal(np.zeros((3, 2, 4, 5)), stacked=True).shape
        (4, 5, 3, 2)
        >>> Layout("CT", (3, 9)).map_from_internal(np.zeros((1, 1, 9)), stacked=False).shape
        (1, 9)
        """
        labels, batch, *spatial = (int(n) for n in maps.shape)
        if (labels != 1 and not stacked) or (batch != 1 and not self.has_batch_axis):
            raise ShapeError(
                f"maps of shape {tuple(maps.shape)} (K, B, *S) cannot drop their label axis "
                f"(stacked={stacked}) or batch axis (format {self.format!r}): those must have size 1.")
        matlab_spatial = (1, *spatial) if len(spatial) == 1 else tuple(spatial)
        shape = (matlab_spatial + ((labels,) if stacked else ())
                 + ((batch,) if self.has_batch_axis else ()))
        by_position = maps.transpose((*range(2, maps.ndim), 0, 1))  # (*S, K, B)
        return by_position.reshape(shape)

    def map_for_resize(self, maps: Any) -> Any:
        """Maps ``(K, B, *S)`` as ``(*S, K*B)``, the ``(*spatial, K)`` layout ``resize_map`` takes.

        Entry ``[..., k*B + b]`` is label ``k`` of observation ``b``.
        """
        labels, batch, *spatial = maps.shape
        return maps.reshape((labels * batch, *spatial)).transpose((*range(1, maps.ndim - 1), 0))

    def map_resize_size(self) -> tuple[int, ...]:
        """The size resized maps get: the input's spatial sizes, in the caller's order."""
        return self.spatial_sizes

    def map_from_resized(self, resized: Any, stacked: bool) -> Any:
        """Resized maps ``(*S', K*B)`` (from :meth:`map_for_resize`) in MATLAB's map layout.

        Same layout rules as :meth:`map_from_internal`.
        """
        *spatial, labels_by_batch = resized.shape
        maps = resized.transpose((resized.ndim - 1, *range(resized.ndim - 1)))  # (K*B, *S')
        maps = maps.reshape((labels_by_batch // self.batch_size, self.batch_size, *spatial))
        return self.map_from_internal(maps, stacked)

    def mask_to_internal(self, mask: Any, spatial: tuple[int, ...]) -> Any:
        """A pixel mask over a layer output's spatial axes, given in MATLAB order, as internal ``(*S)``.

        The spatial axes keep the caller's order inside refcam, so the mask is
        returned as it is; for one spatial/time axis of length ``n`` both ``n``
        and MATLAB's row ``1 x n`` are accepted.

        Raises
        ------
        InputError
            When the mask's shape is not ``spatial`` (or ``(1, n)`` for ``spatial = (n,)``).
        """
        spatial = tuple(int(n) for n in spatial)
        found = tuple(int(n) for n in mask.shape)
        if not spatial:
            raise InputError(
                f"a mask selects positions of the reduction layer's output, but that output has no spatial or "
                f"time axes (one value per class), so there is nothing to mask (the mask has shape {found}). "
                "Leave mask= out, or choose a reduction_layer with spatial axes (a segmentation output).")
        if len(spatial) == 1 and found == (1, *spatial):
            return mask.reshape(spatial)
        if found != spatial:
            raise InputError(
                f"the mask has shape {found} but the layer output it selects from has spatial size "
                f"{_by(spatial)} (MATLAB order{', or 1 x n' if len(spatial) == 1 else ''}); give a "
                "mask of that size.")
        return mask


def to_internal(x: Any, input_layer: Any, format: str | None = None,
                dtype: Any = "float64") -> tuple[Any, Layout]:
    """Convert a caller's array to refcam's ``(B, C, *spatial)`` layout and compute dtype.

    Parameters
    ----------
    x : array
        NumPy or CuPy array (or nested lists) in the layout named by ``format``.
    input_layer : InputLayer
        The network's input layer: gives the default format, the spatial rank,
        the expected channel count and sizes, and ``min_length`` for sequences.
    format : str, optional
        The letters of ``x``'s axes (see :func:`parse_format`); default
        ``input_layer.default_format``.
    dtype : "float64" or "float32"
        The compute dtype.

    Returns
    -------
    (array, Layout)
        A C-contiguous array ``(B, C, *spatial)`` of ``dtype`` on ``x``'s device,
        and the caller's layout, to put results back (:meth:`Layout.from_internal`).

    Raises
    ------
    InputDtypeError, NonFiniteInputError, FormatStringError, InputError
        For a dtype that is not real, NaN/Inf values, a format that does not fit
        ``x`` or the input layer, and sizes other than the input layer's.

    >>> from refcam.layers import ImageInputLayer
    >>> layer = ImageInputLayer(name="in", input_size=(28, 28, 3), normalization="none")
    >>> x_internal, layout = to_internal(np.zeros((28, 28, 3, 5), dtype=np.uint8), layer, "SSCB")
    >>> x_internal.shape, x_internal.dtype, layout.batch_size
    ((5, 3, 28, 28), dtype('float64'), 5)
    """
    x = _as_array(x)
    letters = parse_format(input_layer.default_format if format is None else format)
    _check_format_fits_layer(letters, input_layer)
    compute_dtype = resolve_dtype(dtype)
    shape = _full_shape(x, letters)
    layout = Layout(letters, shape)
    _check_sizes(layout, input_layer)
    converted = _converted(x, compute_dtype, letters).reshape(layout.shape)
    if not layout.has_batch_axis:
        converted = converted[None]  # (1, *caller's shape): the batch axis comes first
    internal = converted.transpose(layout.internal_permutation())  # caller's letters -> (B, C, *S)
    return get_xp(internal).ascontiguousarray(internal), layout


def _as_array(x: Any) -> Any:
    """``x`` itself when it is a NumPy/CuPy array, else ``np.asarray(x)``; refuses non-real dtypes."""
    if not (hasattr(x, "shape") and hasattr(x, "dtype")):
        x = np.asarray(x)
    if x.dtype.kind not in ACCEPTED_DTYPE_KINDS:
        raise InputDtypeError(
            f"the input has dtype {x.dtype}; refcam accepts real numbers ({ACCEPTED_DTYPES_TEXT}). "
            f"Convert it first, e.g. x.astype('float64') for bool, or take x.real / abs(x) of a "
            f"complex array as your method requires.")
    return x


def _check_format_fits_layer(letters: str, input_layer: Any) -> None:
    """The format must have one C and as many S/T letters as the input layer has spatial axes."""
    n_spatial = sum(letter in SPATIAL_LETTERS for letter in letters)
    if "C" not in letters:
        raise FormatStringError(
            f"format {letters!r} has no channel axis C; name it (for one channel use e.g. "
            f"'{input_layer.default_format}', an array without a trailing size-1 axis is accepted).")
    if n_spatial != input_layer.spatial_rank:
        raise FormatStringError(
            f"format {letters!r} has {n_spatial} spatial/time axes (S, T), but the input layer "
            f"{input_layer.name!r} ({input_layer.type}) takes {input_layer.spatial_rank}; "
            f"use e.g. {input_layer.default_format!r} (or with a B axis for a batch).")


def _full_shape(x: Any, letters: str) -> tuple[int, ...]:
    """The shape of ``x`` with left-out trailing singleton axes restored, one size per letter."""
    if x.ndim > len(letters):
        raise InputError(
            f"the input has {x.ndim} dimensions (shape {tuple(x.shape)}) but format {letters!r} "
            f"names {len(letters)}; pass format= naming every axis, e.g. {letters + 'B'!r} "
            f"when the last axis holds the observations.")
    shape = tuple(int(n) for n in x.shape) + (1,) * (len(letters) - x.ndim)
    if 0 in shape:
        raise InputError(f"the input is empty (shape {tuple(x.shape)}, format {letters!r}); "
                         f"every axis needs at least one element.")
    return shape


def _check_sizes(layout: Layout, input_layer: Any) -> None:
    """Channels and spatial sizes must be the input layer's (sequences: length >= min_length)."""
    expected_channels, *expected_spatial = input_layer.per_observation_shape()
    where = f"input of shape {layout.shape} (format {layout.format!r})"
    if layout.channels != expected_channels:
        raise InputError(
            f"the {where} has {layout.channels} channels (C) but the input layer "
            f"{input_layer.name!r} expects {expected_channels}; check the format's C position.")
    for letter, found, expected in zip(layout.spatial_letters, layout.spatial_sizes, expected_spatial):
        if expected is None and found < input_layer.min_length:
            raise InputError(
                f"the {where} has {found} time steps ({letter}) but the input layer "
                f"{input_layer.name!r} needs at least MinLength = {input_layer.min_length}; "
                f"use a longer sequence.")
        if expected is not None and found != expected:
            raise InputError(
                f"the {where} has spatial size {_by(layout.spatial_sizes)} ({layout.spatial_letters}) "
                f"but the input layer {input_layer.name!r} expects {_by(expected_spatial)}; resize "
                f"the input (e.g. imresize) or check the format.")


def _by(sizes: Any) -> str:
    """``(28, 28)`` -> ``"28x28"`` (MATLAB's way of writing sizes)."""
    return "x".join(str(n) for n in sizes)


def _converted(x: Any, compute_dtype: np.dtype, letters: str) -> Any:
    """A copy of ``x`` as ``compute_dtype`` (caller's layout), checked for NaN/Inf (also from overflow)."""
    xp = get_xp(x)
    with np.errstate(over="ignore"):  # an overflow to Inf is reported below, with its position
        converted = x.astype(compute_dtype)  # always a copy: never aliases the caller's array
    if x.dtype.kind == "f":
        _check_finite(xp, x, converted, letters)
    return converted


def _check_finite(xp: Any, original: Any, converted: Any, letters: str) -> None:
    """Raise NonFiniteInputError saying how many values are NaN/Inf and where the first one is."""
    not_finite = ~xp.isfinite(converted)
    count = int(not_finite.sum())
    if count == 0:
        return
    first = tuple(int(i) for i in xp.argwhere(not_finite)[0])
    value = original[first]
    overflow = (f" (it is {float(value)!r} in {original.dtype}, beyond the range of {converted.dtype})"
                if bool(xp.isfinite(value)) else f" = {float(value)!r}")
    raise NonFiniteInputError(
        f"the input holds {count} NaN/Inf value(s) out of {converted.size}; the first is at index "
        f"{list(first)} (format {letters!r}){overflow}. Replace or remove them before calling.")
