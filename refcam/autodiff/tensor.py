"""The Tensor and the recorded graph of operations.

A :class:`Tensor` wraps one array (NumPy or CuPy). When an op is applied to
tensors of which at least one *requires grad*, the op's result remembers a
:class:`Node`: the op's name, its input tensors and its vector-Jacobian product
(VJP). Results of ops on tensors that do not require grad record nothing, so
the same layer code runs an untaped prefix and a taped head.

There is no global tape: the graph is the chain of ``Node`` objects reachable
from a result; :func:`graph_nodes` lists it (for audits and tests) and
:mod:`refcam.autodiff.sweep` walks it backwards.

A VJP is a function ``vjp(grad_out, needs) -> tuple`` that returns, for every
input ``i`` with ``needs[i]`` true, the array ``J_i^T grad_out`` (shape of
input ``i``), and ``None`` for the others, so that gradients nobody asked for
(e.g. of weights during Grad-CAM) are never computed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..backend import get_xp

VJP = Callable[[Any, tuple[bool, ...]], tuple[Any, ...]]


@dataclass(frozen=True, eq=False)
class Node:
    """One recorded operation: ``output = op(*inputs)``, with its VJP."""

    op: str
    inputs: tuple["Tensor", ...]
    vjp: VJP

    def __repr__(self) -> str:
        return f"Node(op={self.op!r}, inputs={len(self.inputs)})"


class Tensor:
    """An array plus, when it depends on a tensor that requires grad, the op that made it.

    Parameters
    ----------
    data : array
        A NumPy or CuPy array (Python scalars are converted with NumPy).
    requires_grad : bool
        Mark a *leaf* whose gradient is wanted.
    name : str, optional
        A label shown in ``repr`` and in graph listings.

    >>> import numpy as np
    >>> x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    >>> y = (x * x).sum()
    >>> y.backward(); x.grad
    array([2., 4.])
    """

    __array_priority__ = 1000  # ndarray (op) Tensor dispatches to Tensor's reflected operator

    def __init__(self, data: Any, requires_grad: bool = False, *, node: Node | None = None,
                 name: str | None = None) -> None:
        self.data = data if hasattr(data, "shape") else get_xp().asarray(data)
        self.node = node
        self.requires_grad = bool(requires_grad) or node is not None
        self.grad: Any = None
        self.name = name

    # -- array facts --------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self) -> Any:
        return self.data.dtype

    @property
    def size(self) -> int:
        return int(self.data.size)

    @property
    def xp(self) -> Any:
        """The array module (numpy or cupy) of this tensor's data."""
        return get_xp(self.data)

    @property
    def is_leaf(self) -> bool:
        return self.node is None

    def detach(self) -> "Tensor":
        """The same data, cut from the graph."""
        return Tensor(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        made_by = f", op={self.node.op!r}" if self.node else ""
        label = f", name={self.name!r}" if self.name else ""
        return (f"Tensor(shape={self.shape}, dtype={self.dtype}, "
                f"requires_grad={self.requires_grad}{made_by}{label})")

    # -- reverse sweep ------------------------------------------------------
    def backward(self, grad: Any = None) -> None:
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires grad.

        ``grad`` defaults to ones (so a scalar gives its gradient); see
        :func:`refcam.autodiff.grad` for the functional form that mutates nothing.
        """
        from .sweep import backward
        backward(self, grad)

    # -- operators: the maths and VJPs live in functions.py -----------------
    def __add__(self, other: Any) -> "Tensor":
        return F.add(self, other)

    def __radd__(self, other: Any) -> "Tensor":
        return F.add(other, self)

    def __sub__(self, other: Any) -> "Tensor":
        return F.subtract(self, other)

    def __rsub__(self, other: Any) -> "Tensor":
        return F.subtract(other, self)

    def __mul__(self, other: Any) -> "Tensor":
        return F.multiply(self, other)

    def __rmul__(self, other: Any) -> "Tensor":
        return F.multiply(other, self)

    def __truediv__(self, other: Any) -> "Tensor":
        return F.divide(self, other)

    def __rtruediv__(self, other: Any) -> "Tensor":
        return F.divide(other, self)

    def __neg__(self) -> "Tensor":
        return F.negative(self)

    def __pow__(self, exponent: float) -> "Tensor":
        return F.power(self, exponent)

    def __matmul__(self, other: Any) -> "Tensor":
        return F.matmul(self, other)

    def __rmatmul__(self, other: Any) -> "Tensor":
        return F.matmul(other, self)

    def __getitem__(self, index: Any) -> "Tensor":
        return F.getitem(self, index)

    def sum(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> "Tensor":
        """Sum over ``axis`` (all axes by default)."""
        return F.sum(self, axis, keepdims)

    def mean(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> "Tensor":
        """Mean over ``axis`` (all axes by default)."""
        return F.mean(self, axis, keepdims)

    def max(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> "Tensor":
        """Maximum over ``axis``; at ties the gradient is shared equally by the maxima."""
        return F.max(self, axis, keepdims)

    def exp(self) -> "Tensor":
        return F.exp(self)

    def log(self) -> "Tensor":
        return F.log(self)

    def reshape(self, *shape: Any) -> "Tensor":
        """Row-major (C order) reshape, like ``ndarray.reshape``."""
        return F.reshape(self, shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape)

    def transpose(self, *axes: Any) -> "Tensor":
        """Permute axes (reverse them when none are given), like ``ndarray.transpose``."""
        return F.transpose(self, axes[0] if len(axes) == 1 and not isinstance(axes[0], int) else (axes or None))

    @property
    def T(self) -> "Tensor":
        """Reverse the axes (``transpose()``)."""
        return F.transpose(self, None)


def as_tensor(value: Any, like: Tensor | None = None) -> Tensor:
    """Wrap an array or scalar as a constant Tensor (Tensors pass through).

    A Python or NumPy scalar (or list) takes the array module of ``like`` and, when
    ``like`` is floating point, its dtype, so that ``float32_tensor * 2.0`` stays
    float32 (an integer ``like`` never truncates ``0.5`` to ``0``: NumPy's
    promotion applies).
    """
    if isinstance(value, Tensor):
        return value
    if like is not None and (not hasattr(value, "shape") or getattr(value, "ndim", 1) == 0):
        dtype = like.dtype if like.dtype.kind == "f" else None
        return Tensor(like.xp.asarray(value, dtype=dtype))
    return Tensor(value)


def record(op: str, data: Any, inputs: Sequence[Tensor], vjp: VJP) -> Tensor:
    """Return ``Tensor(data)``, remembering ``Node(op, inputs, vjp)`` when any input requires grad.

    This is the single place where the graph grows: every differentiable op in
    refcam ends with ``return record(...)``.
    """
    inputs = tuple(inputs)
    if any(t.requires_grad for t in inputs):
        return Tensor(data, node=Node(op, inputs, vjp))
    return Tensor(data)


def graph_nodes(output: Tensor) -> list[Node]:
    """All nodes that ``output`` depends on, inputs before the ops that use them.

    This is the tape of ``output``: ``[n.op for n in graph_nodes(y)]`` lists every
    recorded operation, so a test can prove what was (and was not) differentiated.
    """
    order: list[Node] = []
    seen: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(output, False)]
    while stack:
        tensor, expanded = stack.pop()
        node = tensor.node
        if node is None:
            continue
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((tensor, True))
        stack.extend((t, False) for t in node.inputs if t.node is not None and id(t.node) not in seen)
    return order


from . import functions as F  # noqa: E402  (functions.py needs Tensor and record defined first)
