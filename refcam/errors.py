"""Every error refcam raises on purpose.

All derive from :class:`RefcamError`, so ``except refcam.RefcamError`` catches
them all; each also derives from the built-in exception a Python user would
expect (``ValueError``, ``TypeError``, ``KeyError``, ...), so generic handlers
keep working. Messages say what was wrong and what to do about it.
"""
from __future__ import annotations


class RefcamError(Exception):
    """Base class of all refcam errors."""


# --- inputs and arrays -------------------------------------------------------
class InputError(RefcamError, ValueError):
    """An input array is unusable: wrong dtype, NaN/Inf, wrong shape or layout."""


class InputDtypeError(InputError, TypeError):
    """An input array has a dtype refcam does not accept (bool, complex, object)."""


class NonFiniteInputError(InputError):
    """An input array holds NaN or Inf."""


class FormatStringError(InputError):
    """A ``format=`` string (letters S, C, B, T) is malformed or does not fit the input."""


class ShapeError(RefcamError, ValueError):
    """Array shapes do not fit together (operands of an op, weights of a layer)."""


class BackendError(RefcamError, RuntimeError):
    """The array backend cannot do what was asked (CuPy missing, NumPy and CuPy mixed)."""


class OptionalDependencyError(RefcamError, ImportError):
    """A feature needs an optional package that is not installed."""


# --- networks ----------------------------------------------------------------
class NetworkError(RefcamError, ValueError):
    """A network is malformed."""


class DuplicateLayerNameError(NetworkError):
    """Two layers share a name."""


class UnknownInputError(NetworkError):
    """A layer names an input layer that does not exist."""


class CycleError(NetworkError):
    """The layer graph has a cycle."""


class InputLayerError(NetworkError):
    """The network has no input layer, or more than one."""


class OutputLayerError(NetworkError):
    """The network has no output, or more than one."""


class LayerShapeError(NetworkError, ShapeError):
    """A layer receives an input of a shape it cannot take."""


class LayerConfigError(NetworkError):
    """A layer's properties are invalid (negative stride, unknown padding mode, ...)."""


class ParameterError(LayerConfigError):
    """A layer's array parameter is missing or unusable; ``param`` names it."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


class MissingParameterError(ParameterError):
    """A parameter the layer needs was never given."""


class ParameterShapeError(ParameterError, ShapeError):
    """A parameter has a shape that does not fit the layer."""


class LayerNotFoundError(RefcamError, KeyError):
    """A layer name given by the user is not in the network."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


# --- files -------------------------------------------------------------------
class FileFormatError(RefcamError, ValueError):
    """A file is not a network refcam can read, or is corrupt or truncated."""


class SchemaVersionError(FileFormatError):
    """A refcam HDF5 file has a schema version this refcam cannot read."""


class MissingDatasetError(FileFormatError):
    """A dataset a layer needs is missing from the file."""


class WeightShapeError(FileFormatError, ShapeError):
    """A weight dataset has the wrong shape or dtype for its layer."""


class UnknownLayerTypeError(FileFormatError):
    """A file names a layer type refcam does not know."""


class UnsupportedOperationError(FileFormatError):
    """An imported model uses operations or layers refcam cannot represent."""


class UnsafeContentError(FileFormatError):
    """A file asks for code to be executed (Keras Lambda, custom objects); refused."""


class ExternalReferenceError(UnsafeContentError):
    """A file points at data outside itself (HDF5 external or soft link, external storage, virtual
    dataset, ONNX external data outside the model's folder); refused."""


class ModelConversionError(RefcamError, ValueError):
    """A model from another framework cannot be converted as given (not a model, in training mode, several outputs)."""


class SizeLimitError(RefcamError, ValueError):
    """A tensor or network is larger than refcam's documented size limits (docs/security.md)."""


class DeclaredSizeError(SizeLimitError, FileFormatError):
    """A file declares a tensor, dataset or layer size beyond refcam's limits, or more data than it stores."""


class NonFiniteParameterError(FileFormatError):
    """A file holds a NaN or Inf weight or numeric attribute."""


# --- Grad-CAM ----------------------------------------------------------------
class GradCAMError(RefcamError, ValueError):
    """Grad-CAM cannot be computed with the given arguments."""


class LabelError(GradCAMError):
    """A label is not a class of the network, or is out of range."""


class ReductionError(GradCAMError):
    """A reduction function is not callable, raised an exception, or did not return a scalar Tensor."""


class NonFiniteScoreError(ReductionError):
    """A score (a class score or a reduction function's value) is NaN or Inf."""


class AllGradientsZeroError(GradCAMError):
    """Every gradient of the score with respect to the feature map is zero (MATLAB's AllGradientsZero)."""
