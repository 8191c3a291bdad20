"""What every ``refcam`` subcommand shares: exit codes, error reporting, argument types, reading inputs, output paths.

The input rules (images, ``.npy`` arrays, CSV sequences, folders) are in
:mod:`refcam.cli`'s docstring and docs/cli.md; the output rules (``-o`` is a
folder unless it ends in ``.png`` or ``.npy`` and there is one input) in
:class:`OutputTargets`.
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import InputError, OptionalDependencyError, RefcamError

EXIT_OK, EXIT_PARTIAL, EXIT_ERROR, EXIT_INTERNAL, EXIT_EMPTY, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
ARRAY_SUFFIXES = (".npy",)
CSV_SUFFIXES = (".csv",)
INPUT_SUFFIXES = IMAGE_SUFFIXES + ARRAY_SUFFIXES + CSV_SUFFIXES
CSV_ORIENTATIONS = ("time-rows", "feature-rows")
OUTPUT_SUFFIXES = (".png", ".npy")
MODEL_HELP = "a network file: refcam HDF5, Keras HDF5 or ONNX (what refcam.load reads)"


# --- error reporting -------------------------------------------------------------------------------
def show_traceback(args: argparse.Namespace) -> None:
    """With ``--debug``, the traceback of the error being handled, on standard error (the exit code stays)."""
    if args.debug:
        traceback.print_exc(file=sys.stderr)


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) replaced by one space."""
    return " ".join(text.split())


def without_path(message: str, path: str) -> str:
    """The message without a leading ``"<path>: "`` (the log line names the path already)."""
    return message[len(path) + 2:] if message.startswith(f"{path}: ") else message


def describe_error(err: BaseException) -> str:
    """One line for an error: the refcam message, or a file error with its path and what to check."""
    if isinstance(err, FileNotFoundError):
        return f"{err.filename}: no such file or directory; check the path."
    if isinstance(err, IsADirectoryError):
        return f"{err.filename}: is a folder, not a file."
    if isinstance(err, PermissionError):
        return f"{err.filename}: permission denied."
    if isinstance(err, OSError) and not isinstance(err, RefcamError) and err.filename:
        return f"{err.filename}: {err.strerror or one_line(str(err))}."
    return one_line(str(err))


def size_text(shape: Iterable[int]) -> str:
    """``(28, 28, 1)`` -> ``"28x28x1"``."""
    return "x".join(str(int(n)) for n in shape)


# --- argument types --------------------------------------------------------------------------------
def unit_interval(text: str) -> float:
    """An ``--alpha`` value: a number in [0, 1]."""
    value = number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not in [0, 1] (0: the image only, 1: the map only)")
    return value


def number(text: str) -> float:
    """A finite number, or a fraction such as ``1/255``."""
    numerator, _, denominator = text.partition("/")
    try:
        value = float(numerator) / float(denominator) if denominator else float(numerator)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (e.g. 0.5 or 1/255)") from None
    if not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def resize_option(text: str) -> tuple[str, int | None]:
    """``--resize MODE`` or ``shorter-side+centre-crop:N`` as (mode, shorter side)."""
    from ..preprocess import RESIZE_MODES, close_match_hint
    mode, _, size = text.partition(":")
    if mode not in RESIZE_MODES or (size and (mode != "shorter-side+centre-crop" or not size.isdigit()
                                              or int(size) < 1)):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a resize mode: give squash, pad, shorter-side+centre-crop or "
            f"shorter-side+centre-crop:N (N a positive integer).{close_match_hint(mode, RESIZE_MODES)}")
    return mode, int(size) if size else None


# --- inputs ----------------------------------------------------------------------------------------
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


def expand_inputs(paths: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Files to process: the files given, and each folder's input files (sorted, not recursive).

    Returns ``(files, problems)``; a problem is ``(path, message)`` for a path that
    does not exist or a folder without input files.
    """
    files, problems = [], []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(os.path.join(path, name) for name in os.listdir(path)
                           if name.lower().endswith(INPUT_SUFFIXES) and os.path.isfile(os.path.join(path, name)))
            if not found:
                problems.append((path, f"the folder holds no input files ({' '.join(INPUT_SUFFIXES)})."))
            files.extend(found)
        elif os.path.exists(path):
            files.append(path)
        else:
            problems.append((path, "no such file or directory; check the path."))
    return files, problems


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
    from ..preprocess import PRESETS, preprocess
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
    from ..preprocess import PRESETS
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


# --- outputs ---------------------------------------------------------------------------------------
@dataclass
class OutputTargets:
    """Where the maps and pictures of each input go (a folder, or one named file)."""

    folder: str
    stems: list[str]
    png: bool
    npy: bool
    single_file: str | None = None
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_args(cls, args: argparse.Namespace, files: Sequence[str]) -> "OutputTargets":
        output = args.output
        suffix = os.path.splitext(output)[1].lower()
        if suffix and suffix not in OUTPUT_SUFFIXES and not os.path.isdir(output):
            raise RefcamError(f"-o {output}: ends in {suffix}, which is neither a folder nor a file refcam gradcam "
                              "writes; give a folder (created if missing), or for one input a file name ending in "
                              ".png (the overlay) or .npy (the map). A new folder with a dot in its name: create "
                              "it first.")
        if suffix in OUTPUT_SUFFIXES and not os.path.isdir(output):
            if len(files) > 1 or len(args.inputs) > 1:
                raise RefcamError(f"-o {output}: a file name is for one input; give a folder for several inputs.")
            folder = os.path.dirname(output) or "."
            os.makedirs(folder, exist_ok=True)
            return cls(folder, output_stems(files), suffix == ".png", suffix == ".npy", single_file=output)
        if not (args.png or args.npy):
            raise RefcamError("--no-png and --no-npy together would write nothing; keep one of them.")
        os.makedirs(output, exist_ok=True)
        return cls(output, output_stems(files), args.png, args.npy)

    def path(self, stem: str, suffix: str) -> str:
        if self.single_file is not None:
            return self.single_file
        return os.path.join(self.folder, f"{stem}_gradcam{suffix}")

    def write(self, stem: str, net: Any, item: Input, result: Any, prediction: Any, style: Any) -> list[str]:
        """Write the .npy map and the pictures (:mod:`refcam.cli.pictures`) of one input; returns the paths written."""
        written = []
        if self.npy:
            np.save(self.path(stem, ".npy"), result.map)
            written.append(self.path(stem, ".npy"))
        if self.png:
            from .pictures import write_pictures
            written.extend(write_pictures(self, stem, net, item, result, prediction, style))
        return written

    def note(self, text: str) -> None:
        """Add ``text`` to the notes printed after the run (once)."""
        if text not in self.notes:
            self.notes.append(text)


def output_stems(files: Sequence[str]) -> list[str]:
    """A file-name stem per input, unique: the name without suffix, plus the suffix where names collide."""
    stems = [os.path.splitext(os.path.basename(path))[0] for path in files]
    with_suffix = [os.path.basename(path).replace(".", "_") for path in files]
    unique = [stem if stems.count(stem) == 1 else full for stem, full in zip(stems, with_suffix)]
    return [name if unique.count(name) == 1 else f"{name}_{k}" for k, name in enumerate(unique)]

