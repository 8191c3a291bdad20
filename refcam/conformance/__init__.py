"""The conformance kit: a versioned suite of Grad-CAM cases, and a runner that scores any implementation on it.

* :func:`suite` - the cases (:mod:`refcam.conformance.cases`), on the networks of :mod:`refcam.conformance.networks`;
* :func:`build` - write the suite to a folder (networks, inputs, goldens with every intermediate, a manifest);
* :func:`run` - score an adapter (``run(case) -> map or dict of stages``, :mod:`refcam.conformance.runner`);
* adapters: :mod:`refcam.conformance.adapters.reference` (refcam itself) and
  :mod:`refcam.conformance.adapters.planted` (one planted bug each).

Guide: ``docs/conformance.md``.
"""
from .build import build, read_manifest
from .cases import SUITE_VERSION, CaseSpec, suite
from .runner import Case, CaseScore, Scorecard, cases, load_adapter, run

__all__ = ["SUITE_VERSION", "Case", "CaseScore", "CaseSpec", "Scorecard", "build", "cases", "load_adapter",
           "read_manifest", "run", "suite"]
