"""A list of per-sample arrays whose memory does not grow with the number of samples.

Why: a stage that must read the same samples many times (the search judges every candidate
against the FP32 outputs of the same held-out samples) would otherwise keep one dict of arrays per
sample in memory, and ``qbench run`` on 1000 images would need gigabytes for them alone. A
``SpillList`` keeps items in memory until ``keep_bytes`` are held and writes every later one to its
own ``.npz`` file in a private temporary folder, read back with ``allow_pickle=False``. Reading an
item back costs one file read (a page-cache hit on a repeated read); the memory held is at most
``keep_bytes`` plus the one item being read, whatever the number of items.

Items are dicts of name -> ndarray (an ONNX Runtime feed or a run's outputs); ``subset`` gives a
view of some indices that shares the stored items (nothing is copied).
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path

import numpy as np

# Bytes of items held in memory per list; the rest go to disk. 64 MiB holds a dozen 640x640 RGB
# float feeds; small models keep every sample in memory and never touch the disk.
KEEP_BYTES = 64 * 2**20


class _Store:
    """The items themselves: in memory (index -> dict) or on disk (index -> path)."""

    def __init__(self, keep_bytes: int):
        self.keep_bytes = keep_bytes
        self.held = 0
        self.memory: dict[int, dict] = {}
        self.files: dict[int, Path] = {}
        self.folder: Path | None = None
        self._cleanup = None

    def put(self, index: int, item: dict) -> None:
        size = sum(np.asarray(v).nbytes for v in item.values())
        if self.held + size <= self.keep_bytes:
            self.memory[index] = item
            self.held += size
            return
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="qbench-spill-"))
            # removed when the store is garbage collected, or at interpreter exit at the latest
            self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.folder), True)
        path = self.folder / f"{index}.npz"
        # positional names keep any tensor name (slashes, colons) out of the archive's member names
        np.savez(path, *[np.asarray(v) for v in item.values()])
        self.files[index] = path
        self.memory[index] = list(item)  # the names, in order: the file holds arr_0, arr_1, ...

    def get(self, index: int) -> dict:
        if index not in self.files:
            return self.memory[index]
        names = self.memory[index]
        with np.load(self.files[index], allow_pickle=False) as archive:
            return {name: archive[f"arr_{i}"] for i, name in enumerate(names)}

    @property
    def spilled(self) -> int:
        return len(self.files)


class SpillList:
    """A read-only sequence of dicts of arrays, built by ``append`` (see the module docstring)."""

    def __init__(self, keep_bytes: int = KEEP_BYTES, *, _store: _Store | None = None, _indices=None):
        self._store = _store if _store is not None else _Store(keep_bytes)
        self._indices = list(_indices) if _indices is not None else []

    def append(self, item: dict) -> None:
        index = len(self._store.memory)
        self._store.put(index, item)
        self._indices.append(index)

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._store.get(j) for j in self._indices[i]]
        return self._store.get(self._indices[i])

    def __iter__(self):
        for j in self._indices:
            yield self._store.get(j)

    def subset(self, positions) -> "SpillList":
        """The items at ``positions`` of this list, sharing its storage."""
        return SpillList(_store=self._store, _indices=[self._indices[p] for p in positions])

    @property
    def spilled(self) -> int:
        """How many items of the underlying storage live on disk."""
        return self._store.spilled
