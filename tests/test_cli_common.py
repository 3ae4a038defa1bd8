"""One CLI: every command shares --quiet, --out, --limit and --debug; --version names the libraries."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from qbench.cli import cli, main
from qbench.cli.common import COMMON_NAMES, common_options


def test_every_command_has_the_common_options():
    assert cli.commands, "no commands registered"
    for name, command in cli.commands.items():
        flags = {opt for p in command.params for opt in p.opts}
        missing = [f"--{n}" for n in COMMON_NAMES if f"--{n}" not in flags]
        assert not missing, f"qbench {name} lacks {missing}"


def test_version_prints_library_versions():
    import onnx
    import onnxruntime

    out = subprocess.run([sys.executable, "-m", "qbench", "--version"], capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert f"onnx {onnx.__version__}" in lines
    assert f"ONNX Runtime {onnxruntime.__version__}" in lines
    assert any(line.startswith("TensorRT bindings ") for line in lines)
    assert out.splitlines()[0].startswith("qbench ")


def test_debug_after_the_command_is_accepted(tmp_path, capsys):
    missing = tmp_path / "nope.onnx"
    assert main(["run", str(missing), "--data", str(tmp_path), "--debug"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qbench: error:") and "no such option" not in err
    assert "nope.onnx" in err


def test_option_a_command_does_not_use_is_refused_in_one_line(capsys):
    assert main(["trt-info", "--limit", "3"]) == 2
    assert capsys.readouterr().err.strip() == "qbench: error: --limit does not apply to qbench trt-info"


def test_decorator_on_function_and_on_command_forwards_only_what_is_taken():
    seen = {}

    @click.command("a")
    @common_options
    def a(quiet, limit):
        seen["a"] = (quiet, limit)

    @common_options
    @click.command("b")
    @click.option("--out", default="mine")  # a command's own declaration wins
    def b(out, **kwargs):
        seen["b"] = (out, sorted(kwargs))

    a.main(["--quiet", "--limit", "2", "--debug"], standalone_mode=False)
    b.main(["--limit", "1"], standalone_mode=False)
    assert seen["a"] == (True, 2)
    assert seen["b"] == ("mine", ["limit", "quiet"])
    with pytest.raises(Exception, match="--out does not apply"):
        a.main(["--out", "x"], standalone_mode=False)


def test_internal_error_hint_and_debug_after_the_command(monkeypatch, capsys):
    import qbench.tensorrt._import as trt_import

    def boom():
        raise RuntimeError("planted bug")

    monkeypatch.setattr(trt_import, "import_trt", boom)
    assert main(["trt-info"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "qbench: internal error: RuntimeError: planted bug (rerun with --debug for the traceback)"
    with pytest.raises(RuntimeError, match="planted bug"):  # the hint is right: --debug after the command works
        main(["trt-info", "--debug"])
