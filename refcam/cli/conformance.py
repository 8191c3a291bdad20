"""``refcam conformance build | list | run | export | check``: the conformance kit (docs/conformance.md)."""
from __future__ import annotations

import argparse

from .common import EXIT_OK, EXIT_PARTIAL

SUMMARY = "Score a Grad-CAM implementation on refcam's suite of golden cases."
EPILOG = """\
examples:
  refcam conformance list                               the cases of the suite
  refcam conformance build suite/                       write the suite (networks, inputs, goldens, manifest)
  refcam conformance run --adapter mypkg.cam:run_case   score a Python implementation (run_case(case) -> map)
  refcam conformance run --adapter mypkg.cam:run_case --cases 'series2d/*' --junit report.xml
  refcam conformance export suite/                      the same files, for an implementation outside Python
  refcam conformance check suite/                       score the <case>.output.npy files written beside them

exit codes: 0 every case passed; 1 some failed (the scorecard names each one's first failing stage)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The sub-subcommands of ``refcam conformance``."""
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="list the cases")
    for name, text in (("build", "write the suite to DIR"), ("export", "write the suite to DIR for the file protocol")):
        actions.add_parser(name, help=text).add_argument("folder", metavar="DIR")
    run = actions.add_parser("run", help="score a Python adapter")
    run.add_argument("--adapter", required=True, metavar="MODULE:FUNCTION",
                     help="the implementation under test: a callable run(case) -> map or dict of stages")
    run.add_argument("--suite", metavar="DIR", help="a suite built by 'refcam conformance build' "
                                                    "(default: built afresh in a temporary folder)")
    check = actions.add_parser("check", help="score the output files written in DIR (file protocol)")
    check.add_argument("folder", metavar="DIR")
    for scored in (run, check):
        scored.add_argument("--cases", metavar="PATTERN", help="only the case ids matching this glob")
        scored.add_argument("--dtype", choices=("float64", "float32"), help="only the cases of this dtype")
        scored.add_argument("--preset", choices=("float64", "float32"),
                            help="score every case with this tolerance (float32: an implementation in float32)")
        scored.add_argument("--json", metavar="FILE", help="also write the scorecard as JSON")
        scored.add_argument("--junit", metavar="FILE", help="also write the scorecard as JUnit XML")


def run_conformance(args: argparse.Namespace) -> int:
    """Dispatch ``refcam conformance ACTION``."""
    from .. import conformance
    if args.action == "list":
        for case in conformance.suite():
            print(f"{case.id:<38} {case.method:<13} {case.convention:<17} {case.dtype:<8} {case.description}")
        print(f"{len(conformance.suite())} cases, suite version {conformance.SUITE_VERSION}")
        return EXIT_OK
    if args.action in ("build", "export"):
        manifest = conformance.build(args.folder)
        print(f"wrote {len(manifest['cases'])} cases and {len(manifest['networks'])} networks to {args.folder} "
              f"(suite version {manifest['suite_version']}; manifest.json lists every file's SHA-256)")
        if args.action == "export":
            print("write <case>.output.npy (the map) or <case>.output.npz (stages) beside each <case>.input.npy, "
                  f"then run: refcam conformance check {args.folder}")
        return EXIT_OK
    if args.action == "run":
        card = conformance.run(conformance.load_adapter(args.adapter), args.suite, pattern=args.cases,
                               dtype=args.dtype, preset=args.preset)
    else:
        from ..conformance.files import read_outputs
        card = conformance.run(read_outputs, args.folder, pattern=args.cases, dtype=args.dtype, preset=args.preset)
    print(card)
    for path, text in ((args.json, card.to_json()), (args.junit, card.to_junit())):
        if path:
            with open(path, "w", encoding="utf-8") as out:
                out.write(text)
    return EXIT_OK if card.all_passed else EXIT_PARTIAL
