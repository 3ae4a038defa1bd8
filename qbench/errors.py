"""The one exception type users see: the CLI prints its message as a single line and exits non-zero."""


class QbenchError(Exception):
    """A problem with the user's input or environment, explained in one line (no traceback)."""

    exit_code = 2


class MissingDependencyError(QbenchError):
    """An optional dependency (TensorRT, pycuda, a GPU) is needed for this command and absent."""

    exit_code = 3
