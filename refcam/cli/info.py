"""``refcam info MODEL``: the layer table, input, output, classes, preprocessing and default layers."""
from __future__ import annotations

import argparse
from typing import Any

from ..errors import RefcamError
from .common import EXIT_OK, MODEL_HELP, input_description, one_line

SEQUENCE_PROBE_LENGTHS = (1, 2, 8, 32, 128)
SUMMARY = "Describe a network: layer table, input size, classes, default Grad-CAM layers."
EPILOG = """\
examples:
  refcam info fixtures/e1_squeezenet_mini.h5
  refcam info fixtures/e3_japanese_vowels.h5"""


def add_arguments(info: argparse.ArgumentParser) -> None:
    """The arguments of ``refcam info``."""
    info.add_argument("model", metavar="MODEL", help=MODEL_HELP)


def run_info(args: argparse.Namespace) -> int:
    """``refcam info MODEL``: the layer table, input, output, classes and default layers."""
    from ..cam.selection import default_reduction_layer
    from ..io import load

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
    from ..cam.selection import default_feature_layer
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

