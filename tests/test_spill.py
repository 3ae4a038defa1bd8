"""qbench.spill: items beyond the memory budget live on disk and read back exactly."""

from __future__ import annotations

import numpy as np

from qbench.spill import SpillList


def _item(i: int) -> dict:
    rng = np.random.default_rng(i)
    # names as ONNX models spell them (slashes, colons), a float map and an integer map
    return {"x/in:0": rng.standard_normal((1, 3, 16, 16)).astype(np.float32), "cls": np.arange(i, i + 5, dtype=np.int64)}


def test_items_beyond_the_budget_are_on_disk_and_read_back_exactly():
    size = sum(v.nbytes for v in _item(0).values())
    items = SpillList(keep_bytes=2 * size)  # two in memory, the rest on disk
    for i in range(6):
        items.append(_item(i))
    assert len(items) == 6 and items.spilled == 4
    for i, got in enumerate(items):
        want = _item(i)
        assert list(got) == list(want)
        for name in want:
            assert got[name].dtype == want[name].dtype and np.array_equal(got[name], want[name])
    sub = items.subset([5, 1])
    assert len(sub) == 2 and np.array_equal(sub[0]["cls"], _item(5)["cls"]) and np.array_equal(sub[1]["cls"], _item(1)["cls"])
    assert [int(b["cls"][0]) for b in items[2:4]] == [2, 3]


def test_spill_folder_is_removed_with_the_list():
    import gc

    items = SpillList(keep_bytes=0)
    items.append(_item(0))
    folder = items._store.folder
    assert folder is not None and folder.is_dir()
    del items
    gc.collect()
    assert not folder.exists()
