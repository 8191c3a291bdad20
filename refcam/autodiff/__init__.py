"""refcam's own reverse-mode automatic differentiation.

``Tensor`` wraps an array; ops record a ``Node`` only when an input requires
grad; ``grad`` / ``Tensor.backward`` sweep the recorded graph in reverse.
"""
from .functions import unbroadcast
from .sweep import backward, grad
from .tensor import Node, Tensor, as_tensor, graph_nodes, record

__all__ = ["Node", "Tensor", "as_tensor", "backward", "grad", "graph_nodes", "record", "unbroadcast"]
