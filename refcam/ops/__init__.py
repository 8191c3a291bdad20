"""Differentiable operations, one file per family, written once for N spatial dimensions.

Every op file holds, side by side:

* array kernels ``<op>_forward(...)`` and ``<op>_vjp_<input>(...)`` that take and
  return NumPy or CuPy arrays (``xp = get_xp(...)``), and
* a Tensor-level function ``<op>(x, ...)`` that calls the forward kernel and
  records a node whose VJP calls the VJP kernels, only for the inputs that
  require grad.

Layout: (B, C, *spatial) everywhere. Padding: ``(begins..., ends...)``.
"""
