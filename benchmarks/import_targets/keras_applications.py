"""The Keras Applications import targets: does refcam load each one and agree with TensorFlow in float64?

A measurement, not a test: it prints the table of ``docs/import.md``. Two stages,
because TensorFlow lives in its own environment and refcam in the main one::

    /path/to/tf-env/bin/python benchmarks/import_targets/keras_applications.py build /tmp/keras_targets
    python benchmarks/import_targets/keras_applications.py compare /tmp/keras_targets

``build`` (TensorFlow, Keras 3 and tf-keras; refcam is not imported) writes, for
each application ``<app>`` and each Keras API ``<api>`` that has it
(``keras3``: Keras 3's legacy .h5 writer, new-style ``inbound_nodes``;
``tf_keras``: the Keras 2 API, old-style ``inbound_nodes``), into OUTDIR:

* ``<app>__<api>.h5``: ``model.save(...)`` of ``keras.applications.<app>(weights=None)``
  at a small input size, float32 weights. Weights: the applications' own seeded
  initialisers for kernels; biases, batch-norm and layer-norm ``gamma``/``beta``
  random (``randomize_weights`` of ``fixtures/make_import_fixtures_keras.py``);
  batch-norm moving statistics set from one training-mode pass over a seeded
  calibration batch (momentum 0), then perturbed (mean + 0.3 std N(0, 1),
  variance x U(0.5, 2)): non-trivial statistics that still keep the activations of
  a deep network of order one, so the 1000-way softmax is not saturated;
* ``<app>__<api>_input.npy``: one observation ``(H, W, 3)``, float64 holding
  float32 values (integers 0..255 for the applications that rescale inside the
  model, else U(-1, 1) rounded to float32), so the float32 Keras input layer
  sees exactly what refcam sees;
* ``<app>__<api>_output.npy``: the softmax output ``(1000,)`` computed by
  TensorFlow in **float64** (the model rebuilt from its config with every
  layer's dtype float64 and the same float32-valued weights, not XLA-compiled,
  exact GELU by ``tf.math.erf`` instead of ``tf.nn.gelu``, whose float64 form is
  about 5e-9 off in TensorFlow 2.21: ``float64_twin(..., exact_gelu=True)`` and
  ``float64_forward`` of the fixture script);
* ``<app>__<api>_gradcam.npy``: the raw Grad-CAM map (feature-layer resolution,
  no resize) by ``tf.GradientTape`` in float64 (``float64_gradcam``): ``A`` the
  output of the feature layer, the last layer whose output has a spatial size
  above 1 (MATLAB's default rule); ``y`` the softmax output for the top class
  of the float64 forward; ``alpha_k = mean_S dy/dA_k``, ``map = relu(sum_k alpha_k A_k)``;
* ``manifest.json``: all of the above per row, with the versions and the seed.

``compare`` (refcam; TensorFlow is not needed) loads each ``.h5`` with
``refcam.load``, runs ``net.predict`` and ``refcam.gradcam(net, x, label,
feature_layer=<the Keras layer>, upsampling="none")`` in float64 (reduction
layer: refcam's default, the imported softmax), and prints a markdown table:
whether the file loads (else the first line of refcam's error), the largest
relative error ``max|refcam - TF| / max|TF|`` of the output and of the raw map,
and the times. ``compare.json`` in OUTDIR keeps the full record.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SEED = 2026_12
CALIBRATION_BATCH = 4
IMPORT_BOUND = 1e-9          # the bound: forward and raw map within 1e-9 of TensorFlow float64


@dataclass(frozen=True)
class Application:
    """One Keras application: its constructor name, input side and the input range it expects."""

    name: str
    side: int
    pixels: bool             # True: integers 0..255 (the model rescales inside); False: U(-1, 1)


# Sides: 96 gives a 3x3 last feature map for the /32 networks; InceptionV3 (min 75) needs 139 for 3x3
# (at 96 its last three mixed blocks are 1x1).
APPLICATIONS = (
    Application("MobileNetV2", 96, False),
    Application("MobileNetV3Small", 96, True),
    Application("ResNet50", 96, False),
    Application("VGG16", 96, False),
    Application("DenseNet121", 96, False),
    Application("Xception", 96, False),
    Application("InceptionV3", 139, False),
    Application("EfficientNetB0", 96, True),
    Application("NASNetMobile", 96, False),
    Application("ConvNeXtTiny", 96, True),
)
APIS = ("keras3", "tf_keras")


def row_name(app: str, api: str) -> str:
    return f"{app}__{api}"


def relative_error(found: Any, expected: Any) -> float:
    """``max|found - expected| / max|expected|`` (the absolute error when ``expected`` is all zero)."""
    import numpy as np
    found, expected = np.asarray(found, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    scale = float(np.abs(expected).max())
    error = float(np.abs(found.reshape(expected.shape) - expected).max())
    return error / scale if scale > 0.0 else error


# --- stage 1: TensorFlow --------------------------------------------------------------------------
def _tensorflow() -> tuple[Any, Any, Any, Any]:
    """TensorFlow, Keras 3, tf-keras and the fixture script's helpers (imported only in stage 1)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, os.path.join(ROOT, "fixtures"))
    import keras
    import make_import_fixtures_keras as helpers
    import tensorflow as tf
    import tf_keras
    return tf, keras, tf_keras, helpers


def last_spatial_layer(model: Any) -> str:
    """MATLAB's default feature layer: the last layer whose (single) output has a spatial size above 1."""
    for layer in reversed(model.layers):
        shape = layer.output.shape
        if len(shape) == 4 and (shape[1] or 0) * (shape[2] or 0) > 1:
            return layer.name
    raise ValueError(f"{model.name} has no layer with a spatial output")


def calibrate_batch_norm(model: Any, batch: Any, rng: Any) -> int:
    """Moving statistics from one training-mode pass over ``batch`` (momentum 0), then perturbed.

    Returns the number of batch-normalisation layers set.
    """
    import numpy as np
    layers = [layer for layer in model.layers if type(layer).__name__ == "BatchNormalization"]
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    model(batch, training=True)
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum
        mean = np.asarray(layer.moving_mean.numpy(), dtype=np.float64)
        variance = np.asarray(layer.moving_variance.numpy(), dtype=np.float64)
        mean = mean + 0.3 * np.sqrt(variance) * rng.standard_normal(mean.shape)
        variance = variance * rng.uniform(0.5, 2.0, variance.shape)
        layer.moving_mean.assign(mean.astype(np.float32))
        layer.moving_variance.assign(variance.astype(np.float32))
    return len(layers)


def random_images(app: Application, count: int, rng: Any) -> Any:
    """``count`` observations (count, H, W, 3), float32 values held in float64."""
    import numpy as np
    shape = (count, app.side, app.side, 3)
    if app.pixels:
        return rng.integers(0, 256, shape).astype(np.float64)
    return rng.uniform(-1.0, 1.0, shape).astype(np.float32).astype(np.float64)


def build_row(app: Application, api: str, outdir: str, rng: Any) -> dict[str, Any]:
    """Save one application, its input, float64 output and raw Grad-CAM map; return its manifest entry."""
    import numpy as np
    tf, keras, tf_keras, helpers = _tensorflow()
    module = keras if api == "keras3" else tf_keras
    name = row_name(app.name, api)
    started = time.perf_counter()
    constructor = getattr(module.applications, app.name, None)
    if constructor is None:
        return {"api": api, "skipped": f"{api}.applications has no {app.name}"}
    model = constructor(weights=None, input_shape=(app.side, app.side, 3))
    helpers.randomize_weights(model, rng)
    calibration = random_images(app, CALIBRATION_BATCH, rng)
    batch_norms = calibrate_batch_norm(model, tf.constant(calibration, dtype=tf.float32), rng)
    path = os.path.join(outdir, f"{name}.h5")
    model.save(path)
    x = random_images(app, 1, rng)[0]
    twin = helpers.float64_twin(model, exact_gelu=True)
    output = helpers.float64_forward(twin, x, xla=False)
    float32_output = np.asarray(model(tf.constant(x[None], dtype=tf.float32), training=False))[0]
    label = int(np.argmax(output))
    feature_layer = last_spatial_layer(model)
    cam = helpers.float64_gradcam(twin, api, x, feature_layer, label, xla=False)
    for suffix, array in (("input", x), ("output", output), ("gradcam", cam)):
        np.save(os.path.join(outdir, f"{name}_{suffix}.npy"), array)
    return {
        "api": api, "application": app.name, "file": f"{name}.h5", "input": f"{name}_input.npy",
        "output": f"{name}_output.npy", "gradcam": f"{name}_gradcam.npy",
        "input_shape": [app.side, app.side, 3], "input_values": "integers 0..255" if app.pixels else
        "U(-1, 1) rounded to float32",
        "feature_layer": feature_layer, "feature_map_shape": list(cam.shape),
        "label": label, "top_probability": float(output[label]), "score": "softmax",
        "map_positive_cells": int(np.count_nonzero(cam > 0.0)), "batch_norm_layers": batch_norms,
        "parameters": int(model.count_params()), "file_bytes": os.path.getsize(path),
        "float32_run_max_abs_difference": float(np.abs(float32_output - output).max()),
        "keras_classes": sorted({type(layer).__name__ for layer in model.layers}),
        "build_seconds": round(time.perf_counter() - started, 1),
    }


def build(outdir: str, only: list[str] | None, apis: list[str]) -> None:
    import numpy as np
    tf, keras, tf_keras, helpers = _tensorflow()
    os.makedirs(outdir, exist_ok=True)
    manifest_path = os.path.join(outdir, "manifest.json")
    manifest: dict[str, Any] = {"rows": {}}
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
    for app in APPLICATIONS:
        if only and app.name not in only:
            continue
        for api in apis:
            name = row_name(app.name, api)
            seed = SEED + 100 * APPLICATIONS.index(app) + APIS.index(api)    # each row alone is reproducible
            keras.utils.set_random_seed(seed)
            tf_keras.utils.set_random_seed(seed)
            print(f"building {name} ...", flush=True)
            try:
                entry = build_row(app, api, outdir, np.random.default_rng(seed))
            except Exception as error:   # a measurement: record what TensorFlow could not do, go on
                entry = {"api": api, "application": app.name, "error": f"{type(error).__name__}: {error}",
                         "traceback": traceback.format_exc()[-4000:]}
            entry["seed"] = seed
            manifest["rows"][name] = entry
            print(f"  {json.dumps({k: v for k, v in entry.items() if k != 'keras_classes'})[:400]}", flush=True)
            manifest.update({
                "command": " ".join(shlex.quote(a) for a in ["python", os.path.relpath(__file__, ROOT),
                                                             *sys.argv[1:]]),
                "seed": SEED,
                "versions": {"python": platform.python_version(), "tensorflow": tf.__version__,
                             "keras": keras.__version__, "tf_keras": tf_keras.__version__,
                             "numpy": np.__version__},
                "grad_cam": "raw map at feature_layer (the last layer with spatial size > 1): alpha_k = mean "
                            "over positions of dy/dA_k, map = relu(sum_k alpha_k A_k), y = softmax output "
                            "of the top class of the float64 forward; TensorFlow float64 twin, not compiled, "
                            "exact GELU by tf.math.erf",
            })
            with open(manifest_path, "w") as f:
                json.dump(manifest, f, indent=2, sort_keys=True)
                f.write("\n")


# --- stage 2: refcam -------------------------------------------------------------------------------
def error_summary(error: BaseException, outdir: str) -> str:
    """The error's class and first line; for a list of refused layers ("...: " then one line per layer,
    ``'name' (Class): reason``), the distinct reasons with their counts instead of the names."""
    text = str(error).replace(outdir.rstrip(os.sep) + os.sep, "").strip().splitlines() or [""]
    head, rest = text[0], [line.strip() for line in text[1:] if line.strip()]
    if head.endswith(":") and rest:
        reasons: dict[str, int] = {}
        for line in rest:
            named = re.match(r"^'[^']*' (\(.*)$", line)         # drop the layer name, keep (Class): reason
            if named:
                reasons[named.group(1)] = reasons.get(named.group(1), 0) + 1
        head += " " + "; ".join(f"{count} x {reason}" for reason, count in reasons.items())
    return f"{type(error).__name__}: {head if len(head) <= 600 else head[:600] + ' ...'}"


def compare_row(outdir: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Load, forward and raw Grad-CAM of one row with refcam, against the TensorFlow files."""
    import numpy as np
    import refcam
    from refcam.cam.selection import default_feature_layer, default_reduction_layer
    record: dict[str, Any] = {}
    started = time.perf_counter()
    try:
        net = refcam.load(os.path.join(outdir, entry["file"]))
    except Exception as error:
        record.update(loads=False, error=error_summary(error, outdir), message=str(error), stage="load")
        return record
    record.update(loads=True, load_s=time.perf_counter() - started, layers=len(net.layers))
    x = np.load(os.path.join(outdir, entry["input"]))
    try:
        started = time.perf_counter()
        scores = net.predict(x)
        record["forward_s"] = time.perf_counter() - started
        record["forward_error"] = relative_error(scores.ravel(), np.load(os.path.join(outdir, entry["output"])))
        started = time.perf_counter()
        result = refcam.gradcam(net, x, entry["label"], feature_layer=entry["feature_layer"], upsampling="none")
        record["gradcam_s"] = time.perf_counter() - started
        record["map_error"] = relative_error(result.map, np.load(os.path.join(outdir, entry["gradcam"])))
        record["reduction_layer"] = result.reduction_layer
        shapes = net.infer_shapes((x.shape[2], *x.shape[:2]))
        record["default_feature_layer"] = default_feature_layer(net, shapes, default_reduction_layer(net))
    except Exception as error:
        record.update(error=error_summary(error, outdir), message=str(error), stage="forward" if "forward_error" not in record else "gradcam")
    return record


def compare(outdir: str, only: list[str] | None, table_path: str | None) -> None:
    import numpy as np
    import refcam
    with open(os.path.join(outdir, "manifest.json")) as f:
        manifest = json.load(f)
    order = [row_name(app.name, api) for app in APPLICATIONS for api in APIS]
    rows = {name: manifest["rows"][name] for name in order
            if name in manifest["rows"] and (not only or manifest["rows"][name].get("application") in only)}
    results = {}
    for name, entry in rows.items():
        if "file" not in entry:
            results[name] = {"loads": False, "error": "not built: " + entry.get("error", entry.get("skipped", "")),
                             "stage": "build"}
        else:
            print(f"comparing {name} ...", file=sys.stderr, flush=True)
            results[name] = compare_row(outdir, entry)
            print(f"  {results[name]}", file=sys.stderr, flush=True)
    lines = ["| model | Keras API | input | feature layer (map, cells > 0) | loads | forward rel. error "
             "| raw map rel. error | refcam's default feature layer | load / forward / Grad-CAM (s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, entry in rows.items():
        record = results[name]
        app, api = entry["application"], entry["api"]
        side = "x".join(str(n) for n in entry.get("input_shape", [])[:2])
        feature = (f"`{entry['feature_layer']}` ({'x'.join(map(str, entry['feature_map_shape']))}, "
                   f"{entry['map_positive_cells']})") if "feature_layer" in entry else ""
        if not record["loads"]:
            lines.append(f"| {app} | {api} | {side} | {feature} | no: {record['error']} | | | | |")
            continue
        forward = f"{record['forward_error']:.1e}" if "forward_error" in record else f"{record['stage']} failed"
        cam = f"{record['map_error']:.1e}" if "map_error" in record else ""
        if "error" in record:
            cam = f"{record['stage']} failed: {record['error']}"
        times = " / ".join(f"{record[k]:.1f}" for k in ("load_s", "forward_s", "gradcam_s") if k in record)
        default = record.get("default_feature_layer", "")
        default = "the same" if default == entry["feature_layer"] else f"`{default}`" if default else ""
        lines.append(f"| {app} | {api} | {side} | {feature} | yes | {forward} | {cam} | {default} | {times} |")
    table = "\n".join(lines)
    print(table)
    passed = sum(1 for r in results.values() if r.get("forward_error", 1.0) <= IMPORT_BOUND
                 and r.get("map_error", 1.0) <= IMPORT_BOUND)
    print(f"\n{passed} of {len(results)} rows within {IMPORT_BOUND:g} (forward and raw map)")
    record = {"refcam": refcam.__version__, "numpy": np.__version__, "python": platform.python_version(),
              "tensorflow_side": manifest.get("versions"), "results": results, "table": table}
    with open(os.path.join(outdir, "compare.json"), "w") as f:
        json.dump(record, f, indent=2, sort_keys=True)
        f.write("\n")
    if table_path:
        with open(table_path, "w") as f:
            f.write(table + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("stage", choices=("build", "compare"))
    parser.add_argument("outdir", help="folder for the .h5 files and the TensorFlow results (outside the repo)")
    parser.add_argument("--only", nargs="+", metavar="APP", help="these applications only, e.g. ResNet50 VGG16")
    parser.add_argument("--apis", nargs="+", choices=APIS, default=list(APIS), help="build: which Keras APIs")
    parser.add_argument("--table", help="compare: also write the markdown table to this file")
    args = parser.parse_args()
    if args.stage == "build":
        build(args.outdir, args.only, args.apis)
    else:
        compare(args.outdir, args.only, args.table)


if __name__ == "__main__":
    main()
