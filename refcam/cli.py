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
4    empty result: ``refcam gradcam`` processed every input, but a map is zero
     everywhere or not finite (a warning names it; ``--allow-empty`` accepts it).
130  interrupted (Ctrl-C).

``--debug`` prints the traceback of an error and keeps the exit code.

Inputs of ``refcam gradcam`` and ``refcam golden``: PNG/JPEG/BMP/TIFF images
(read with Pillow as uint8 like MATLAB's ``imread``, converted to the
network's 1 or 3 channels, then :func:`refcam.preprocess` with ``--preprocess``
and its overrides, else what the network declares, else the preset ``none``:
MATLAB's bicubic ``imresize`` to the input size, raw values), ``.npy`` arrays
(taken as the network input, in the network's MATLAB layout unless
``--format`` names another), and CSV sequences (``--csv-orientation``:
``time-rows`` = one row per time step, ``feature-rows`` = one row per feature;
a first line that is not numbers is a header and skipped).
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from . import __version__
from .errors import InputError, LabelError, LayerNotFoundError, OptionalDependencyError, RefcamError

EXIT_OK, EXIT_PARTIAL, EXIT_ERROR, EXIT_INTERNAL, EXIT_EMPTY, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
ARRAY_SUFFIXES = (".npy",)
CSV_SUFFIXES = (".csv",)
INPUT_SUFFIXES = IMAGE_SUFFIXES + ARRAY_SUFFIXES + CSV_SUFFIXES
UPSAMPLING = ("bicubic", "nearest", "none")
CSV_ORIENTATIONS = ("time-rows", "feature-rows")
OUTPUT_SUFFIXES = (".png", ".npy")
REDUCTIONS = ("sum",)
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
missing file, bad label, ...); 3 internal error (please report, with --debug); 4 a map is
all zero or not finite (refcam gradcam; --allow-empty accepts it).""",
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
  refcam gradcam resnet18.onnx cat.jpg --preprocess imagenet-torchvision --classes imagenet.txt
  refcam gradcam net.h5 cat.png --label top5           the five best classes, one map each
  refcam gradcam net.h5 cat.png --label tabby -o out/  the class "tabby"; writes into out/
  refcam gradcam net.h5 cat.png -o cat_map.npy         only the map, as .npy
  refcam gradcam net.h5 photos/ --label 3              a folder; label = 0-based class index 3
  refcam gradcam net.h5 a.png b.png --label cat dog    one label per input
  refcam gradcam vowels.h5 seq.csv --csv-orientation feature-rows
  refcam gradcam net.h5 x.npy --format CSS --feature-layer relu_3 --reduction-layer fc
  refcam gradcam net.h5 cat.png --convention pytorch-grad-cam

Without --label: the predicted class, the top-1 of the reduction layer's output (softmax or
logits), as MATLAB's examples do with classify; --reduction sum differentiates the sum of that
output instead. A label is a class name (from the network or --classes FILE), a 0-based class
index (MATLAB's indices are 1-based), top1 or top5. Images are preprocessed as --preprocess says,
else as the network declares (refcam info), else with the preset none (MATLAB's squash).""",
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
                         help="a folder (default: the current one; created if missing), or for one input a file "
                              "name ending in .png (only the overlay) or .npy (only the map)")
    gradcam.add_argument("--png", action=argparse.BooleanOptionalAction, default=True,
                         help="write overlay/figure PNGs (default: yes)")
    gradcam.add_argument("--npy", action=argparse.BooleanOptionalAction, default=True,
                         help="write the maps as .npy, MATLAB's map layout (default: yes)")
    gradcam.add_argument("--alpha", type=unit_interval, default=0.5,
                         help="opacity of the map over the image, in [0, 1] (0.5)")
    gradcam.add_argument("--allow-empty", action="store_true",
                         help="exit 0, not 4, when a map is zero everywhere or not finite (the warning stays)")

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
                             "several for one input (one map per label); top1 (the default: the predicted "
                             "class) or top5 (the five best, one map each)")
    parser.add_argument("--classes", metavar="FILE",
                        help="class names of the output channels: one per line, or a JSON list "
                             "(default: the network's own, refcam info shows them)")
    parser.add_argument("--reduction", choices=REDUCTIONS,
                        help="sum: differentiate the sum of the reduction layer's output instead of one class")
    _add_preprocessing_options(parser.add_argument_group(
        "preprocessing of image files", "default: what the network declares (refcam info), else the preset none:\n"
        "MATLAB's bicubic squash to the input size, raw values; the flags after --preprocess replace its fields"))
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


def _add_preprocessing_options(group: Any) -> None:
    group.add_argument("--preprocess", metavar="PRESET",
                       help="imagenet-torchvision, imagenet-caffe, keras-mobilenet or none (docs/preprocessing.md)")
    group.add_argument("--resize", type=resize_option, metavar="MODE",
                       help="squash, pad, shorter-side+centre-crop, or shorter-side+centre-crop:N (N: the shorter "
                            "side before the crop)")
    group.add_argument("--channel-order", choices=("RGB", "BGR"), help="the network's channel order")
    group.add_argument("--scale", type=number, metavar="S", help="factor before mean and std, e.g. 1/255")
    group.add_argument("--mean", type=number, nargs="+", metavar="M", help="subtracted after --scale; one value, "
                                                                          "or one per channel")
    group.add_argument("--std", type=number, nargs="+", metavar="S", help="divided by after the mean; one value, "
                                                                         "or one per channel")


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
    from .preprocess import RESIZE_MODES, close_match_hint
    mode, _, size = text.partition(":")
    if mode not in RESIZE_MODES or (size and (mode != "shorter-side+centre-crop" or not size.isdigit()
                                              or int(size) < 1)):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a resize mode: give squash, pad, shorter-side+centre-crop or "
            f"shorter-side+centre-crop:N (N a positive integer).{close_match_hint(mode, RESIZE_MODES)}")
    return mode, int(size) if size else None


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
        show_traceback(args)
        print(f"refcam {args.command}: error: {describe_error(err)}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as err:  # a bug: say so in one line, the traceback is one flag away
        show_traceback(args)
        print(f"refcam {args.command}: internal error: {type(err).__name__}: {one_line(str(err))} "
              "(a bug in refcam; rerun with --debug and report the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


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
    if net.preprocessing is not None:
        print(f"preprocessing:    {net.preprocessing.describe()} (declared by the network)")
    else:
        print("preprocessing:    none declared; refcam gradcam uses --preprocess, else the preset 'none' "
              "(MATLAB's squash, raw values)")
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


# --- labels and scores -----------------------------------------------------------------------------
def sum_of_outputs(y: Any) -> Any:
    """``--reduction sum``: the reduction layer's output summed (E2's identity for one output)."""
    return y.sum()


def labels_per_input(labels: list[int] | str | None, count: int) -> list[Any]:
    """The label argument of each input: one for all, one each, or (one input) a list of labels."""
    if labels is None or isinstance(labels, str):
        return [labels] * count
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
    """The label (0-based index, list of them, or a reduction) Grad-CAM uses for one input, and why."""

    label: Any
    reduction: Callable[[Any], Any] | None
    how: str


def choose_score(net: Any, item: Input, label: Any, args: argparse.Namespace) -> Prediction:
    """``--reduction sum``, the given label(s), or the top-1 / top-5 of the reduction layer's output."""
    from .cam.selection import default_reduction_layer
    from .labels import TOP_K, top_classes
    if args.reduction == "sum":
        return Prediction(None, sum_of_outputs, "score: sum of the reduction layer's output (--reduction sum)")
    if label is not None and not isinstance(label, str):
        return Prediction(label, None, "given by --label")
    k = TOP_K[label or "top1"]
    layer = net.resolve(args.reduction_layer or default_reduction_layer(net))
    reduced = net.activations(item.x, [layer], format=item.format, dtype=args.dtype)[layer]
    try:
        ranked = top_classes(reduced, k)
    except LabelError as err:
        raise LabelError(f"{item.path}: {err}") from None
    if k == 1:
        return Prediction(ranked[0].index, None, f"predicted top-1 of {layer!r}")
    return Prediction([c.index for c in ranked], None, f"predicted top-{len(ranked)} of {layer!r}")


def score_text(prediction: Prediction, result: Any, classes: Sequence[str] | None) -> str:
    """The log's words for the class(es) and score(s) Grad-CAM differentiated."""
    from .labels import class_text
    scores = np.asarray(result.scores, dtype=np.float64)                   # (K, B)
    if prediction.reduction is not None:
        return f"{prediction.how}, value {scores.reshape(-1)[0]:.4g}"
    shown = [class_text(int(index), classes, score) for index, score in zip(result.labels, scores[:, 0])]
    return ("class " if len(shown) == 1 else "classes ") + ", ".join(shown) + f", {prediction.how}"


def compute(net: Any, item: Input, prediction: Prediction, args: argparse.Namespace) -> Any:
    """Grad-CAM of one input with the command-line options (a peer convention through gradcam_as)."""
    options = dict(reduction=prediction.reduction, feature_layer=args.feature_layer,
                   reduction_layer=args.reduction_layer, format=item.format, device=args.device, dtype=args.dtype)
    if args.convention == "matlab":
        from .cam.gradcam import gradcam
        return gradcam(net, item.x, prediction.label, upsampling=args.upsampling or "bicubic", **options)
    from .cam.conventions import gradcam_as
    return gradcam_as(args.convention, net, item.x, prediction.label, **options)


def empty_map_problem(score_map: Any) -> str | None:
    """Why a map shows nothing (zero everywhere, NaN or Inf), or None when it is fine."""
    values = np.asarray(score_map)
    if not np.isfinite(values).all():
        return f"the map holds {int(np.sum(~np.isfinite(values)))} NaN or Inf values"
    if not values.any():
        return "the map is zero everywhere (no position has positive evidence for the class at this feature layer)"
    return None


def check_convention(name: str) -> None:
    """Refuse an unknown ``--convention`` before any work is done."""
    if name == "matlab":
        return
    from .cam.conventions import CONVENTIONS
    if name not in CONVENTIONS:
        raise RefcamError(f"--convention {name!r} is unknown; choose one of {', '.join(CONVENTIONS)}.")


# --- gradcam ---------------------------------------------------------------------------------------
@dataclass
class Setup:
    """What every input of a run shares: the network (with ``--classes``), the preprocessing, the labels."""

    net: Any
    preprocessing: Any
    labels: list[int] | str | None


def prepare(args: argparse.Namespace) -> Setup:
    """Load the network and check every option that does not depend on an input, before reading any."""
    from .io import load
    from .labels import parse_labels, read_class_names

    check_convention(args.convention)
    net = load(args.model)
    if args.classes is not None:
        try:
            net = net.with_metadata(classes=read_class_names(args.classes))
        except RefcamError as err:
            raise type(err)(f"--classes {args.classes}: {without_path(str(err), args.classes)}") from None
    check_options(net, args)
    if args.reduction is not None and args.label is not None:
        raise LabelError("--label and --reduction sum both say what to differentiate; give one of them.")
    return Setup(net, choose_preprocessing(net, args), parse_labels(args.label, net.classes))


def choose_preprocessing(net: Any, args: argparse.Namespace) -> Any:
    """``--preprocess`` (else the network's, else the preset none) with ``--resize`` ... ``--std`` over it."""
    from .preprocess import PRESETS, get_preprocessing
    base = get_preprocessing(args.preprocess) if args.preprocess else (net.preprocessing or PRESETS["none"])
    changes: dict[str, Any] = {}
    if args.resize is not None:
        changes["resize"] = args.resize[0]
        if args.resize[1] is not None:
            changes["shorter_side"] = args.resize[1]
    for name in ("channel_order", "scale", "mean", "std"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    return replace(base, **changes)


def run_gradcam(args: argparse.Namespace) -> int:
    """``refcam gradcam MODEL INPUT...``: maps and overlays; failed inputs are reported and skipped."""
    setup = prepare(args)
    files, problems = expand_inputs(args.inputs)
    targets = OutputTargets.from_args(args, files)
    per_input = labels_per_input(setup.labels, len(files)) if files else []
    failures, empty = list(problems), []
    done = 0
    with Progress(len(files)) as bar:
        for path, label, stem in zip(files, per_input, targets.stems):
            bar.describe(os.path.basename(path))
            try:
                line, problem = process_one(setup, path, label, stem, targets, args)
                bar.write(line)
                done += 1
            except (RefcamError, OSError) as err:
                show_traceback(args)
                failures.append((path, without_path(describe_error(err), path)))
                bar.write(f"refcam gradcam: error: {path}: {failures[-1][1]}", sys.stderr)
            else:
                if problem is not None:
                    empty.append(path)
                    bar.write(f"refcam gradcam: warning: {path}: {problem}; choose another --label or "
                              "--feature-layer" + ("." if args.allow_empty else
                                                   f" (exit code {EXIT_EMPTY}; --allow-empty accepts it)."),
                              sys.stderr)
            bar.advance()
    for note in targets.notes:
        print(f"note: {note}")
    total = len(files) + len(problems)
    if total > 1:
        print(f"summary: {total} inputs, {done} done, {len(failures)} failed"
              + (f", {len(empty)} empty" if empty else "")
              + "".join(f"\n  failed: {path}: {message}" for path, message in failures))
    elif problems:
        print(f"refcam gradcam: error: {problems[0][0]}: {problems[0][1]}", file=sys.stderr)
    if failures:
        return EXIT_PARTIAL if done else EXIT_ERROR   # some written, or nothing
    return EXIT_EMPTY if empty and not args.allow_empty else EXIT_OK


def check_options(net: Any, args: argparse.Namespace) -> None:
    """Refuse options that would fail for every input (layer names, device, upsampling), before reading any."""
    from .backend import resolve_device
    if args.convention != "matlab" and args.upsampling is not None:
        raise RefcamError("--upsampling applies to --convention matlab only; each peer convention resizes "
                          "its own way (docs/oracle.md).")
    for role in ("feature_layer", "reduction_layer"):
        name = getattr(args, role)
        if name is not None:
            check_layer(net, name, "--" + role.replace("_", "-"))
    resolve_device(args.device)


def check_layer(net: Any, name: str, option: str) -> None:
    """The layer name of ``option``, or a LayerNotFoundError suggesting the closest names (difflib)."""
    from .cam.selection import check_layer_name
    from .preprocess import close_match_hint
    try:
        check_layer_name(net, name, option)
    except LayerNotFoundError as err:
        hint = close_match_hint(name, net.layer_names + list(net.aliases))
        if not hint:
            raise
        names = str(err).split("; ", 1)[1]                              # "valid layer names are: ..."
        raise LayerNotFoundError(f"{option} {name!r} is not a layer of this network.{hint} "
                                 f"{names[0].upper()}{names[1:]}") from None


def process_one(setup: Setup, path: str, label: Any, stem: str, targets: "OutputTargets",
                args: argparse.Namespace) -> tuple[str, str | None]:
    """Read, compute and write one input; returns its log line and why its map is empty (or None)."""
    net = setup.net
    item = read_input(path, net, args.format, args.csv_orientation, setup.preprocessing)
    prediction = choose_score(net, item, label, args)
    result = compute(net, item, prediction, args)
    written = targets.write(stem, net, item, result, isinstance(prediction.label, list), args.alpha)
    notes = "".join(f"; {note}" for note in item.notes)
    line = (f"{path}: {item.description}{notes}; {score_text(prediction, result, net.classes)}; feature layer "
            f"{result.feature_layer!r}, reduction layer {result.reduction_layer!r}; map "
            f"{size_text(result.map.shape)} -> " + (", ".join(written) if written else "nothing written"))
    return line, empty_map_problem(result.map)


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
        if item.original is not None and np.shape(score_map)[:2] == item.geometry.input_size:
            from .preprocess import map_to_original                     # an image file: drawn on the photo
            x = item.original
            maps = [(suffix, map_to_original(one_map, item.geometry)) for suffix, one_map in maps]
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

    setup = prepare(args)
    net, labels = setup.net, setup.labels
    item = read_input(args.input, net, args.format, args.csv_orientation, setup.preprocessing)
    label = labels if labels is None or isinstance(labels, str) else (labels[0] if len(labels) == 1 else labels)
    prediction = choose_score(net, item, label, args)
    options = {} if args.upsampling is None else {"upsampling": args.upsampling}
    written = golden.write(args.output, net, item.x, prediction.label, reduction=prediction.reduction,
                           convention=args.convention, feature_layer=args.feature_layer,
                           reduction_layer=args.reduction_layer, format=item.format, device=args.device,
                           dtype=args.dtype, **options)
    notes = "".join(f"; {note}" for note in item.notes)
    print(f"{args.input}: {item.description}{notes}; {score_text(prediction, written, net.classes)}")
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
