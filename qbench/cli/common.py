"""The options every ``qbench`` command shares: ``--quiet``, ``--out``, ``--limit`` and ``--debug``.

One decorator, applied to every command, so that the same words mean the same thing everywhere and
``--debug`` (which the one-line error messages suggest) is accepted after the command name too::

    @click.command("check")
    @click.argument("model")
    @common_options
    def check_command(model, quiet, out, limit):   # take only the ones the command uses
        ...

It works either right under ``@click.command`` (on the function) or above it (on the command).
The callback receives ``quiet``, ``out`` and ``limit`` when its signature names them (or takes
``**kwargs``). An option the command has no use for is still parsed, so every command reads the
same, but giving it a value is refused in one line ("--limit does not apply to qbench trt-info")
rather than silently ignored; such an option is hidden from the command's ``--help``, which lists
only options that work on that command (tests/test_cli_options.py parses each of them). A command that already declares one of these options itself (say a
``--out`` with its own default) keeps its own declaration.

``--debug`` is not passed on: ``qbench.cli.main`` looks for it anywhere on the command line and
re-raises unexpected errors with their traceback.
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path

import click

from qbench.errors import QbenchError

# (parameter name, click option); the parameter name is what a command's callback receives
_COMMON = (
    ("quiet", click.option("--quiet", "-q", "quiet", is_flag=True, default=False,
                           help="No progress bars or stage notes; errors and the final result still print.")),
    ("out", click.option("--out", "out", type=click.Path(path_type=Path), default=None,
                         help="Output folder (each command names its default).")),
    ("limit", click.option("--limit", "limit", type=click.IntRange(min=1), default=None,
                           help="Use at most N samples.")),
    ("debug", click.option("--debug", "debug", is_flag=True, default=False,
                           help="Show the full traceback of unexpected errors.")),
)
COMMON_NAMES = tuple(name for name, _ in _COMMON)


def common_options(target):
    """Add the shared options to a click command (or to the function that becomes one)."""
    if isinstance(target, click.Command):
        _add_to_command(target)
        return target
    return _add_to_function(target)


def _flag(name: str) -> str:
    return f"--{name}"


def _declared(params) -> set[str]:
    return {opt for p in params for opt in getattr(p, "opts", ())}


def _accepts(callback) -> tuple[set[str], bool]:
    sig = inspect.signature(callback)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    return set(sig.parameters), takes_any


def _wrap(callback, skip: set[str]):
    """Callback that drops the common values the real callback does not take (refusing them when
    given) and never passes --debug on."""
    names, takes_any = _accepts(callback)

    @functools.wraps(callback)
    def wrapper(*args, **kwargs):
        if "debug" not in skip:
            kwargs.pop("debug", None)  # main() reads --debug from the command line itself
        for name in COMMON_NAMES:
            if name == "debug" or name in skip or name not in kwargs:
                continue
            if takes_any or name in names:
                continue
            value = kwargs.pop(name)
            if value not in (None, False):
                ctx = click.get_current_context(silent=True)
                command = ctx.command_path if ctx is not None else "this command"
                raise QbenchError(f"{_flag(name)} does not apply to {command}")
        # through __wrapped__ (functools.wraps sets it to callback), which a test may replace
        return wrapper.__wrapped__(*args, **kwargs)

    wrapper._qbench_common = True  # registration in qbench.cli applies the decorator only once
    return wrapper


def _add_to_function(func):
    params = list(getattr(func, "__click_params__", []))
    declared = _declared(params)
    skip = {name for name, _ in _COMMON if _flag(name) in declared}
    wrapper = _wrap(func, skip)
    wrapper.__click_params__ = params  # a copy: functools.wraps shared the original list
    for name, option in _COMMON:
        if name not in skip:
            # click lists __click_params__ in reverse, so inserting first puts them last in --help
            wrapper.__click_params__.insert(0, _parameter(option, hidden=not _applies(func, name)))
    return wrapper


def _add_to_command(command: click.Command) -> None:
    declared = _declared(command.params)
    skip = {name for name, _ in _COMMON if _flag(name) in declared}
    for name, option in _COMMON:
        if name not in skip:
            command.params.append(_parameter(option, hidden=not _applies(command.callback, name)))
    command.callback = _wrap(command.callback, skip)


def _applies(callback, name: str) -> bool:
    """Whether the common option ``name`` does something on a command with this callback: --debug
    always does (main reads it), the others when the callback takes them."""
    names, takes_any = _accepts(callback)
    return name == "debug" or takes_any or name in names


def _parameter(option, hidden: bool = False) -> click.Parameter:
    """The click.Option a ``click.option(...)`` decorator would attach (a fresh one per command);
    ``hidden``: parsed (and refused by the wrapper) but not listed in --help."""
    def holder():
        pass

    option(holder)
    param = holder.__click_params__[0]
    param.hidden = hidden
    return param


def versions() -> list[tuple[str, str]]:
    """(component, version) for qbench and the libraries whose versions decide its results. Read from
    package metadata: importing TensorRT's bindings would need its libraries, which may be absent."""
    from importlib import metadata

    from qbench import __version__

    def dist(*names: str) -> str | None:
        for name in names:
            try:
                return metadata.version(name)
            except metadata.PackageNotFoundError:
                continue
        return None

    trt = dist("tensorrt", "tensorrt-cu13-bindings", "tensorrt-cu12-bindings", "tensorrt-bindings",
               "tensorrt-cu13", "tensorrt-cu12")
    if trt is None:
        trt = _trt_module_version()
    return [("qbench", __version__), ("onnx", dist("onnx") or "not installed"),
            ("ONNX Runtime", dist("onnxruntime", "onnxruntime-gpu") or "not installed"),
            ("TensorRT bindings", trt or "not installed")]


def _trt_module_version() -> str | None:
    """A TensorRT module on the path without pip metadata (a system install, or QBENCH_TRT_MODULE):
    its version from the module itself, if it imports."""
    import importlib.util

    for name in ("tensorrt", "tensorrt_bindings"):
        if importlib.util.find_spec(name) is None:
            continue
        try:
            from qbench.tensorrt._import import import_trt

            return f"{import_trt().__version__}"
        except QbenchError as exc:
            return f"present but not loadable ({str(exc)[:120]})"
    return None


def print_version(ctx: click.Context, _param, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    for name, version in versions():
        click.echo(f"{name} {version}")
    ctx.exit()
