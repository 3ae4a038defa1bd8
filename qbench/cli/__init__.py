"""The ``qbench`` command. Thin: it parses, calls the Python API, prints.

Each subcommand lives in its own module of this package; user errors (``QbenchError``) become one
line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from qbench import __version__
from qbench.errors import QbenchError

# One module per subcommand group; each defines COMMANDS, a list of click commands.
_COMMAND_MODULES = ("run", "calibrate", "check_ranges", "simulate", "compare", "trt")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="qbench")
@click.option("--debug", is_flag=True, help="Show the full traceback of unexpected errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """INT8/FP16 quantization and layer-wise accuracy validation for TensorRT deployments."""
    ctx.obj = {"debug": debug}


def _register() -> None:
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(f"qbench.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"qbench.cli.{name}":
                continue  # that command group is not part of this build
            raise
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main(argv: list[str] | None = None) -> int:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    # library warnings (e.g. a model that fails the ONNX checker) are whole sentences already
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        cli.main(args=argv, prog_name="qbench", standalone_mode=False)
    except QbenchError as exc:
        click.echo(f"qbench: error: {exc}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("qbench: aborted", err=True)
        return 130
    except click.UsageError as exc:  # a wrong option or value: one line, like every other user error
        click.echo(f"qbench: error: {exc.format_message()}", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("qbench: interrupted", err=True)
        return 130
    except Exception as exc:  # a bug in qbench, not in the input: still one line unless asked
        if debug:
            raise
        click.echo(f"qbench: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
