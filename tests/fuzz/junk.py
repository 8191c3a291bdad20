"""Junk values for JSON documents (refcam topologies, golden options, Keras model configs).

:data:`RAW_1E309` stands for the bare JSON token ``1e309``: valid JSON that
``json.loads`` turns into ``inf`` without calling ``parse_constant``, so a
reader that only refuses ``NaN`` and ``Infinity`` lets it through.
:func:`dumps` writes it.
"""
from __future__ import annotations

import json
from typing import Any

RAW_1E309 = "\x00raw 1e309\x00"
JUNK = (None, "", 1.5, -1, 0, 2 ** 70, 10 ** 6, RAW_1E309, [[1, 2], [3]])


def junk_for(value: Any) -> list[Any]:
    """:data:`JUNK`, then lists of the wrong length: for a list of n values, n // 2 and n + 1 ones (3
    padding numbers for a 3-D convolution's 6); for a scalar, three ones.

    >>> junk_for([0, 0, 0, 0, 0, 0])[-2:]
    [[1, 1, 1], [1, 1, 1, 1, 1, 1, 1]]
    """
    lengths = (len(value) // 2, len(value) + 1) if isinstance(value, list) else (3,)
    return list(JUNK) + [[1] * n for n in lengths]


def dumps(document: Any) -> str:
    """``json.dumps`` with every :data:`RAW_1E309` written as the bare token ``1e309``."""
    return json.dumps(document).replace(json.dumps(RAW_1E309), "1e309")


def shown(value: Any) -> str:
    """A junk value as it appears in a case's description."""
    return "1e309" if value == RAW_1E309 else json.dumps(value)
