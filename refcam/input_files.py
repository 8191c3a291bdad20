"""Reading one input file for a network: an image (preprocessed), a ``.npy`` array or a CSV sequence.

The rules: an image file (``.png .jpg .jpeg .bmp .tif .tiff``, needs Pillow)
is read as uint8 ``h x w x c`` with the network's channel count (1: grayscale,
3: RGB) and goes through the preprocessing (:mod:`refcam.preprocess`); a
``.npy`` array (never a pickle) is taken in the given format or the network's
own layout; a ``.csv`` table is a sequence, one time step per row
(``"time-rows"``) or one feature per row (``"feature-rows"``), a header line
skipped. The command line (``refcam gradcam``, ``refcam golden``) and dataset
runs (:mod:`refcam.dataset`) read their inputs here.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from .errors import InputError, OptionalDependencyError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
ARRAY_SUFFIXES = (".npy",)
CSV_SUFFIXES = (".csv",)
INPUT_SUFFIXES = IMAGE_SUFFIXES + ARRAY_SUFFIXES + CSV_SUFFIXES
CSV_ORIENTATIONS = ("time-rows", "feature-rows")


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) replaced by one space."""
    return " ".join(text.split())


def size_text(shape: Iterable[int]) -> str:
    """``(28, 28, 1)`` -> ``"28x28x1"``."""
    return "x".join(str(int(n)) for n in shape)


def input_description(net: Any) -> str:
    """``"28x28x1 images"``, ``"16x16x16x1 volumes"`` or ``"sequences of 12 features"``."""
    layer = net.input_layer
    if layer.default_format == "CT":
        shortest = getattr(layer, "min_length", 1)
        return f"sequences of {layer.input_size} features, at least {shortest} step{'s' if shortest > 1 else ''}"
    kind = "volumes" if layer.default_format == "SSSC" else "images"
    return f"{size_text(layer.input_size)} {kind}"


@dataclass
class Input:
    """One input as read: the array for refcam, its format, and a description for the log.

    For an image file also the pixels as read (``original``) and where the
    network input lies in them (``geometry``, :class:`refcam.preprocess.Geometry`).
    """

    path: str
    x: np.ndarray
    format: str
    description: str
    notes: list[str] = field(default_factory=list)
    original: np.ndarray | None = None
    geometry: Any = None


def read_input(path: str, net: Any, fmt: str | None, csv_orientation: str, preprocessing: Any = None) -> Input:
    """Read one input file for ``net`` (rules in the module docstring); images go through ``preprocessing``."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix in IMAGE_SUFFIXES:
        return read_image(path, net, preprocessing)
    if suffix in ARRAY_SUFFIXES:
        return read_array(path, net, fmt)
    if suffix in CSV_SUFFIXES:
        return read_csv(path, net, csv_orientation)
    raise InputError(f"{path}: refcam cannot read {suffix or 'files without a suffix'} inputs; give images "
                     f"({' '.join(IMAGE_SUFFIXES)}), .npy arrays or .csv sequences.")


def read_image(path: str, net: Any, preprocessing: Any = None) -> Input:
    """An image file read as uint8 h x w x c with the network's channel count, then preprocessed."""
    from .preprocess import PRESETS, preprocess
    layer = net.input_layer
    if layer.default_format != "SSC":
        raise InputError(f"{path}: an image file, but the network takes {input_description(net)}; "
                         "give a .npy array (or a .csv sequence).")
    try:
        from PIL import Image
    except ImportError as err:
        raise OptionalDependencyError(
            f"{path}: reading images needs Pillow: pip install \"refcam[viz]\" (or pip install Pillow); "
            "or save the image as a .npy array (h x w x c).") from err
    height, width, channels = layer.input_size
    modes = {1: "L", 3: "RGB"}
    if channels not in modes:
        raise InputError(f"{path}: the network takes {channels}-channel images; image files give 1 or 3 "
                         "channels, so save the input as a .npy array (h x w x c).")
    try:
        with Image.open(path) as image:
            original = f"{image.height}x{image.width} {image.mode}"
            pixels = np.asarray(image.convert(modes[channels]), dtype=np.uint8)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: Pillow cannot read this image ({one_line(str(err))}).") from err
    pixels = pixels.reshape(pixels.shape[0], pixels.shape[1], channels)
    spec = preprocessing or PRESETS["none"]
    x, geometry = preprocess(pixels, spec, (height, width, channels))
    return Input(path, x, "SSC", f"{original} image (H x W)", geometry_notes(geometry, spec), pixels, geometry)


def geometry_notes(geometry: Any, spec: Any) -> list[str]:
    """The log's words for what the preprocessing did to an image's size (H x W throughout)."""
    from .preprocess import PRESETS
    notes = []
    if geometry.resized_size != geometry.original_size:
        kernel = ("torchvision resize, antialiased bilinear" if spec.resize == "shorter-side+centre-crop"
                  else "MATLAB imresize, bicubic")
        notes.append(f"resized {size_text(geometry.original_size)} -> {size_text(geometry.resized_size)} ({kernel})")
    if geometry.resized_size != geometry.input_size:
        (top, left), what = geometry.offset, "centre crop" if spec.resize != "pad" else "padded to"
        notes.append(f"{what} {size_text(geometry.input_size)} (top {top}, left {left})")
    if spec != PRESETS["none"]:
        notes.append(f"preprocessing: {spec.describe()}")
    return notes


def read_array(path: str, net: Any, fmt: str | None) -> Input:
    """A ``.npy`` array (no pickles), in ``fmt`` or the network's layout."""
    try:
        x = np.load(path, allow_pickle=False)
    except ValueError as err:
        raise InputError(f"{path}: not a numeric .npy array ({one_line(str(err))}); save it with np.save "
                         "from a numeric array.") from err
    layout = fmt or net.input_layer.default_format
    return Input(path, x, layout, f"{size_text(x.shape)} {x.dtype} array ({layout})")


def read_csv(path: str, net: Any, orientation: str) -> Input:
    """A CSV sequence as MATLAB's c x t (``orientation``: what a row is)."""
    layer = net.input_layer
    if layer.default_format != "CT":
        raise InputError(f"{path}: a CSV sequence, but the network takes {input_description(net)}; "
                         "give an image or a .npy array.")
    table = load_csv_table(path)
    x = table.T if orientation == "time-rows" else table
    features = layer.input_size
    if x.shape[0] != features:
        other = "feature-rows" if orientation == "time-rows" else "time-rows"
        hint = (f" The other orientation fits: add --csv-orientation {other}." if x.shape[1] == features else "")
        raise InputError(f"{path}: {table.shape[0]} rows x {table.shape[1]} columns read as {orientation} give "
                         f"{x.shape[0]} features, but the network takes {features}.{hint}")
    return Input(path, np.ascontiguousarray(x), "CT", f"sequence of {x.shape[1]} steps x {x.shape[0]} features "
                 f"(CSV, {orientation})")


def load_csv_table(path: str) -> np.ndarray:
    """A CSV file's numbers as a 2-D float64 array; a first line that is not numbers is skipped (a header)."""
    for skip in (0, 1):
        try:
            return np.loadtxt(path, delimiter=",", skiprows=skip, ndmin=2, dtype=np.float64)
        except ValueError as err:
            problem = err
    raise InputError(f"{path}: not a CSV table of numbers ({one_line(str(problem))}).")
