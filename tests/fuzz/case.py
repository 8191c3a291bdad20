"""What a fuzz case is: a source file, a mutation of it, and a stable id.

A case id is ``kind/fixture/mutation/index``, e.g.
``onnx/cnn_dynamo/external-initializer/2``: the kind of reader (``refcam``,
``golden``, ``keras``, ``onnx``), the fixture's stem, the mutation's name and
its index among the cases of that fixture and mutation. Random choices
(truncation offsets, flipped bytes) are made when the corpus is generated,
from a generator seeded with the corpus seed and the fixture, and are written
into the mutation's description; ``python -m tests.fuzz --seed S --case ID``
rebuilds exactly the file the corpus run used.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

Make = Callable[[Path, Path], None]
"""Writes a case file: ``make(base, target)`` reads the source file ``base`` and writes ``target``."""

KINDS = ("refcam", "golden", "keras", "onnx")


@dataclass(frozen=True)
class Source:
    """A file refcam reads correctly (or refuses by design, for the hostile fixtures): a case's starting point."""

    kind: str           # one of KINDS
    name: str           # the fixture's stem
    path: Path          # the file (for goldens, one assembled from the fixture golden; see golden_mutations)

    @property
    def suffix(self) -> str:
        """The file name ending of the cases made from it."""
        return ".onnx" if self.kind == "onnx" else ".h5"


@dataclass(frozen=True)
class Mutation:
    """One way to spoil a source file; ``description`` says what was changed (shown for failures)."""

    name: str
    description: str
    make: Make


@dataclass(frozen=True)
class Case:
    """One hostile file: ``mutation`` applied to ``source``."""

    id: str
    source: Source
    mutation: Mutation

    @property
    def reader(self) -> str:
        """``golden`` (read with ``refcam.golden.read``) or ``network`` (``refcam.load``)."""
        return "golden" if self.source.kind == "golden" else "network"

    def write(self, folder: Path) -> Path:
        """Write the case file into ``folder`` (as ``model.h5`` or ``model.onnx``) and return its path.

        The bytes depend only on the case and the folder (absolute links name
        the canary above ``folder``).
        """
        target = folder / f"model{self.source.suffix}"
        target.unlink(missing_ok=True)
        self.mutation.make(self.source.path, target)
        return target
