"""PyTorch module paths for the nodes of a TorchScript ONNX export, and the tensors modules output.

Pure functions of the ONNX graph's node names and the model's module tree (no
torch, no onnx needed); :mod:`refcam.interop.torch` applies them.

What the exporter writes (``torch.onnx.export(..., dynamo=False)``, torch 2.13)
------------------------------------------------------------------------------
A node computed inside module calls is named by the scopes of those calls,
outermost first, then its op type: ``/layer1/layer1.0/conv1/Conv``. Each scope
component is the called module's qualified name (``model.named_modules()``)
from its last non-numeric atom on (``layer1.0``, ``downsample.0``, ``conv1``;
a top-level ``nn.Sequential``'s children are ``0``, ``1``, ...), with ``_N``
appended for a later call in the same scope (``relu_1``: the second call of
``relu``); the op type gets ``_N`` for a repeat in one scope (``Add_1``). A node
of a functional op (``out + identity``, ``torch.flatten``, ``F.relu``) sits in
the scope of the module whose ``forward`` made it (``/layer1/layer1.0/Add``,
``/Flatten`` at the top).

Rules (:func:`plan_names`)
--------------------------
* **Scope path.** Components are resolved one by one against the module tree:
  the component (or, when no module has it, the component without a trailing
  ``_N``, as call ``N``) is the unqualified name of a module, preferably a child
  of the enclosing module, else a descendant, else any. A child's path is the
  enclosing path ``+ "." +`` its attribute name, so ``/layer2/layer2.0/
  downsample/downsample.0`` is ``layer2.0.downsample.0``; a module called from
  outside its parent's ``forward`` gets its qualified name; call ``N`` appends
  ``_N`` (``layer1.0.relu_1``). An unresolvable component is appended as written.
  A path already given to another scope (a module called again from another
  module's ``forward``, which the exporter does not number) takes the next free
  call number (``seq.1.0_1``).
* **Layer names.** Only nodes computed from the graph input count (constants
  are folded by the importer). The one such node of a **leaf** module's call
  (a module without children) takes the call's path: ``layer1.0.conv1``,
  ``layer1.0.relu``, ``layer1.0.relu_1``, ``fc``. Every other node takes its
  scope path ``+ "." +`` its op type as the exporter wrote it: a functional op
  in a container (``layer1.0.Add``, ``Flatten`` at the top level,
  ``features.Relu_1``), or one of several nodes of a leaf module
  (``act.Sigmoid``, ``act.Mul`` for ``nn.SiLU``). Op types are CamelCase and
  attribute names by convention are not, so the two kinds do not collide. A
  name already taken (or the input's name) gets ``_2``, ``_3``, ... (the ONNX
  importer's rule for repeated node names); a node whose name is not of the
  exporter's form keeps it.
* **Module outputs.** For every module call that resolved to a module called
  exactly once (``calls``), its output tensor is the output of the last node
  (graph order) inside its scope (the scope string itself or below it) whose
  output is read by a node outside it or is a graph output. A module called
  twice or more has none (its scopes are not reliable: the exporter files part
  of a second call under the first call's scope), nor has one that exported no
  node (``nn.Dropout`` and ``nn.Identity`` in ``eval()``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

CALL_SUFFIX = re.compile(r"(.+)_(\d+)")


@dataclass(frozen=True)
class GraphNode:
    """What naming needs of one ONNX node: its name, op type and tensor names ('' = omitted)."""

    name: str
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class Scope:
    """One module call as the exporter wrote it: ``raw`` ``/layer1/layer1.0``, ``path`` ``layer1.0``,
    ``module`` its qualified name (None when no module matches) and ``call`` (0 = first)."""

    raw: str
    path: str
    module: str | None
    call: int = 0


@dataclass(frozen=True)
class NamePlan:
    """``names``: new name of every node; ``module_outputs``: ``{module path: tensor}`` (module docstring)."""

    names: dict[str, str]
    module_outputs: dict[str, str]


def unqualified_name(qualified: str) -> str:
    """A module's scope component: its qualified name from the last non-numeric atom on.

    >>> unqualified_name("layer2.0.downsample.0"), unqualified_name("layer1.0"), unqualified_name("3")
    ('downsample.0', 'layer1.0', '3')
    """
    atoms = qualified.split(".")
    for index in range(len(atoms) - 1, -1, -1):
        if not atoms[index].isdigit():
            return ".".join(atoms[index:])
    return qualified


def split_node_name(name: str, op_type: str) -> tuple[str, str] | None:
    """``(raw scope, op tail)`` of an exporter-named node, None for another name.

    >>> split_node_name("/layer1/layer1.0/Add_1", "Add")
    ('/layer1/layer1.0', 'Add_1')
    >>> split_node_name("/Flatten", "Flatten"), split_node_name("Identity_3", "Identity")
    (('', 'Flatten'), None)
    """
    if not name.startswith("/"):
        return None
    raw, _, tail = name.rpartition("/")
    if tail != op_type and not re.fullmatch(re.escape(op_type) + r"_\d+", tail):
        return None
    if raw and "" in raw[1:].split("/"):
        return None
    return raw, tail


class ScopeResolver:
    """Resolves raw scopes (``/layer1/layer1.0``) against the module tree ``{qualified name: is leaf}``."""

    def __init__(self, modules: Mapping[str, bool]) -> None:
        self.leaf = dict(modules)
        self._by_component: dict[str, list[str]] = {}
        for qualified in self.leaf:
            if qualified:
                self._by_component.setdefault(unqualified_name(qualified), []).append(qualified)
        self._cache: dict[str, Scope] = {"": Scope("", "", "")}
        self._paths: set[str] = {""}

    def scope(self, raw: str) -> Scope:
        """The :class:`Scope` of ``raw`` (``""`` is the model itself)."""
        if raw not in self._cache:
            parent_raw, _, component = raw.rpartition("/")
            parent = self.scope(parent_raw)
            module, call = self._module(parent.module, component)
            if module is None:
                path = _join(parent.path, component)
            elif parent.module is not None and _parent_of(module) == parent.module:
                path = _join(parent.path, module.rpartition(".")[2]) + (f"_{call}" if call else "")
            else:
                path = module + (f"_{call}" if call else "")
            if path in self._paths:      # another call of the module, made from another scope
                path, call = _next_call(path, call, self._paths)
            self._paths.add(path)
            self._cache[raw] = Scope(raw, path, module, call)
        return self._cache[raw]

    def is_leaf(self, scope: Scope) -> bool:
        """True for the call of a module without children."""
        return scope.module is not None and self.leaf.get(scope.module, False)

    def _module(self, enclosing: str | None, component: str) -> tuple[str | None, int]:
        match = CALL_SUFFIX.fullmatch(component)
        readings = [(component, 0)] + ([(match.group(1), int(match.group(2)))] if match else [])
        for base, call in readings:
            candidates = self._by_component.get(base, [])
            if candidates:
                return _closest(candidates, enclosing), call
        return None, 0


def plan_names(nodes: Sequence[GraphNode], graph_input: str, graph_outputs: Iterable[str],
               modules: Mapping[str, bool], calls: Mapping[str, int]) -> NamePlan:
    """New node names and module output tensors (module docstring), for nodes in graph order.

    ``modules``: ``{qualified module name: has no children}`` with ``""`` for
    the model; ``calls``: how many times each module ran in one forward pass.
    """
    resolver = ScopeResolver(modules)
    computed = computed_tensors(nodes, graph_input)
    network = [node for node in nodes if any(t in computed for t in node.inputs)]
    parsed = {node.name: split_node_name(node.name, node.op_type) for node in network}
    scopes = {name: resolver.scope(split[0]) for name, split in parsed.items() if split is not None}
    per_path: dict[str, int] = {}
    for scope in scopes.values():
        per_path[scope.path] = per_path.get(scope.path, 0) + 1

    taken = {graph_input}
    names: dict[str, str] = {}
    for node in network:
        if node.name not in scopes:
            wanted = node.name
        else:
            scope, tail = scopes[node.name], parsed[node.name][1]
            own = bool(scope.path) and resolver.is_leaf(scope) and per_path[scope.path] == 1
            wanted = scope.path if own else _join(scope.path, tail)
        names[node.name] = _unique(wanted, taken)
    for node in nodes:
        if node.name not in names:
            names[node.name] = _unique(node.name, taken)
    return NamePlan(names, _module_outputs(network, scopes, resolver, set(graph_outputs), calls))


def computed_tensors(nodes: Sequence[GraphNode], graph_input: str) -> set[str]:
    """Names of the tensors computed from ``graph_input`` (itself included); nodes in graph order."""
    computed = {graph_input}
    for node in nodes:
        if any(t in computed for t in node.inputs):
            computed.update(t for t in node.outputs if t)
    return computed


def _module_outputs(network: Sequence[GraphNode], scopes: Mapping[str, Scope], resolver: ScopeResolver,
                    graph_outputs: set[str], calls: Mapping[str, int]) -> dict[str, str]:
    """``{module path: output tensor}`` for the calls of modules called exactly once."""
    raw_of = {name: scope.raw for name, scope in scopes.items()}
    readers: dict[str, list[str]] = {}
    for node in network:
        for tensor in node.inputs:
            readers.setdefault(tensor, []).append(node.name)
    outputs: dict[str, str] = {}
    for node in network:
        raw = raw_of.get(node.name)
        if raw is None:
            continue
        for tensor in node.outputs:
            if not tensor:
                continue
            outside = [raw_of.get(reader) for reader in readers.get(tensor, [])]
            for enclosing in _enclosing_scopes(raw):
                if tensor in graph_outputs or any(not _within(other, enclosing) for other in outside):
                    outputs[enclosing] = tensor      # later nodes overwrite: the last one wins
    result: dict[str, str] = {}
    for raw, tensor in outputs.items():
        scope = resolver.scope(raw)
        if scope.module and calls.get(scope.module, 0) == 1 and scope.call == 0:
            result.setdefault(scope.path, tensor)
    return result


def _enclosing_scopes(raw: str) -> list[str]:
    """``/a/b/c`` -> ``["/a", "/a/b", "/a/b/c"]`` (the model itself, ``""``, is left out)."""
    parts = raw.split("/")[1:]
    return ["/" + "/".join(parts[:end]) for end in range(1, len(parts) + 1)]


def _within(raw: str | None, enclosing: str) -> bool:
    return raw is not None and (raw == enclosing or raw.startswith(enclosing + "/"))


def _closest(candidates: list[str], enclosing: str | None) -> str:
    """A child of ``enclosing`` if there is one, else a descendant, else the first candidate."""
    if enclosing is not None:
        for wanted in (lambda q: _parent_of(q) == enclosing,
                       lambda q: not enclosing or q.startswith(enclosing + ".")):
            matches = [q for q in candidates if wanted(q)]
            if matches:
                return matches[0]
    return candidates[0]


def _next_call(path: str, call: int, taken: set[str]) -> tuple[str, int]:
    """``path`` of call ``call`` with the next free call number: ``seq.1.0`` -> ``seq.1.0_1``."""
    base = path[: -len(f"_{call}")] if call else path
    while True:
        call += 1
        if f"{base}_{call}" not in taken:
            return f"{base}_{call}", call


def _parent_of(qualified: str) -> str:
    return qualified.rpartition(".")[0]


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _unique(name: str, taken: set[str]) -> str:
    """``name``, or ``name_2``, ``name_3``, ... when taken; recorded as taken."""
    candidate, count = name, 1
    while candidate in taken:
        count += 1
        candidate = f"{name}_{count}"
    taken.add(candidate)
    return candidate
