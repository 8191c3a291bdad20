"""The ``refcam`` command line: ``refcam demo | info | gradcam | golden | compare | conformance`` (docs/cli.md).

One module per subcommand (:mod:`refcam.cli.demo`, :mod:`~refcam.cli.info`,
:mod:`~refcam.cli.gradcam`, :mod:`~refcam.cli.golden`, :mod:`~refcam.cli.compare`), each
with its ``SUMMARY``, ``EPILOG``, ``add_arguments`` and ``run_<command>``; what they
share is in :mod:`refcam.cli.common` (exit codes, errors, reading inputs, output
paths) and :mod:`refcam.cli.options` (the options of ``gradcam`` and ``golden``).

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
from typing import Callable, Sequence

from .. import __version__
from ..errors import RefcamError
from . import compare, conformance, demo, golden, gradcam, info
from .common import (EXIT_EMPTY, EXIT_ERROR, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL,
                     describe_error, one_line, output_stems, show_traceback)
from .compare import run_compare
from .conformance import run_conformance
from .demo import DEMO_OUTPUT, identity, run_demo
from .golden import run_golden
from .gradcam import run_gradcam
from .info import run_info
from .options import compute

__all__ = ["COMMANDS", "DEMO_OUTPUT", "EXIT_EMPTY", "EXIT_ERROR", "EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_PARTIAL",
           "HANDLERS", "build_parser", "compute", "identity", "main", "output_stems", "run_compare",
           "run_conformance", "run_demo", "run_golden", "run_gradcam", "run_info"]

EPILOG = """\
examples:
  refcam demo                                     Grad-CAM on the shipped digits network
  refcam info net.h5                              layer table, input size, classes, default layers
  refcam gradcam net.h5 cat.png                   overlay PNG and .npy map in the current folder
  refcam gradcam net.h5 photos/ -o maps/          every image of a folder
  refcam gradcam net.onnx cat.jpg --preprocess imagenet-torchvision --figure overlay
                                                  a PyTorch model: a titled figure of its top-1 class
  refcam golden net.h5 cat.png -o cat.golden.h5   a golden file for testing your implementation
  refcam compare cat.golden.h5 my_map.npy         is my map refcam's?
  refcam conformance run --adapter mypkg.cam:run  score your implementation on refcam's suite

exit codes: 0 success; 1 some inputs failed or compare out of tolerance; 2 error (bad usage,
missing file, bad label, ...); 3 internal error (please report, with --debug); 4 a map is
all zero or not finite (refcam gradcam; --allow-empty accepts it)."""

COMMANDS = {"demo": demo, "info": info, "gradcam": gradcam, "golden": golden, "compare": compare,
            "conformance": conformance}


def build_parser() -> argparse.ArgumentParser:
    """The ``refcam`` argument parser: one subparser per module of :data:`COMMANDS`."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,   # before or after COMMAND
                        help="show the full traceback of an error")
    parser = argparse.ArgumentParser(
        prog="refcam", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        description="refcam: MATLAB's gradCAM, reproduced in Python, with golden outputs for testing "
                    "other Grad-CAM implementations.", epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"refcam {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in COMMANDS.items():
        module.add_arguments(commands.add_parser(
            name, parents=[common], help=module.SUMMARY, description=module.SUMMARY, epilog=module.EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter))
    return parser


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


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": run_demo, "info": run_info, "gradcam": run_gradcam, "golden": run_golden, "compare": run_compare,
    "conformance": run_conformance,
}
