"""Reading and writing networks: refcam's own HDF5 format (``docs/hdf5-format.md``).

``load`` sniffs the file's content (:func:`detect_format`) before reading it, so
importers for other formats can be added behind the same entry point.
"""
from .hdf5 import detect_format, load, save

__all__ = ["detect_format", "load", "save"]
