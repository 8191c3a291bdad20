"""Which class a Grad-CAM map is of: class-name files, label texts, and the predicted top-k.

Used by ``refcam gradcam`` and ``refcam golden`` (docs/cli.md), usable from
Python. A label text is a class name, a **0-based** class index, ``top1`` or
``top5``. The class score the prediction ranks by is MATLAB's (spec G14)::

    score_c = sum over the reduction layer's positions of Y[c]

for the reduction layer's output ``Y`` of one observation (``Y[c]`` itself for
an ordinary classifier, softmax or logits alike), so the predicted class is
the class whose Grad-CAM score is largest, as MATLAB's examples take
``classify(net, X)``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .errors import InputError, LabelError
from .preprocess import close_match_hint

TOP_K = {"top1": 1, "top5": 5}


def read_class_names(path: str | os.PathLike) -> list[str]:
    """Class names from a file: a JSON list of strings, or one name per line (blank lines skipped).

    Names are stripped of surrounding white space; they must be distinct and non-empty.

    >>> read_class_names("imagenet_classes.txt")[:2]      # doctest: +SKIP
    ['tench', 'goldfish']
    """
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if text.lstrip().startswith("["):
        try:
            names = json.loads(text)
        except ValueError as err:
            raise InputError(f"{os.fspath(path)}: starts with '[' but is not a JSON list ({err}).") from err
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise InputError(f"{os.fspath(path)}: a JSON class file is a list of strings.")
    else:
        names = [line for line in text.splitlines() if line.strip()]
    names = [name.strip() for name in names]
    if not names or not all(names) or len(set(names)) != len(names):
        raise InputError(f"{os.fspath(path)}: {len(names)} class names, {len(set(names))} distinct; give one "
                         "distinct, non-empty name per output channel (one per line, or a JSON list).")
    return names


def parse_label(text: str, classes: Sequence[str] | None) -> int:
    """A label text as a 0-based class index: a class name when it is one, else an integer.

    >>> parse_label("tabby", ["toy poodle", "tabby"]), parse_label("0", None)
    (1, 0)
    """
    if classes is not None and text in classes:
        return list(classes).index(text)
    try:
        index = int(text)
    except ValueError:
        if classes is None:
            raise LabelError(f"--label {text!r}: this network has no class names; give a 0-based index of the "
                             "reduction layer's output channels, top1 or top5, or name the classes with "
                             "--classes FILE.") from None
        shown = ", ".join(repr(c) for c in classes[:20]) + (", ..." if len(classes) > 20 else "")
        raise LabelError(f"--label {text!r} is not a class of this network; give a class name, a 0-based "
                         f"index, top1 or top5.{close_match_hint(text, classes)} Classes: {shown}.") from None
    if classes is not None and not 0 <= index < len(classes):
        raise LabelError(f"--label {index} is out of range: the network has {len(classes)} classes, 0-based "
                         f"indices 0..{len(classes) - 1} (MATLAB's are 1-based).")
    return index


def parse_labels(texts: Sequence[str] | None, classes: Sequence[str] | None) -> list[int] | str | None:
    """``--label`` values: None, ``"top1"``/``"top5"`` (alone), or a list of 0-based indices."""
    if texts is None:
        return None
    modes = [text for text in texts if text in TOP_K]
    if modes:
        if len(texts) > 1:
            raise LabelError(f"--label {' '.join(texts)}: {modes[0]} stands alone; give it, or class names "
                             "and indices.")
        return modes[0]
    return [parse_label(text, classes) for text in texts]


@dataclass(frozen=True)
class RankedClass:
    """One class of the prediction: its 0-based index and its score (G14 above)."""

    index: int
    score: float


def class_scores(reduced: Any) -> np.ndarray:
    """G14 scores ``(C,)`` of one observation from the reduction output ``(1, C, *S)`` (internal layout)."""
    values = np.asarray(reduced, dtype=np.float64)
    if values.ndim < 2 or values.shape[0] != 1:
        raise LabelError(f"a prediction needs one observation; the reduction output has shape {values.shape} "
                         "(a batch): give --label.")
    return values.reshape(1, values.shape[1], -1)[0].sum(axis=1)


def top_classes(reduced: Any, k: int) -> list[RankedClass]:
    """The ``k`` classes with the largest scores, best first (ties: the lower index first).

    >>> [c.index for c in top_classes(np.array([[0.1, 0.7, 0.2]]), 2)]
    [1, 2]
    """
    scores = class_scores(reduced)
    order = np.argsort(-scores, kind="stable")[:k]
    return [RankedClass(int(c), float(scores[c])) for c in order]


def class_text(index: int, classes: Sequence[str] | None, score: float) -> str:
    """``"'tabby' (index 1, score 0.3332)"`` with class names, ``"3 (score 0.87)"`` without.

    >>> class_text(1, ["toy poodle", "tabby"], 0.33324852), class_text(3, None, 0.87)
    ("'tabby' (index 1, score 0.3332)", '3 (score 0.87)')
    """
    if classes is not None:
        return f"{classes[index]!r} (index {index}, score {score:.4g})"
    return f"{index} (score {score:.4g})"
