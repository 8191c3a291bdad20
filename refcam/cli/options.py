"""The options ``refcam gradcam`` and ``refcam golden`` share: what to differentiate, layers, preprocessing, method.

:func:`prepare` loads the network and checks every option that does not
depend on an input before any input is read; :func:`choose_score` picks the
label of one input (top-1 by default); :func:`compute` runs the CAM method.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import LabelError, LayerNotFoundError, RefcamError
from ..input_files import CSV_ORIENTATIONS, Input
from .common import number, resize_option, without_path

UPSAMPLING = ("bicubic", "nearest", "none")
REDUCTIONS = ("sum",)


# --- argument parsing ------------------------------------------------------------------------------
def add_cam_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``refcam gradcam`` and ``refcam golden``: label, classes, preprocessing, layers, ..."""
    parser.add_argument("--label", nargs="+", metavar="L",
                        help="class name or 0-based class index; one for all inputs, one per input, or "
                             "several for one input (one map per label); top1 (the default: the predicted "
                             "class) or top5 (the five best, one map each)")
    parser.add_argument("--classes", metavar="FILE",
                        help="class names of the output channels: one per line, or a JSON list "
                             "(default: the network's own, refcam info shows them)")
    parser.add_argument("--reduction", choices=REDUCTIONS,
                        help="sum: differentiate the sum of the reduction layer's output instead of one class")
    add_preprocessing_options(parser.add_argument_group(
        "preprocessing of image files", "default: what the network declares (refcam info), else the preset none:\n"
        "MATLAB's bicubic squash to the input size, raw values; the flags after --preprocess replace its fields"))
    parser.add_argument("--method", type=method_name, default="gradcam", metavar="NAME",
                        help="the CAM method: gradcam (default, MATLAB's) or another of refcam.explain: "
                             + ", ".join(method_names()[1:]) + " (docs/methods.md)")
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
                             "tf-keras-vis, keras-example (docs/oracle.md; with --method: docs/methods.md)")
    parser.add_argument("--csv-orientation", choices=CSV_ORIENTATIONS, default="time-rows",
                        help="CSV sequences: time-rows = one row per time step (default), "
                             "feature-rows = one row per feature (MATLAB's c x t)")


def add_preprocessing_options(group: Any) -> None:
    """``--preprocess`` and the flags that replace its fields (docs/preprocessing.md)."""
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


def method_names() -> tuple[str, ...]:
    """The CAM methods of :func:`refcam.explain`, as it lists them now (``"gradcam"`` first)."""
    from ..cam.explain import METHOD_NAMES
    return tuple(METHOD_NAMES)


def method_name(text: str) -> str:
    """A ``--method`` value: one of :func:`method_names`, else an error suggesting the closest (difflib)."""
    from ..preprocess import close_match_hint
    names = method_names()
    if text not in names:
        raise argparse.ArgumentTypeError(f"{text!r} is not a CAM method.{close_match_hint(text, names)} The "
                                         f"methods are: {', '.join(names)} (docs/methods.md).")
    return text


# --- checks before any input is read ---------------------------------------------------------------
@dataclass
class Setup:
    """What every input of a run shares: the network (with ``--classes``), the preprocessing, the labels."""

    net: Any
    preprocessing: Any
    labels: list[int] | str | None


def prepare(args: argparse.Namespace) -> Setup:
    """Load the network and check every option that does not depend on an input, before reading any."""
    from ..io import load
    from ..labels import parse_labels, read_class_names

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


def check_options(net: Any, args: argparse.Namespace) -> None:
    """Refuse options that would fail for every input (layer names, device, upsampling), before reading any."""
    from ..backend import resolve_device
    if args.method != "gradcam" and args.convention != "matlab":
        from ..cam.method_conventions import METHOD_CONVENTIONS
        if args.method not in METHOD_CONVENTIONS.get(args.convention, {}):
            having = [name for name, methods in METHOD_CONVENTIONS.items() if args.method in methods]
            raise RefcamError(f"--convention {args.convention} has no --method {args.method}; that method exists "
                              f"in --convention {' or '.join(having + ['matlab'])} (docs/methods.md).")
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
    from ..cam.selection import check_layer_name
    from ..preprocess import close_match_hint
    try:
        check_layer_name(net, name, option)
    except LayerNotFoundError as err:
        hint = close_match_hint(name, net.layer_names + list(net.aliases))
        if not hint:
            raise
        names = str(err).split("; ", 1)[1]                              # "valid layer names are: ..."
        raise LayerNotFoundError(f"{option} {name!r} is not a layer of this network.{hint} "
                                 f"{names[0].upper()}{names[1:]}") from None


def check_convention(name: str) -> None:
    """Refuse an unknown ``--convention`` before any work is done."""
    if name == "matlab":
        return
    from ..cam.conventions import CONVENTIONS
    if name not in CONVENTIONS:
        raise RefcamError(f"--convention {name!r} is unknown; choose one of {', '.join(CONVENTIONS)}.")


def choose_preprocessing(net: Any, args: argparse.Namespace) -> Any:
    """``--preprocess`` (else the network's, else the preset none) with ``--resize`` ... ``--std`` over it."""
    from ..preprocess import PRESETS, get_preprocessing
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


# --- labels, scores and the map --------------------------------------------------------------------
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
    from ..cam.selection import default_reduction_layer, sum_of_outputs
    from ..labels import TOP_K, top_classes
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
    from ..labels import class_text
    scores = np.asarray(result.scores, dtype=np.float64)                   # (K, B)
    if prediction.reduction is not None:
        return f"{prediction.how}, value {scores.reshape(-1)[0]:.4g}"
    shown = [class_text(int(index), classes, score) for index, score in zip(result.labels, scores[:, 0])]
    return ("class " if len(shown) == 1 else "classes ") + ", ".join(shown) + f", {prediction.how}"


def compute(net: Any, item: Input, prediction: Prediction, args: argparse.Namespace) -> Any:
    """The map of one input with the command-line options.

    MATLAB's Grad-CAM (:func:`refcam.gradcam`), a peer convention's
    (:func:`refcam.cam.conventions.gradcam_as`), or ``--method``'s through
    :func:`refcam.explain` (in ``--convention``'s recipe), given only the
    options set (each method keeps its own defaults).
    """
    options = dict(reduction=prediction.reduction, feature_layer=args.feature_layer,
                   reduction_layer=args.reduction_layer, format=item.format, device=args.device, dtype=args.dtype)
    if args.method != "gradcam":
        from ..cam.explain import explain
        given = {name: value for name, value in dict(options, upsampling=args.upsampling).items() if value is not None}
        return explain(net, item.x, prediction.label, method=args.method, convention=args.convention, **given)
    if args.convention == "matlab":
        from ..cam.gradcam import gradcam
        return gradcam(net, item.x, prediction.label, upsampling=args.upsampling or "bicubic", **options)
    from ..cam.conventions import gradcam_as
    return gradcam_as(args.convention, net, item.x, prediction.label, **options)


def empty_map_problem(score_map: Any) -> str | None:
    """Why a map shows nothing (zero everywhere, NaN or Inf), or None when it is fine."""
    values = np.asarray(score_map)
    if not np.isfinite(values).all():
        return f"the map holds {int(np.sum(~np.isfinite(values)))} NaN or Inf values"
    if not values.any():
        return "the map is zero everywhere (no position has positive evidence for the class at this feature layer)"
    return None

