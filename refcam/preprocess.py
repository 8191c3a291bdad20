"""Image preprocessing as data: resize, channel order, scale, mean and std (docs/preprocessing.md).

A :class:`Preprocessing` says how a photo becomes a network input; named
presets cover the usual model families, and :func:`preprocess` applies one
and returns, beside the input, the :class:`Geometry` that
:func:`map_to_original` needs to put a Grad-CAM map back on the photo.

Pipeline, for an image ``I`` (h x w x c, MATLAB layout) and a network input
of H x W::

    R = resize(I)                           one of the three modes below, in I's dtype
    X = crop or pad R to H x W              (the geometry records where)
    X = X[..., ::-1]                        when channel_order is "BGR"
    x = (float64(X) * scale - mean) / std   per channel, in the network's channel order

Resize modes:

* ``"squash"``: MATLAB's ``imresize(I, [H W])`` (bicubic, antialiased when
  shrinking; :func:`refcam.imresize`), the aspect ratio not kept.
* ``"shorter-side+centre-crop"``: torchvision 0.28's
  ``transforms.functional.resize(img, [n], antialias=True)`` on tensors: the
  shorter side becomes ``n`` and the longer ``int(n * long / short)``, with
  PyTorch's antialiased bilinear kernel (``torch.nn.functional.interpolate(...,
  mode="bilinear", antialias=True, align_corners=False)``); then
  ``center_crop(img, [H, W])``: top ``int(round((rh - H) / 2))``, left
  likewise, zero padding where the crop is larger than the image.
  ``n = shorter_side``, or ``round(max(H, W) * 256 / 224)`` when None
  (torchvision's 256 for a 224 crop).
* ``"pad"``: MATLAB's bicubic ``imresize`` to ``round(h * s) x round(w * s)``
  with ``s = min(H / h, W / w)`` (the aspect ratio kept), centred in H x W,
  the border filled with ``pad_value`` (in the image's units, before scaling).

Integer images stay integers through the resize, as in MATLAB (rounded half
away from zero) and torchvision (``torch.round``, half to even). The input
returned is float64 (H, W, C).
"""
from __future__ import annotations

import difflib
import math
import numbers
from dataclasses import asdict, dataclass, fields
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from .cam.resize import _row_sums_in_order, imresize, resize_along_axis
from .errors import InputError, ShapeError

RESIZE_MODES = ("squash", "shorter-side+centre-crop", "pad")
CHANNEL_ORDERS = ("RGB", "BGR")
TORCHVISION_RESIZE_RATIO = 256 / 224      # torchvision's ImageNet weights: resize 256, crop 224


# --- the description -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes a network input (formulas in the module docstring).

    ``mean`` and ``std`` have one value, or one per channel in the network's
    channel order (after ``channel_order`` is applied), in the units after
    ``scale``; None means 0 and 1.

    >>> Preprocessing(scale=1 / 255, mean=(0.5,), std=(0.25,)).describe()
    'squash (MATLAB imresize, bicubic), RGB, scale 0.00392157, mean 0.5, std 0.25'
    """

    resize: str = "squash"
    shorter_side: int | None = None
    channel_order: str = "RGB"
    scale: float = 1.0
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    pad_value: float = 0.0

    def __post_init__(self) -> None:
        _check_choice(self.resize, RESIZE_MODES, "resize")
        _check_choice(self.channel_order, CHANNEL_ORDERS, "channel_order")
        if self.shorter_side is not None:
            object.__setattr__(self, "shorter_side", _positive_int(self.shorter_side, "shorter_side"))
        object.__setattr__(self, "scale", _finite(self.scale, "scale", positive=True))
        object.__setattr__(self, "pad_value", _finite(self.pad_value, "pad_value"))
        object.__setattr__(self, "mean", _per_channel(self.mean, "mean", positive=False))
        object.__setattr__(self, "std", _per_channel(self.std, "std", positive=True))

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (tuples as lists); :meth:`from_dict` reads it back."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "Preprocessing":
        """A Preprocessing from :meth:`to_dict`'s dict; unknown keys are an InputError naming the valid ones."""
        if not isinstance(values, Mapping):
            raise InputError(f"a preprocessing is a mapping of its fields, not {type(values).__name__}.")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise InputError(f"unknown preprocessing field(s) {unknown}; the fields are {known}.")
        return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in values.items()})

    def describe(self) -> str:
        """One line: the resize, channel order, scale, mean and std (what the CLI and ``refcam info`` print)."""
        resize = {"squash": "squash (MATLAB imresize, bicubic)",
                  "shorter-side+centre-crop": "shorter side "
                  + ("256/224 of the crop" if self.shorter_side is None else str(self.shorter_side))
                  + " (torchvision antialiased bilinear) + centre crop",
                  "pad": f"pad (MATLAB imresize, bicubic, aspect kept; fill {self.pad_value:g})"}[self.resize]
        parts = [resize, self.channel_order, f"scale {self.scale:.6g}"]
        for name in ("mean", "std"):
            values = getattr(self, name)
            if values is not None:
                parts.append(f"{name} " + ", ".join(f"{v:.6g}" for v in values))
        return ", ".join(parts)


def _check_choice(value: Any, choices: Sequence[str], name: str) -> None:
    if value not in choices:
        raise InputError(f"preprocessing {name} {value!r} is unknown; choose one of {', '.join(choices)}."
                         + close_match_hint(value, choices))


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 1:
        raise InputError(f"preprocessing {name} must be a positive integer, not {value!r}.")
    return int(value)


def _finite(value: Any, name: str, positive: bool = False) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or (positive and value <= 0):
        kind = "a positive finite number" if positive else "a finite number"
        raise InputError(f"preprocessing {name} must be {kind}, not {value!r}.")
    return float(value)


def _per_channel(values: Any, name: str, positive: bool) -> tuple[float, ...] | None:
    if values is None:
        return None
    listed = [values] if isinstance(values, numbers.Real) else list(values)
    if not listed:
        raise InputError(f"preprocessing {name} is empty; give one value, one per channel, or None.")
    return tuple(_finite(v, name, positive) for v in listed)


def close_match_hint(name: Any, choices: Sequence[str]) -> str:
    """``" Did you mean 'x'?"`` naming the closest choices (difflib, up to three), or ``""``.

    >>> close_match_hint("fire9-concatt", ["fire8-concat", "fire9-concat", "relu_conv10"])
    " Did you mean 'fire9-concat' or 'fire8-concat'?"
    """
    if not isinstance(name, str):
        return ""
    matches = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.6)
    if not matches:
        return ""
    quoted = [repr(m) for m in matches]
    return f" Did you mean {' or '.join([', '.join(quoted[:-1]), quoted[-1]] if len(quoted) > 2 else quoted)}?"


PRESETS: dict[str, Preprocessing] = {
    # torchvision 0.28 ImageNet weights (ResNet-18 and most others): resize 256, crop 224, /255, mean/std
    "imagenet-torchvision": Preprocessing(resize="shorter-side+centre-crop", scale=1 / 255,
                                          mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
    # Keras 3 keras.applications.imagenet_utils.preprocess_input(mode="caffe"): RGB -> BGR, minus the mean
    "imagenet-caffe": Preprocessing(channel_order="BGR", mean=(103.939, 116.779, 123.68)),
    # Keras 3 preprocess_input(mode="tf") of MobileNet (v1, v2): x / 127.5 - 1, in [-1, 1]
    "keras-mobilenet": Preprocessing(scale=1 / 127.5, mean=(1.0,)),
    # refcam's behaviour before preprocessing existed: MATLAB's squash, raw values
    "none": Preprocessing(),
}


def get_preprocessing(spec: "str | Preprocessing | Mapping[str, Any]") -> Preprocessing:
    """A preset name, a :class:`Preprocessing` or its dict, as a Preprocessing.

    >>> get_preprocessing("imagenet-torchvision").std
    (0.229, 0.224, 0.225)
    """
    if isinstance(spec, Preprocessing):
        return spec
    if isinstance(spec, str):
        if spec not in PRESETS:
            raise InputError(f"preprocessing preset {spec!r} is unknown; the presets are {', '.join(PRESETS)}."
                             + close_match_hint(spec, list(PRESETS)))
        return PRESETS[spec]
    if isinstance(spec, Mapping):
        return Preprocessing.from_dict(spec)
    raise InputError(f"a preprocessing is a preset name ({', '.join(PRESETS)}), a refcam.Preprocessing or its "
                     f"dict, not {type(spec).__name__}.")


# --- geometry ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Geometry:
    """Where the network input lies in the original image.

    ``resized_size`` is the image's size after the resize and before the crop
    or pad; ``offset`` (top, left) is the network input's first pixel in that
    resized image (negative: the input starts with padding). So input pixel
    ``(i, j)`` is resized pixel ``(i + top, j + left)``, and, with pixel edges
    at integers, covers original rows ``[(i + top) / sy, (i + top + 1) / sy)``.
    """

    original_size: tuple[int, int]
    resized_size: tuple[int, int]
    offset: tuple[int, int]
    input_size: tuple[int, int]

    @property
    def scale(self) -> tuple[float, float]:
        """``(sy, sx)``: resized size over original size, per axis."""
        return (self.resized_size[0] / self.original_size[0], self.resized_size[1] / self.original_size[1])

    @property
    def crop_box(self) -> tuple[float, float, float, float]:
        """``(top, left, bottom, right)`` of the network input in original pixel-edge coordinates.

        Outside ``[0, h] x [0, w]`` where the input was padded.
        """
        (sy, sx), (top, left), (height, width) = self.scale, self.offset, self.input_size
        return (top / sy, left / sx, (top + height) / sy, (left + width) / sx)


@dataclass
class PreprocessedImage:
    """What :func:`preprocess` returns; unpacks as ``x, geometry = refcam.preprocess(...)``."""

    input: np.ndarray
    geometry: Geometry
    preprocessing: Preprocessing

    def __iter__(self) -> Iterator[Any]:
        return iter((self.input, self.geometry))


# --- applying it ---------------------------------------------------------------------------------------
def preprocess(image: Any, preprocessing: "str | Preprocessing | Mapping[str, Any]",
               input_size: Any) -> PreprocessedImage:
    """The network input for ``image`` and the geometry that maps a map back (module docstring).

    ``image``: (h, w) or (h, w, c), any real dtype (uint8 as MATLAB's ``imread``
    gives it). ``preprocessing``: a preset name (``refcam.preprocess.PRESETS``),
    a :class:`Preprocessing` or its dict. ``input_size``: (H, W) or (H, W, C),
    or a Network (its input layer's size). A grey image given to a 3-channel
    input is repeated on three channels. Returns a :class:`PreprocessedImage`:
    ``.input`` float64 (H, W, C), ``.geometry``, ``.preprocessing``.

    >>> x, geometry = preprocess(np.zeros((300, 451, 3), np.uint8), "imagenet-torchvision", (224, 224))
    >>> x.shape, geometry.resized_size, geometry.offset
    ((224, 224, 3), (256, 384), (16, 80))
    """
    spec = get_preprocessing(preprocessing)
    pixels = _image_array(image)
    height, width, channels = _input_size(input_size, pixels.shape[2])
    pixels = _match_channels(pixels, channels)
    resized = _resize(pixels, spec, (height, width))
    placed, offset = _place(resized, spec, (height, width))
    if spec.channel_order == "BGR":
        if placed.shape[2] != 3:
            raise InputError(f"channel_order 'BGR' reorders 3 channels; this image has {placed.shape[2]}.")
        placed = placed[:, :, ::-1]
    x = placed.astype(np.float64) * spec.scale
    x = _per_channel_op(x, spec.mean, np.subtract, "mean")
    x = _per_channel_op(x, spec.std, np.divide, "std")
    geometry = Geometry(tuple(pixels.shape[:2]), tuple(resized.shape[:2]), offset, (height, width))
    return PreprocessedImage(np.ascontiguousarray(x), geometry, spec)


def _image_array(image: Any) -> np.ndarray:
    pixels = np.asarray(image)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3 or 0 in pixels.shape:
        raise ShapeError(f"preprocess: an image is (h, w) or (h, w, c) (H x W first); got shape {pixels.shape}.")
    if pixels.dtype.kind not in "uif":
        raise InputError(f"preprocess: an image has a real dtype (uint8, float64, ...), not {pixels.dtype}.")
    if pixels.dtype.kind == "f" and not np.isfinite(pixels).all():
        raise InputError("preprocess: the image holds NaN or Inf.")
    return pixels


def _input_size(input_size: Any, image_channels: int) -> tuple[int, int, int]:
    size = getattr(getattr(input_size, "input_layer", None), "input_size", input_size)
    size = tuple(size) if isinstance(size, (tuple, list, np.ndarray)) else ()
    if len(size) not in (2, 3) or not all(isinstance(n, numbers.Integral) and n > 0 for n in size):
        raise InputError(f"preprocess: input_size is (H, W) or (H, W, C) of positive integers, or a network "
                         f"with an image input; got {input_size!r}.")
    return int(size[0]), int(size[1]), int(size[2]) if len(size) == 3 else image_channels


def _match_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    if pixels.shape[2] == channels:
        return pixels
    if pixels.shape[2] == 1 and channels == 3:
        return np.repeat(pixels, 3, axis=2)                       # grey -> RGB, as Pillow's convert("RGB")
    raise InputError(f"preprocess: the image has {pixels.shape[2]} channels and the network input {channels}; "
                     "convert the image first (only grey -> RGB is done here).")


def _per_channel_op(x: np.ndarray, values: tuple[float, ...] | None, op: Any, name: str) -> np.ndarray:
    if values is None:
        return x
    if len(values) not in (1, x.shape[2]):
        raise InputError(f"preprocessing {name} has {len(values)} values for a {x.shape[2]}-channel input; "
                         "give one value or one per channel.")
    return op(x, np.asarray(values, dtype=np.float64))


def _resize(pixels: np.ndarray, spec: Preprocessing, size: tuple[int, int]) -> np.ndarray:
    (h, w), (height, width) = pixels.shape[:2], size
    if spec.resize == "squash":
        target = size
    elif spec.resize == "pad":
        s = min(height / h, width / w)
        target = (min(height, max(1, round(h * s))), min(width, max(1, round(w * s))))
    else:
        shorter = spec.shorter_side or round(max(height, width) * TORCHVISION_RESIZE_RATIO)
        return resize_shorter_side(pixels, shorter)
    return pixels if target == (h, w) else imresize(pixels, target, "bicubic")


def _place(resized: np.ndarray, spec: Preprocessing, size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """Crop or pad ``resized`` to ``size``; returns it and the offset (top, left) of the window."""
    if spec.resize == "squash":
        return resized, (0, 0)
    if spec.resize == "shorter-side+centre-crop":
        return centre_crop(resized, size)
    (rh, rw), (height, width) = resized.shape[:2], size
    top, left = (height - rh) // 2, (width - rw) // 2
    canvas = np.full((height, width, resized.shape[2]), spec.pad_value).astype(resized.dtype)
    canvas[top:top + rh, left:left + rw] = resized
    return canvas, (-top, -left)


# --- torchvision's resize and centre crop --------------------------------------------------------------
def torchvision_bilinear_weights(in_length: int, out_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Weights and 0-based indices of PyTorch's antialiased bilinear resize along one axis.

    PyTorch 2.x ``_upsample_bilinear2d_aa`` (``aten/src/ATen/native/cpu/UpSampleKernel.cpp``,
    ``_compute_weights_aa``), ``align_corners=False``, for output ``i``::

        scale   = in / out;  support = max(scale, 1);  inv = 1 / max(scale, 1)
        centre  = scale * (i + 0.5)
        xmin    = max(trunc(centre - support + 0.5), 0)
        xmax    = min(trunc(centre + support + 0.5), in)
        w_j     = max(0, 1 - |(xmin + j - centre + 0.5) * inv|),  j = 0 .. xmax - xmin - 1
        out(i)  = sum_j  w_j / sum_j' w_j'  *  in(xmin + j)

    Returns ``(weights, indices)`` of shape ``(out_length, taps)`` (unused taps
    have weight 0), the layout of :func:`refcam.cam.resize.resize_weights`.

    >>> w, i = torchvision_bilinear_weights(4, 2)          # halving: taps 3/7, 3/7, 1/7 at the edges
    >>> np.round(7 * w, 12).tolist(), i.tolist()
    ([[3.0, 3.0, 1.0, 0.0, 0.0], [1.0, 3.0, 3.0, 0.0, 0.0]], [[0, 1, 2, 3, 3], [1, 2, 3, 3, 3]])
    """
    scale = in_length / out_length
    support = max(scale, 1.0)
    inverse = 1.0 / scale if scale >= 1.0 else 1.0
    taps = math.ceil(support) * 2 + 1
    centre = scale * (np.arange(out_length) + 0.5)
    first = np.maximum(np.trunc(centre - support + 0.5).astype(np.int64), 0)
    last = np.minimum(np.trunc(centre + support + 0.5).astype(np.int64), in_length)
    count = np.clip(last - first, 0, taps)
    offsets = np.arange(taps)
    weights = np.maximum(0.0, 1.0 - np.abs((first[:, None] + offsets - centre[:, None] + 0.5) * inverse))
    weights = np.where(offsets[None, :] < count[:, None], weights, 0.0)
    totals = _row_sums_in_order(weights)
    weights = weights / np.where(totals == 0.0, 1.0, totals)[:, None]
    indices = np.minimum(first[:, None] + offsets, in_length - 1)
    return weights, indices


def resize_shorter_side(image: np.ndarray, shorter: int) -> np.ndarray:
    """torchvision 0.28 ``resize(img, [shorter], antialias=True)`` of an (h, w, c) array (bilinear).

    The shorter side becomes ``shorter``, the longer ``int(shorter * long / short)``;
    an image already that size is returned as it is. Width is resized first,
    then height, each summed in float64; integer images are rounded half to
    even (``torch.round``) and cast back, floats keep their dtype.

    >>> resize_shorter_side(np.zeros((300, 451, 3), np.uint8), 256).shape
    (256, 384, 3)
    """
    h, w = image.shape[:2]
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(shorter * long / short)
    new_h, new_w = (new_long, shorter) if w <= h else (shorter, new_long)
    if (new_h, new_w) == (h, w):
        return image
    work = image.astype(np.float64)
    for axis, new in ((1, new_w), (0, new_h)):
        if work.shape[axis] != new:
            work = resize_along_axis(work, axis, *torchvision_bilinear_weights(work.shape[axis], new))
    if image.dtype.kind in "ui":
        return np.rint(work).astype(image.dtype)
    return work.astype(image.dtype)


def centre_crop(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """torchvision 0.28 ``center_crop(img, [H, W])`` of an (h, w, c) array, and the offset (top, left).

    Top ``int(round((h - H) / 2))`` (Python's round, half to even), left
    likewise; where the crop is larger than the image, zero padding first
    (``(H - h) // 2`` before, the rest after), so the offset is negative.

    >>> centre_crop(np.zeros((256, 384, 3)), (224, 224))[1]
    (16, 80)
    """
    (h, w), (height, width) = image.shape[:2], size
    pad_top, pad_left = max(0, (height - h) // 2), max(0, (width - w) // 2)
    if height > h or width > w:
        pad = ((pad_top, max(0, height - h + 1) // 2), (pad_left, max(0, width - w + 1) // 2), (0, 0))
        image = np.pad(image, pad)
    top = int(round((image.shape[0] - height) / 2.0))
    left = int(round((image.shape[1] - width) / 2.0))
    return image[top:top + height, left:left + width], (top - pad_top, left - pad_left)


# --- back to the original image ------------------------------------------------------------------------
def map_to_original(score_map: Any, geometry: Geometry, fill: float = 0.0) -> np.ndarray:
    """A map at the network input's size (H x W [x ...]) put back on the original image (h x w [x ...]).

    The inverse of the crop or pad, then of the resize: the map is placed in a
    canvas of the resized image's size at ``geometry.offset`` (the parts the
    network did not see are ``fill``; padding is dropped), and the canvas is
    resized to the original size with MATLAB's bicubic ``imresize``, as
    ``gradCAM`` upsamples. Trailing axes (labels, a batch) are carried.

    >>> x, g = preprocess(np.zeros((300, 451, 3), np.uint8), "imagenet-torchvision", (224, 224))
    >>> map_to_original(np.ones((224, 224)), g).shape
    (300, 451)
    """
    values = np.asarray(score_map, dtype=np.float64)
    if values.ndim < 2 or tuple(values.shape[:2]) != tuple(geometry.input_size):
        raise ShapeError(f"map_to_original: the map is H x W [x ...] = {' x '.join(map(str, geometry.input_size))}"
                         f" (the network input), got shape {values.shape}.")
    canvas = np.full(tuple(geometry.resized_size) + values.shape[2:], float(fill))
    source, target = [], []
    for offset, length, resized in zip(geometry.offset, geometry.input_size, geometry.resized_size):
        start, stop = max(0, offset), min(resized, offset + length)
        target.append(slice(start, stop))
        source.append(slice(start - offset, stop - offset))
    canvas[tuple(target)] = values[tuple(source)]
    if tuple(geometry.resized_size) == tuple(geometry.original_size):
        return canvas
    return imresize(canvas, tuple(geometry.original_size), "bicubic")
