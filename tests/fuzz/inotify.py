"""Linux inotify through ctypes: which watched files were opened or read, by any process.

The runner watches each worker's canary files. inotify reports opens made by
the HDF5 C library and protobuf as well as Python's own, and the kernel queues
an event before the ``open`` returns, so once a worker has answered, every
open its case made is already in the queue.

>>> with Inotify() as watcher:                           # doctest: +SKIP
...     watcher.watch(Path("canary.h5"), "canary.h5")
...     open("canary.h5").close()
...     watcher.opened()
['canary.h5']
"""
from __future__ import annotations

import ctypes
import os
import struct
from pathlib import Path

IN_ACCESS = 0x001
IN_OPEN = 0x020
EVENT_HEADER = struct.Struct("iIII")     # wd, mask, cookie, len (then len bytes of name)
_libc = ctypes.CDLL(None, use_errno=True)


class Inotify:
    """One inotify instance; :meth:`watch` files, :meth:`opened` drains the events seen since the last call."""

    def __init__(self) -> None:
        self.fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self.names: dict[int, str] = {}

    def watch(self, path: Path, name: str) -> None:
        """Report opens and reads of ``path`` (of its inode: every hard link to it) as ``name``."""
        descriptor = _libc.inotify_add_watch(self.fd, os.fsencode(path), IN_OPEN | IN_ACCESS)
        if descriptor < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch failed for {path}")
        self.names.setdefault(descriptor, name)

    def opened(self) -> list[str]:
        """Names of the watched files opened or read since the last call, each once, in order."""
        names: list[str] = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return names
            offset = 0
            while offset < len(data):
                descriptor, _mask, _cookie, length = EVENT_HEADER.unpack_from(data, offset)
                offset += EVENT_HEADER.size + length
                name = self.names.get(descriptor)
                if name is not None and name not in names:
                    names.append(name)

    def close(self) -> None:
        """Release the inotify instance."""
        os.close(self.fd)

    def __enter__(self) -> "Inotify":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
