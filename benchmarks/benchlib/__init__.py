"""What several benchmarks share: the bundled data at another size, and a measurement in a fresh
process (so imports, caches and memory of one stage do not flatter the next)."""

from __future__ import annotations

import json
import multiprocessing as mp
import shutil
from pathlib import Path


def default_data_at(dest: Path, size: int, count: int | None = None) -> Path:
    """The bundled images (the first ``count``, or all) in ``dest`` with the manifest's input size
    set to ``size`` x ``size``; the preprocessing is otherwise the bundled one. Images already in
    ``dest`` are kept, so a cache folder can be reused between runs."""
    from qbench.defaults import DEFAULT_DATA

    (dest / "images").mkdir(parents=True, exist_ok=True)
    manifest = json.loads((DEFAULT_DATA / "manifest.json").read_text())
    for spec in manifest["inputs"].values():
        spec["size"] = [size, size]
    (dest / "manifest.json").write_text(json.dumps(manifest))
    images = sorted((DEFAULT_DATA / "images").iterdir())
    for image in images[:count] if count is not None else images:
        target = dest / "images" / image.name
        if not target.exists():
            shutil.copy(image, target)
    return dest


def in_child(target, *args) -> dict:
    """``target(*args, queue)`` in a spawned process; what it puts on the queue."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def default_data_cycled(dest: Path, size: int, count: int) -> Path:
    """``default_data_at`` with exactly ``count`` images: the bundled ones, cycled under new names
    when more are asked for than are bundled (to measure how a stage scales with the samples)."""
    data = default_data_at(dest, size)
    folder = data / "images"
    bundled = sorted(p for p in folder.iterdir() if not p.name.startswith("copy"))
    for extra in sorted(folder.glob("copy*")):
        extra.unlink()
    for path in bundled[count:]:
        path.unlink()
    for i in range(max(0, count - len(bundled))):
        source = bundled[i % len(bundled)]
        shutil.copy(source, folder / f"copy{i:04d}_{source.name}")
    return data
