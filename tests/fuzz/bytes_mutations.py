"""Mutations that know nothing of the format: truncation and random byte flips.

Offsets are drawn when the corpus is generated, so each case's description
names them: truncation to the empty file, to 64 bytes (inside the HDF5
superblock or the first protobuf fields), to half, to all but the last byte
and to two random lengths; 1, 2, 8, 32 and 128 random bytes XORed.
"""
from __future__ import annotations

import random
from functools import partial
from pathlib import Path

from .case import Mutation, Source

FIXED_TRUNCATIONS = (0, 64)
RANDOM_TRUNCATIONS = 2
FLIP_COUNTS = (1, 2, 8, 32, 128)


def mutations(source: Source, rng: random.Random) -> list[Mutation]:
    """Truncations and byte flips of ``source``'s file."""
    size = source.path.stat().st_size
    lengths = sorted({n for n in FIXED_TRUNCATIONS if n < size} | {size // 2, size - 1}
                     | {rng.randrange(1, size) for _ in range(RANDOM_TRUNCATIONS)})
    found = [Mutation("truncate", f"the first {n} of {size} bytes", partial(_truncate, n)) for n in lengths]
    for count in FLIP_COUNTS:
        offsets = sorted(rng.sample(range(size), min(count, size)))
        masks = [rng.randrange(1, 256) for _ in offsets]
        shown = ", ".join(str(offset) for offset in offsets[:4]) + (", ..." if len(offsets) > 4 else "")
        found.append(Mutation("flip", f"{len(offsets)} byte(s) XORed at offsets {shown}",
                              partial(_flip, tuple(zip(offsets, masks)))))
    return found


def _truncate(length: int, base: Path, target: Path) -> None:
    target.write_bytes(base.read_bytes()[:length])


def _flip(flips: tuple[tuple[int, int], ...], base: Path, target: Path) -> None:
    data = bytearray(base.read_bytes())
    for offset, mask in flips:
        data[offset] ^= mask
    target.write_bytes(bytes(data))
