"""Where the embedded default model and calibration data live, and the precisions ``qbench run``
compares by default: constants the CLI reads without importing the stages."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL = PACKAGE_DIR / "models" / "ch_PP-OCRv4_det_infer.onnx"
# calib_data/ sits at the top of the repository, beside the package (the README installs qbench
# in editable mode, so this path exists wherever the demo runs).
DEFAULT_DATA = PACKAGE_DIR.parent / "calib_data"
DEFAULT_REPORTS = Path("reports")

# the candidates of ``qbench run`` (qbench.pipeline)
PRECISIONS = ("int8", "fp16")
