"""The ``refcam`` command line: ``refcam demo | info | gradcam | golden | compare`` (docs/cli.md).

Every subcommand has ``--help`` with examples. Errors print one line, ``refcam
<command>: error: <what went wrong; what to do>``, on standard error, without
a traceback unless ``--debug`` is given.

Exit codes
----------
0    success.
1    partly failed: ``refcam gradcam`` could not process some inputs (each is
     reported; the others were written), or ``refcam compare`` found the
     candidate outside the tolerance.
2    error: bad usage (argparse), or a refcam error that stopped the command
     (a missing or unreadable file, a label that is not a class, a layer that
     is not in the network, a missing optional package, ...), or every input
     of ``refcam gradcam`` failed.
3    internal error: a bug in refcam; rerun with ``--debug`` and report the traceback.
130  interrupted (Ctrl-C).

Inputs of ``refcam gradcam`` and ``refcam golden``: PNG/JPEG/BMP/TIFF images
(read with Pillow, kept as uint8 like MATLAB's ``imread``, converted to the
network's 1 or 3 channels, resized with MATLAB's bicubic ``imresize`` when
their size is not the network's), ``.npy`` arrays (the network's MATLAB layout
unless ``--format`` names another), and CSV sequences (``--csv-orientation``:
``time-rows`` = one row per time step, ``feature-rows`` = one row per feature;
a first line that is not numbers is a header and skipped).
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from . import __version__
from .errors import InputError, LabelError, OptionalDependencyError, RefcamError

EXIT_OK, EXIT_PARTIAL, EXIT_ERROR, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
ARRAY_SUFFIXES = (".npy",)
CSV_SUFFIXES = (".csv",)
INPUT_SUFFIXES = IMAGE_SUFFIXES + ARRAY_SUFFIXES + CSV_SUFFIXES
UPSAMPLING = ("bicubic", "nearest", "none")
CSV_ORIENTATIONS = ("time-rows", "feature-rows")
DEMO_OUTPUT = "refcam_demo.png"
SEQUENCE_PROBE_LENGTHS = (1, 2, 8, 32, 128)
MODEL_HELP = "a network file: refcam HDF5, Keras HDF5 or ONNX (what refcam.load reads)"


# --- argument parsing ------------------------------------------------------------------------------
EPILOGS = {
    "main": """\
examples:
  refcam demo                                     Grad-CAM on the shipped digits network
  refcam info net.h5                              layer table, input size, classes, default layers
  refcam gradcam net.h5 cat.png                   overlay PNG and .npy map in the current folder
  refcam gradcam net.h5 photos/ -o maps/          every image of a folder
  refcam golden net.h5 cat.png -o cat.golden.h5   a golden file for testing your implementation
  refcam compare cat.golden.h5 my_map.npy         is my map refcam's?

exit codes: 0 success; 1 some inputs failed or compare out of tolerance; 2 error (bad usage,
missing file, bad label, ...); 3 internal error (please report, with --debug).""",
    "demo": """\
examples:
  refcam demo                     writes refcam_demo.png in the current folder
  refcam demo -o /tmp/demo.png    writes /tmp/demo.png
  refcam demo --digit 3           another shipped test digit (0..10)""",
    "info": """\
examples:
  refcam info fixtures/e1_squeezenet_mini.h5
  refcam info fixtures/e3_japanese_vowels.h5""",
    "gradcam": """\
examples:
  refcam gradcam net.h5 cat.png                        predicted class; writes cat_gradcam.png/.npy here
  refcam gradcam net.h5 cat.png --label tabby -o out/  the class "tabby"; writes into out/
  refcam gradcam net.h5 cat.png -o cat_map.npy         only the map, as .npy
  refcam gradcam net.h5 photos/ --label 3              a folder; label = 0-based class index 3
  refcam gradcam net.h5 a.png b.png --label cat dog    one label per input
  refcam gradcam vowels.h5 seq.csv --csv-orientation feature-rows
  refcam gradcam net.h5 x.npy --format CSS --feature-layer relu_3 --reduction-layer fc
  refcam gradcam net.h5 cat.png --convention pytorch-grad-cam

Without --label: the predicted class (classification networks), or the sum of the reduction
layer's output (other networks; the identity for a one-output regression such as E2 of MATLAB's gradCAM page).
A label is a class name or a 0-based class index (MATLAB's indices are 1-based).""",
    "golden": """\
examples:
  refcam golden net.h5 cat.png -o cat.golden.h5
  refcam golden net.h5 cat.png -o cat.golden.h5 --label tabby --feature-layer relu_5
  refcam golden net.h5 x.npy -o x.golden.h5 --dtype float32 --convention captum

The file format is in docs/golden-format.md; read it with refcam.golden.read.""",
    "compare": """\
examples:
  refcam compare cat.golden.h5 my_map.npy                    the map, default float64 tolerance
  refcam compare cat.golden.h5 my_map.npy --rtol 1e-5        a looser tolerance
  refcam compare cat.golden.h5 stages.npz                    several stages: arrays named activations,
                                                             scores, gradients, weights, raw_map, map

Exit code 0 when every stage is within tolerance, 1 when one is not.""",
}


def build_parser() -> argparse.ArgumentParser:
    """The ``refcam`` argument parser with its five subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,   # before or after COMMAND
                        help="show the full traceback of an error")
    parser = argparse.ArgumentParser(
        prog="refcam", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        description="refcam: MATLAB's gradCAM, reproduced in Python, with golden outputs for testing "
                    "other Grad-CAM implementations.", epilog=EPILOGS["main"])
    parser.add_argument("--version", action="version", version=f"refcam {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, parents=[common], help=summary, description=summary,
                                   epilog=EPILOGS[name], formatter_class=argparse.RawDescriptionHelpFormatter)

    demo = command("demo", "Grad-CAM on the shipped digits network (E2 of MATLAB's gradCAM page); writes an overlay PNG.")
    demo.add_argument("-o", "--output", default=DEMO_OUTPUT, metavar="PATH",
                      help=f"the PNG to write, or a folder for {DEMO_OUTPUT} (default: ./{DEMO_OUTPUT})")
    demo.add_argument("--digit", type=int, default=0, metavar="I",
                      help="which shipped test digit, 0..10 (default 0: held-out digit #501, as on MATLAB's gradCAM page)")
    demo.add_argument("--builtin-png", action="store_true",
                      help="write the built-in PNG (no matplotlib) even when matplotlib is installed")

    info = command("info", "Describe a network: layer table, input size, classes, default Grad-CAM layers.")
    info.add_argument("model", metavar="MODEL", help=MODEL_HELP)

    gradcam = command("gradcam", "Grad-CAM maps of images, arrays or sequences: overlay PNGs and .npy maps.")
    gradcam.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    gradcam.add_argument("inputs", metavar="INPUT", nargs="+",
                         help="images (.png .jpg .jpeg .bmp .tif), arrays (.npy), sequences (.csv), or folders")
    _add_gradcam_options(gradcam)
    gradcam.add_argument("-o", "--output", default=".", metavar="OUT",
                         help="a folder (default: the current one), or for one input a file name ending "
                              "in .png (only the overlay) or .npy (only the map)")
    gradcam.add_argument("--png", action=argparse.BooleanOptionalAction, default=True,
                         help="write overlay/figure PNGs (default: yes)")
    gradcam.add_argument("--npy", action=argparse.BooleanOptionalAction, default=True,
                         help="write the maps as .npy, MATLAB's map layout (default: yes)")
    gradcam.add_argument("--alpha", type=float, default=0.5, help="opacity of the map over the image (0.5)")

    golden = command("golden", "Compute Grad-CAM of one input and write a golden file (every intermediate).")
    golden.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    golden.add_argument("input", metavar="INPUT", help="an image, .npy array or .csv sequence")
    _add_gradcam_options(golden)
    golden.add_argument("-o", "--output", required=True, metavar="GOLDEN", help="the golden HDF5 file to write")

    compare = command("compare", "Compare a candidate map (.npy) or stages (.npz) with a golden file.")
    compare.add_argument("golden", metavar="GOLDEN", help="a golden file written by refcam golden")
    compare.add_argument("candidate", metavar="CANDIDATE",
                         help="the candidate map (.npy, the golden's map layout) or stages (.npz)")
    compare.add_argument("--rtol", type=float, default=None, help="relative tolerance (of max |golden|)")
    compare.add_argument("--atol", type=float, default=None, help="absolute tolerance")
    compare.add_argument("--preset", default="float64",
                         help="tolerance preset: float64 (default) or float32, or a refcam.testing.TOLERANCES key")
    return parser


def _add_gradcam_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--label", nargs="+", metavar="L",
                        help="class name or 0-based class index; one for all inputs, one per input, or "
                             "several for one input (one map per label)")
    parser.add_argument("--feature-layer", metavar="NAME", help="default: MATLAB's rule (refcam info shows it)")
    parser.add_argument("--reduction-layer", metavar="NAME", help="default: MATLAB's rule (refcam info shows it)")
    parser.add_argument("--upsampling", choices=UPSAMPLING, default=None,
                        help="resize of the map to the input size (default bicubic; convention matlab only)")
    parser.add_argument("--format", metavar="FMT",
                        help="dimension letters of .npy inputs, e.g. SSC, CSS, CT, TC (default: the network's)")
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto", help="gpu needs CuPy")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64", help="compute dtype")
    parser.add_argument("--convention", default="matlab",
                        help="matlab (default) or a peer library's recipe: pytorch-grad-cam, captum, torchcam, "
                             "tf-keras-vis, keras-example (docs/oracle.md)")
    parser.add_argument("--csv-orientation", choices=CSV_ORIENTATIONS, default="time-rows",
                        help="CSV sequences: time-rows = one row per time step (default), "
                             "feature-rows = one row per feature (MATLAB's c x t)")


# --- entry point -----------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (see the module docstring)."""
    args = build_parser().parse_args(argv)
    args.debug = getattr(args, "debug", False)
    handler = HANDLERS[args.command]
    try:
        return handler(args)
    except KeyboardInterrupt:
        print(f"refcam {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader of our output went away (e.g. `| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except (RefcamError, OSError) as err:
        if args.debug:
            raise
        print(f"refcam {args.command}: error: {describe_error(err)}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as err:  # a bug: say so in one line, the traceback is one flag away
        if args.debug:
            raise
        print(f"refcam {args.command}: internal error: {type(err).__name__}: {one_line(str(err))} "
              "(a bug in refcam; rerun with --debug and report the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


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


# --- demo ------------------------------------------------------------------------------------------
def identity(y: Any) -> Any:
    """The E2 reduction function of MATLAB's gradCAM page ``@(x)x``: the fc layer's one output is the score."""
    return y


def run_demo(args: argparse.Namespace) -> int:
    """``refcam demo``: E2's Grad-CAM of a shipped test digit; one PNG written."""
    from .cam.gradcam import gradcam
    from .data import FEATURE_LAYER, REDUCTION_LAYER, demo_digits, demo_network

    net, digits = demo_network(), demo_digits()
    if not 0 <= args.digit < len(digits):
        raise InputError(f"--digit {args.digit} is not a shipped digit; choose 0..{len(digits) - 1}.")
    x, true_angle = digits.images[args.digit], float(digits.angles[args.digit])
    predicted = float(np.asarray(net.predict(x)).reshape(-1)[0])
    result = gradcam(net, x, reduction=identity, feature_layer=FEATURE_LAYER, reduction_layer=REDUCTION_LAYER)
    path = args.output
    if os.path.isdir(path):
        path = os.path.join(path, DEMO_OUTPUT)
    how = write_demo_figure(path, x, result.map, true_angle, predicted, args.builtin_png)
    channels, *feature_size = result.activations.shape[1:]
    print("refcam demo: Grad-CAM of the shipped digits network (E2 of MATLAB's gradCAM page: digitsRegressionNet, "
          "trained to predict the rotation of real MNIST digits)")
    print(f"  input:            held-out test digit #{int(digits.heldout_index[args.digit]) + 1}, "
          f"a {int(digits.digits[args.digit])} rotated by {true_angle:.1f} degrees ({size_text(x.shape)})")
    print(f"  prediction:       {predicted:.1f} degrees (true rotation {true_angle:.1f})")
    print(f"  feature layer:    {result.feature_layer} ({channels} channels, {size_text(feature_size)})")
    print(f"  reduction layer:  {result.reduction_layer}, identity reduction (the score is the predicted angle)")
    print(f"  map:              {size_text(result.map.shape)}, {result.upsampling} upsampling of the "
          f"{size_text(feature_size)} map, values {result.map.min():.3g} to {result.map.max():.3g}")
    print(f"  wrote:            {os.path.abspath(path)} ({how})")
    return EXIT_OK


def write_demo_figure(path: str, x: np.ndarray, score_map: np.ndarray, true_angle: float, predicted: float,
                      builtin: bool) -> str:
    """The E2 figure with matplotlib, else the built-in side-by-side PNG; returns which one was written."""
    from . import viz
    if not builtin and viz.has_matplotlib():
        title = f"True Rotation = {true_angle:.0f}\nPred Rotation = {predicted:.0f}"
        viz.save_figure(viz.plot_side_by_side(x, score_map, left_title=title), path)
        return "the E2 figure of MATLAB's gradCAM page, drawn with matplotlib"
    pixels = viz.side_by_side_image(x, score_map)
    viz.write_png(path, viz.enlarge(pixels, viz.enlargement_for(x.shape)))
    return "digit | Grad-CAM over it, built-in PNG writer"


def size_text(shape: Iterable[int]) -> str:
    """``(28, 28, 1)`` -> ``"28x28x1"``."""
    return "x".join(str(int(n)) for n in shape)


# --- info ------------------------------------------------------------------------------------------
def run_info(args: argparse.Namespace) -> int:
    """``refcam info MODEL``: the layer table, input, output, classes and default layers."""
    from .cam.selection import default_reduction_layer
    from .io import load

    net = load(args.model)
    print(net)
    layer = net.input_layer
    print()
    print(f"input:            {layer.name!r}, {input_description(net)} (format {layer.default_format})")
    classes = net.classes
    if classes is not None:
        shown = ", ".join(repr(c) for c in classes[:20]) + (", ..." if len(classes) > 20 else "")
        print(f"classes:          {len(classes)}: {shown}")
    else:
        print(f"output:           {net.output_layer.name!r}, {net.output_shapes[net.output_layer.name]} "
              "(C, *spatial) per observation; no class names")
    reduction = default_reduction_layer(net)
    print(f"default layers:   feature layer {default_feature_text(net, reduction)}, reduction layer "
          f"{reduction!r} (MATLAB's rules)")
    return EXIT_OK


def default_feature_text(net: Any, reduction: str) -> str:
    """MATLAB's default feature layer; for sequence networks, at the shortest length that has one."""
    from .cam.selection import default_feature_layer
    layer = net.input_layer
    if layer.default_format != "CT":
        try:
            return repr(default_feature_layer(net, net.output_shapes, reduction))
        except RefcamError as err:
            return f"none ({one_line(str(err))})"
    shortest = getattr(layer, "min_length", 1)
    for steps in sorted({max(shortest, n) for n in SEQUENCE_PROBE_LENGTHS}):
        try:
            name = default_feature_layer(net, net.infer_shapes((layer.input_size, steps)), reduction)
        except RefcamError:
            continue
        return f"{name!r} (for a sequence of {steps} steps; the rule looks at the input's length)"
    return "none for sequences of up to 128 steps; pass --feature-layer"


def input_description(net: Any) -> str:
    """``"28x28x1 images"``, ``"16x16x16x1 volumes"`` or ``"sequences of 12 features"``."""
    layer = net.input_layer
    if layer.default_format == "CT":
        shortest = getattr(layer, "min_length", 1)
        return f"sequences of {layer.input_size} features, at least {shortest} step{'s' if shortest > 1 else ''}"
    kind = "volumes" if layer.default_format == "SSSC" else "images"
    return f"{size_text(layer.input_size)} {kind}"


# --- inputs ----------------------------------------------------------------------------------------
@dataclass
class Input:
    """One input as read: the array for refcam, its format, and a description for the log."""

    path: str
    x: np.ndarray
    format: str
    description: str
    notes: list[str] = field(default_factory=list)


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


def read_input(path: str, net: Any, fmt: str | None, csv_orientation: str) -> Input:
    """Read one input file for ``net`` (rules in the module docstring)."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix in IMAGE_SUFFIXES:
        return read_image(path, net)
    if suffix in ARRAY_SUFFIXES:
        return read_array(path, net, fmt)
    if suffix in CSV_SUFFIXES:
        return read_csv(path, net, csv_orientation)
    raise InputError(f"{path}: refcam cannot read {suffix or 'files without a suffix'} inputs; give images "
                     f"({' '.join(IMAGE_SUFFIXES)}), .npy arrays or .csv sequences.")


def read_image(path: str, net: Any) -> Input:
    """An image file as uint8 h x w x c with the network's channel count and size."""
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
            original = f"{image.width}x{image.height} {image.mode}"
            pixels = np.asarray(image.convert(modes[channels]), dtype=np.uint8)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: Pillow cannot read this image ({one_line(str(err))}).") from err
    pixels = pixels.reshape(pixels.shape[0], pixels.shape[1], channels)
    notes = []
    if pixels.shape[:2] != (height, width):
        from .cam.resize import imresize
        notes.append(f"resized {pixels.shape[0]}x{pixels.shape[1]} -> {height}x{width} (MATLAB imresize, bicubic)")
        pixels = imresize(pixels, (height, width), "bicubic")
    return Input(path, pixels, "SSC", f"{original} image", notes)


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


# --- labels and scores -----------------------------------------------------------------------------
def parse_labels(texts: Sequence[str] | None, net: Any) -> list[str | int] | None:
    """Command-line labels as class names or 0-based indices, checked against the network's classes."""
    if texts is None:
        return None
    return [parse_label(text, net) for text in texts]


def parse_label(text: str, net: Any) -> str | int:
    """A class name when it is one; otherwise a 0-based integer index (in range, when the classes are known)."""
    classes = net.classes
    if classes is not None and text in classes:
        return text
    try:
        index = int(text)
    except ValueError:
        if classes is None:
            raise LabelError(f"--label {text!r}: this network has no class names; give a 0-based index of the "
                             "reduction layer's output channels.") from None
        shown = ", ".join(repr(c) for c in classes[:20]) + (", ..." if len(classes) > 20 else "")
        raise LabelError(f"--label {text!r} is not a class of this network; give a class name or a 0-based "
                         f"index. Classes: {shown}.") from None
    if classes is not None and not 0 <= index < len(classes):
        raise LabelError(f"--label {index} is out of range: the network has {len(classes)} classes, 0-based "
                         f"indices 0..{len(classes) - 1} (MATLAB's are 1-based).")
    return index


def sum_of_outputs(y: Any) -> Any:
    """The score of a network without classes: the reduction layer's output summed (E2's identity for one output)."""
    return y.sum()


def labels_per_input(labels: list[str | int] | None, count: int) -> list[Any]:
    """The label argument of each input: one for all, one each, or (one input) a list of labels."""
    if labels is None:
        return [None] * count
    if len(labels) == 1:
        return [labels[0]] * count
    if count == 1:
        return [labels]
    if len(labels) == count:
        return list(labels)
    raise LabelError(f"{len(labels)} labels for {count} inputs: give one label for all inputs, one per input, "
                     "or several labels for a single input.")


@dataclass
class Prediction:
    """The label (or reduction) Grad-CAM uses for one input, and how it was chosen, for the log."""

    label: Any
    reduction: Callable[[Any], Any] | None
    text: str


def choose_score(net: Any, item: Input, label: Any, dtype: str) -> Prediction:
    """The given label, else the predicted class, else (no classes) the summed reduction output."""
    if label is not None:
        return Prediction(label, None, f"label {label!r}")
    output = np.asarray(net.predict(item.x, format=item.format, dtype=dtype))
    classes = net.classes
    if classes is None:
        values = ", ".join(f"{v:.4g}" for v in output.reshape(-1)[:4]) + (", ..." if output.size > 4 else "")
        return Prediction(None, sum_of_outputs, f"output {values}; score: sum of the reduction layer's output")
    if "B" in item.format.upper():
        raise LabelError(f"{item.path}: a batch (format {item.format}) has one prediction per observation; "
                         "give --label.")
    totals = output.reshape(-1, len(classes)).sum(axis=0)
    best = int(np.argmax(totals))
    return Prediction(classes[best], None, f"predicted {classes[best]!r} (score {totals[best]:.4g})")


def compute(net: Any, item: Input, prediction: Prediction, args: argparse.Namespace) -> Any:
    """Grad-CAM of one input with the command-line options (a peer convention through gradcam_as)."""
    options = dict(reduction=prediction.reduction, feature_layer=args.feature_layer,
                   reduction_layer=args.reduction_layer, format=item.format, device=args.device, dtype=args.dtype)
    if args.convention == "matlab":
        from .cam.gradcam import gradcam
        return gradcam(net, item.x, prediction.label, upsampling=args.upsampling or "bicubic", **options)
    from .cam.conventions import gradcam_as
    return gradcam_as(args.convention, net, item.x, prediction.label, **options)


def check_convention(name: str) -> None:
    """Refuse an unknown ``--convention`` before any work is done."""
    if name == "matlab":
        return
    from .cam.conventions import CONVENTIONS
    if name not in CONVENTIONS:
        raise RefcamError(f"--convention {name!r} is unknown; choose one of {', '.join(CONVENTIONS)}.")


# --- gradcam ---------------------------------------------------------------------------------------
def run_gradcam(args: argparse.Namespace) -> int:
    """``refcam gradcam MODEL INPUT...``: maps and overlays; failed inputs are reported and skipped."""
    from .io import load

    check_convention(args.convention)
    net = load(args.model)
    check_options(net, args)
    labels = parse_labels(args.label, net)
    files, problems = expand_inputs(args.inputs)
    targets = OutputTargets.from_args(args, files)
    per_input = labels_per_input(labels, len(files)) if files else []
    failures = list(problems)
    done = 0
    with Progress(len(files)) as bar:
        for path, label, stem in zip(files, per_input, targets.stems):
            bar.describe(os.path.basename(path))
            try:
                bar.write(process_one(net, path, label, stem, targets, args))
                done += 1
            except (RefcamError, OSError) as err:
                if args.debug:
                    raise
                failures.append((path, without_path(describe_error(err), path)))
                bar.write(f"refcam gradcam: error: {path}: {failures[-1][1]}", sys.stderr)
            bar.advance()
    for note in targets.notes:
        print(f"note: {note}")
    total = len(files) + len(problems)
    if total > 1:
        print(f"summary: {total} inputs, {done} done, {len(failures)} failed"
              + "".join(f"\n  failed: {path}: {message}" for path, message in failures))
    elif problems:
        print(f"refcam gradcam: error: {problems[0][0]}: {problems[0][1]}", file=sys.stderr)
    if failures:
        return EXIT_PARTIAL if done else EXIT_ERROR   # some written, or nothing
    return EXIT_OK


def check_options(net: Any, args: argparse.Namespace) -> None:
    """Refuse options that would fail for every input (layer names, device, upsampling), before reading any."""
    from .backend import resolve_device
    from .cam.selection import check_layer_name
    if args.convention != "matlab" and args.upsampling is not None:
        raise RefcamError("--upsampling applies to --convention matlab only; each peer convention resizes "
                          "its own way (docs/oracle.md).")
    for role in ("feature_layer", "reduction_layer"):
        name = getattr(args, role)
        if name is not None:
            check_layer_name(net, name, "--" + role.replace("_", "-"))
    resolve_device(args.device)


def process_one(net: Any, path: str, label: Any, stem: str, targets: "OutputTargets",
                args: argparse.Namespace) -> str:
    """Read, compute and write one input; returns its log line."""
    item = read_input(path, net, args.format, args.csv_orientation)
    prediction = choose_score(net, item, label, args.dtype)
    result = compute(net, item, prediction, args)
    written = targets.write(stem, net, item, result, isinstance(label, list), args.alpha)
    notes = "".join(f"; {note}" for note in item.notes)
    return (f"{path}: {item.description}{notes}; {prediction.text}; feature layer {result.feature_layer!r}, "
            f"reduction layer {result.reduction_layer!r}; map {size_text(result.map.shape)} -> "
            + (", ".join(written) if written else "nothing written"))


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
        if suffix in (".png", ".npy") and not os.path.isdir(output):
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

    def write(self, stem: str, net: Any, item: Input, result: Any, stacked: bool, alpha: float) -> list[str]:
        """Write the .npy map and the pictures of one input; returns the paths written."""
        written = []
        if self.npy:
            np.save(self.path(stem, ".npy"), result.map)
            written.append(self.path(stem, ".npy"))
        if self.png:
            written.extend(self._pictures(stem, net, item, result, stacked, alpha))
        return written

    def _pictures(self, stem: str, net: Any, item: Input, result: Any, stacked: bool, alpha: float) -> list[str]:
        from . import viz
        kind = net.input_layer.default_format                        # "SSC", "SSSC" or "CT"
        score_map = result.map
        if "B" in item.format.upper():
            if np.shape(score_map)[-1] != 1:
                self._note("inputs with several observations (a B axis): no PNG is written; the .npy holds "
                           "every map (MATLAB's layout, observations last).")
                return []
            score_map = score_map[..., 0]                              # one observation: drop the B axis
        if kind == "CT" and not viz.has_matplotlib():
            self._note("sequence figures need matplotlib: pip install \"refcam[viz]\"; the .npy maps were written.")
            return []
        x = item.x if item.format == kind else matlab_layout(net, item)
        maps = ([(f"_label{index}", np.take(score_map, k, axis=-1)) for k, index in enumerate(result.labels)]
                if stacked else [("", score_map)])
        paths = []
        for label_suffix, one_map in maps:
            path = self.path(stem + label_suffix, ".png")
            if kind == "CT":
                viz.save_figure(viz.plot_sequence(x, one_map), path)
            elif kind == "SSSC":
                viz.write_png(path, viz.montage_image(x, one_map, alpha=alpha))
            else:
                viz.save_overlay(path, x, one_map, alpha=alpha)
            paths.append(path)
        return paths

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


def matlab_layout(net: Any, item: Input) -> np.ndarray:
    """The (first) observation in MATLAB's layout (h x w [x d] x c, or c x t), for its picture."""
    from .layout import to_internal
    internal, _ = to_internal(item.x, net.input_layer, format=item.format)   # (B, C, *S)
    if net.input_layer.default_format == "CT":
        return internal[0]
    return np.moveaxis(internal[0], 0, -1)


def output_stems(files: Sequence[str]) -> list[str]:
    """A file-name stem per input, unique: the name without suffix, plus the suffix where names collide."""
    stems = [os.path.splitext(os.path.basename(path))[0] for path in files]
    with_suffix = [os.path.basename(path).replace(".", "_") for path in files]
    unique = [stem if stems.count(stem) == 1 else full for stem, full in zip(stems, with_suffix)]
    return [name if unique.count(name) == 1 else f"{name}_{k}" for k, name in enumerate(unique)]


# --- progress ----------------------------------------------------------------------------------------
class Progress:
    """A progress bar on standard error for several inputs: tqdm when installed, else a one-line counter.

    Both stay silent when standard error is not a terminal, and for a single input.
    ``write`` prints a log line on standard output without breaking the bar.
    """

    def __init__(self, total: int) -> None:
        self.total, self.count = total, 0
        self.active = total > 1 and sys.stderr.isatty()
        self.bar = None
        if self.active:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, unit="input", file=sys.stderr)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.active:
            sys.stderr.write("\n")

    def describe(self, name: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(name)
        elif self.active:
            sys.stderr.write(f"\r[{self.count + 1}/{self.total}] {name[:60]:<60}")
            sys.stderr.flush()

    def advance(self) -> None:
        self.count += 1
        if self.bar is not None:
            self.bar.update(1)

    def write(self, line: str, stream: Any = None) -> None:
        stream = stream or sys.stdout
        if self.bar is not None:
            self.bar.write(line, file=stream)
        else:
            if self.active:
                sys.stderr.write("\r" + " " * 70 + "\r")
            print(line, file=stream, flush=True)


# --- golden and compare ----------------------------------------------------------------------------
def run_golden(args: argparse.Namespace) -> int:
    """``refcam golden MODEL INPUT -o GOLDEN``: refcam.golden.write with the command-line options."""
    from . import golden
    from .io import load

    check_convention(args.convention)
    net = load(args.model)
    check_options(net, args)
    labels = parse_labels(args.label, net)
    item = read_input(args.input, net, args.format, args.csv_orientation)
    label = None if labels is None else (labels[0] if len(labels) == 1 else labels)
    prediction = choose_score(net, item, label, args.dtype)
    options = {} if args.upsampling is None else {"upsampling": args.upsampling}
    written = golden.write(args.output, net, item.x, prediction.label, reduction=prediction.reduction,
                           convention=args.convention, feature_layer=args.feature_layer,
                           reduction_layer=args.reduction_layer, format=item.format, device=args.device,
                           dtype=args.dtype, **options)
    notes = "".join(f"; {note}" for note in item.notes)
    print(f"{args.input}: {item.description}{notes}; {prediction.text}")
    print(f"wrote {args.output}: convention {written.convention}, feature layer {written.feature_layer!r}, "
          f"reduction layer {written.reduction_layer!r}, map {size_text(written.map.shape)} "
          f"({written.map_axes}), {written.dtype}")
    return EXIT_OK


def run_compare(args: argparse.Namespace) -> int:
    """``refcam compare GOLDEN CANDIDATE``: print the report; exit 1 when out of tolerance."""
    from .compare import compare

    candidate = read_candidate(args.candidate)
    report = compare(candidate, args.golden, rtol=args.rtol, atol=args.atol, preset=args.preset)
    print(report)
    return EXIT_OK if report.passed else EXIT_PARTIAL


def read_candidate(path: str) -> Any:
    """A ``.npy`` map, or an ``.npz`` of named stages (a dict), loaded without pickles."""
    suffix = os.path.splitext(path)[1].lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as arrays:
                return {name: arrays[name] for name in arrays.files}
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
    except ValueError as err:
        raise InputError(f"{path}: not a numeric NumPy file ({one_line(str(err))}).") from err
    raise InputError(f"{path}: a candidate is a .npy map or an .npz of named stages, not {suffix or 'this file'}.")


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": run_demo, "info": run_info, "gradcam": run_gradcam, "golden": run_golden, "compare": run_compare,
}
