"""Every option a command lists in its --help works on that command: parsed, and handed to the
command with the value given (issue 18: ``qbench simulate --help`` listed --quiet, which simulate
then refused). Common options a command has no use for are hidden from its --help and refused."""

from __future__ import annotations

import click
import pytest

from qbench.cli import cli, main


def _commands(group: click.Group, path=()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


COMMANDS = sorted(_commands(cli))


def _listed(command: click.Command) -> list[click.Parameter]:
    """The parameters ``--help`` shows (arguments and visible options, --help itself aside)."""
    return [p for p in command.params if not getattr(p, "hidden", False) and p.name != "help"]


def _value(param: click.Parameter, tmp_path) -> list[str]:
    """A command-line value for ``param`` that parses and differs from its default."""
    kind, default = param.type, param.default
    if isinstance(kind, click.Path):
        path = tmp_path / f"{param.name}.x"
        if kind.file_okay:
            path.write_bytes(b"")
        else:
            path.mkdir(exist_ok=True)
        return [str(path)]
    if isinstance(kind, click.Choice):
        return [next(c for c in kind.choices if c != default)]
    if isinstance(kind, (click.IntRange, click.FloatRange)):
        low = kind.min if kind.min is not None else 0
        value = low + 1 if kind.max is None or low + 1 <= kind.max else (low + kind.max) / 2
        value = value if value != default else value + (1 if kind.max is None else 0)
        return [str(int(value) if isinstance(kind, click.IntRange) else value)]
    if kind is click.INT:
        return [str((default or 0) + 1)]
    if kind is click.FLOAT:
        return [str((default or 0.0) + 0.25)]
    return ["x"]


def _required(command: click.Command, skip: click.Parameter, tmp_path) -> list[str]:
    args = []
    for p in command.params:
        if p is skip or not p.required:
            continue
        args += _value(p, tmp_path) if isinstance(p, click.Argument) else [p.opts[0], *_value(p, tmp_path)]
    return args


def _spellings(param: click.Option) -> list[tuple[str, list[str], object]]:
    """(flag, its value words, what the command must then receive; None: anything but the default)."""
    if param.is_flag:
        return [(param.opts[0], [], True)] + [(o, [], False) for o in param.secondary_opts]
    return [(param.opts[0], None, None)]


def test_commands_are_found():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"run", "demo", "calibrate", "simulate", "compare", "sweep"} <= names


@pytest.mark.parametrize("path,command", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_listed_option_reaches_the_command(path, command, tmp_path, monkeypatch):
    received = []
    # the common-options wrapper calls the command through __wrapped__: record instead of running
    monkeypatch.setattr(command.callback, "__wrapped__", lambda *a, **kw: received.append(kw))
    options = [p for p in _listed(command) if isinstance(p, click.Option)]
    assert options, f"qbench {' '.join(path)} lists no options"
    for param in options:
        for flag, words, expected in _spellings(param):
            words = _value(param, tmp_path) if words is None else words
            argv = [*path, *_required(command, param, tmp_path), flag, *words]
            received.clear()
            code = main(argv)
            assert code in (0, None) and len(received) == 1, f"qbench {' '.join(argv)} refused {flag} (exit {code})"
            got = received[0]
            if param.name == "debug":
                continue  # main() reads --debug from the command line; the command never receives it
            assert param.name in got, f"qbench {' '.join(path)}: {flag} parsed but not passed on"
            if expected is not None:
                assert got[param.name] is expected, f"qbench {' '.join(argv)}: {param.name}={got[param.name]!r}"
            else:
                assert got[param.name] not in (None, (), param.default), f"qbench {' '.join(argv)}: value lost"


def test_simulate_quiet_prints_only_the_result(tmp_path, capsys):
    from qbench.defaults import DEFAULT_MODEL

    out = tmp_path / "model.fp16.onnx"
    assert main(["simulate", str(DEFAULT_MODEL), "--precision", "fp16", "--ranges", str(tmp_path / "unused.cache"),
                 "-o", str(out), "--quiet"]) in (0, None)
    captured = capsys.readouterr()
    assert out.is_file()
    assert captured.err == ""  # the fp16 note about --ranges is gone
    assert captured.out.startswith("fp16: ") and str(out) in captured.out
    assert main(["simulate", str(DEFAULT_MODEL), "--precision", "fp16", "--ranges", str(tmp_path / "unused.cache"),
                 "-o", str(out)]) in (0, None)
    assert "note: --ranges is not used for fp16" in capsys.readouterr().err


def test_an_unused_common_option_is_hidden_and_refused(capsys):
    help_text = cli.commands["trt-info"].get_help(click.Context(cli.commands["trt-info"]))
    assert "--limit" not in help_text and "--debug" in help_text
    assert main(["trt-info", "--limit", "3"]) == 2
    assert capsys.readouterr().err.strip() == "qbench: error: --limit does not apply to qbench trt-info"
