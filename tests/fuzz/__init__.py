"""The hostile-file fuzzer: thousands of damaged or crafted files made from the fixtures, run through refcam.

Every case is a refcam network, golden, Keras or ONNX file spoilt in one way
(:mod:`tests.fuzz.corpus`); the runner loads it in a worker process with a time
and memory limit, runs ``predict`` and one Grad-CAM when it loads, and
classifies what happened (:mod:`tests.fuzz.runner`). A reader must either load
the file or raise a ``refcam.RefcamError``; a generic exception, a hang, a
memory blow-up or a read outside the file is a failure. ``python -m tests.fuzz``
runs it (see ``__main__``); ``tests/fuzz/test_fuzz_sample.py`` runs a seeded
sample of 500 cases under pytest. docs/security.md, "The fuzzer", describes it
for users.
"""
