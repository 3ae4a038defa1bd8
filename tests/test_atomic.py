"""Writing results: atomic, shareable permissions, and one clear line when the destination is unusable."""

from __future__ import annotations

import os
import stat

import pytest

from qbench import atomic
from qbench.errors import QbenchError


def test_write_is_atomic_and_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "results.json"
    atomic.write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(target) as tmp:
            tmp.write_text("half-writ")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary left behind


def test_written_files_get_umask_permissions_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic.write_text(tmp_path / "index.html", "<p>")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_unusable_destinations_are_one_line(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(QbenchError, match="it is a file"):
        atomic.ensure_dir(a_file)
    with pytest.raises(QbenchError, match="it is a file"):
        atomic.write_text(a_file / "inside.json", "{}")
    with pytest.raises(QbenchError, match="it is a folder"):
        atomic.write_text(tmp_path, "{}")


def test_output_dir_check_creates_nothing(tmp_path):
    target = tmp_path / "a" / "b"
    assert atomic.check_output_dir(target) == target and not (tmp_path / "a").exists()
    (tmp_path / "f").write_text("x")
    with pytest.raises(QbenchError, match="is a file"):
        atomic.check_output_dir(tmp_path / "f" / "sub")
