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
from typing import Any, Sequence

import numpy as np

from ..errors import RefcamError
from ..input_files import (CSV_ORIENTATIONS, INPUT_SUFFIXES, Input, input_description, one_line, read_input,
                           size_text)

EXIT_OK, EXIT_PARTIAL, EXIT_ERROR, EXIT_INTERNAL, EXIT_EMPTY, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
OUTPUT_SUFFIXES = (".png", ".npy")
MODEL_HELP = "a network file: refcam HDF5, Keras HDF5 or ONNX (what refcam.load reads)"


# --- error reporting -------------------------------------------------------------------------------
def show_traceback(args: argparse.Namespace) -> None:
    """With ``--debug``, the traceback of the error being handled, on standard error (the exit code stays)."""
    if args.debug:
        traceback.print_exc(file=sys.stderr)


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


# --- inputs (read by refcam.input_files) ------------------------------------------------------------
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

