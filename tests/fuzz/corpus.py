"""The fuzz corpus: every hostile case made from the fixtures, with a stable id.

Sources (:func:`sources`): ``fixtures/*.h5`` (refcam networks, kind
``refcam``), a ``refcam-golden`` file assembled from each
``fixtures/*.golden.h5`` (kind ``golden``, see
:mod:`tests.fuzz.golden_mutations`), ``fixtures/keras/*.h5`` (``keras``) and
``fixtures/onnx/*.onnx`` (``onnx``), the hostile fixtures included.

Each source gives its unmodified file (mutation ``original``), the byte-level
mutations of :mod:`tests.fuzz.bytes_mutations`, and the structured mutations
of its format. Cases are numbered within (source, mutation), so an id such as
``refcam/e2_digits_regression/property-junk/7`` names the same file for the
same seed. The corpus is generated in a fixed order; only the byte-level
offsets depend on the seed.

>>> cases = generate(seed=0, work=Path(tmp))          # doctest: +SKIP
>>> cases[0].id                                        # doctest: +SKIP
'refcam/e1_squeezenet_mini/original/0'
"""
from __future__ import annotations

import random
import shutil
from collections import Counter
from pathlib import Path

from . import bytes_mutations, golden_mutations, keras_mutations, onnx_mutations, refcam_mutations
from .case import Case, Mutation, Source

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def _copy(base: Path, target: Path) -> None:
    shutil.copyfile(base, target)


ORIGINAL = Mutation("original", "the fixture unchanged", _copy)


def sources(work: Path) -> list[Source]:
    """The fixtures by kind, in name order; the goldens are assembled into ``work``."""
    found = [Source("refcam", path.stem, path) for path in sorted(FIXTURES.glob("*.h5"))
             if not path.name.endswith(".golden.h5")]
    for fixture in sorted(FIXTURES.glob("*.golden.h5")):
        name = fixture.name.removesuffix(".golden.h5")
        golden = work / f"{name}.golden.h5"
        golden_mutations.build_golden(fixture, golden)
        found.append(Source("golden", name, golden))
    found += [Source("keras", path.stem, path) for path in sorted((FIXTURES / "keras").glob("*.h5"))]
    found += [Source("onnx", path.stem, path) for path in sorted((FIXTURES / "onnx").glob("*.onnx"))]
    return found


def generate(seed: int, work: Path) -> list[Case]:
    """Every case of the corpus for ``seed``; ``work`` is a folder for the assembled goldens."""
    seen_properties: set[tuple[str, str]] = set()
    seen_keras_keys: set[tuple[str, str]] = set()
    networks_with_structure: set[str] = set()
    cases: list[Case] = []
    for source in sources(work):
        found = [ORIGINAL] + bytes_mutations.mutations(source, random.Random(f"{seed}/{source.kind}/{source.name}"))
        if source.kind == "refcam":
            found += refcam_mutations.mutations(source, seen_properties)
        elif source.kind == "golden":
            network = source.name.split("__")[0]
            found += golden_mutations.mutations(source, structure=network not in networks_with_structure)
            networks_with_structure.add(network)
        elif source.kind == "keras":
            found += keras_mutations.mutations(source, seen_keras_keys)
        elif source.kind == "onnx":
            found += onnx_mutations.mutations(source)
        cases += _numbered(source, found)
    return cases


def _numbered(source: Source, found: list[Mutation]) -> list[Case]:
    counts: Counter[str] = Counter()
    cases = []
    for mutation in found:
        cases.append(Case(f"{source.kind}/{source.name}/{mutation.name}/{counts[mutation.name]}", source, mutation))
        counts[mutation.name] += 1
    return cases


def sample(cases: list[Case], count: int, seed: int) -> list[Case]:
    """``count`` cases drawn without replacement with ``seed``, in corpus order (all of them when fewer)."""
    if count >= len(cases):
        return list(cases)
    chosen = set(random.Random(seed).sample(range(len(cases)), count))
    return [case for index, case in enumerate(cases) if index in chosen]


def find(cases: list[Case], case_id: str) -> Case:
    """The case with ``case_id``; KeyError naming the kinds and a near id when there is none."""
    for case in cases:
        if case.id == case_id:
            return case
    prefix = case_id.rsplit("/", 1)[0]
    near = [case.id for case in cases if case.id.startswith(prefix)][:5]
    raise KeyError(f"no case {case_id!r} in the corpus; ids are kind/fixture/mutation/index, e.g. {near or cases[0].id}")
