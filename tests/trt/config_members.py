"""Polygraphy's CreateConfig, run with the keywords qbench passes, on doubles of the real Builder,
network, IBuilderConfig and IOptimizationProfile (tests/trt/doubles.py): every member Polygraphy reads,
calls or sets must exist on the real bindings class, else the double raises AttributeError and
Polygraphy reports the feature unavailable. Run as a script under the real bindings; prints one JSON
object with what was set for each precision of this TensorRT's path, the shipped formats' rows
(``builder.SHIPPED``) included.
"""

from __future__ import annotations

import json

import numpy as np


def main() -> None:
    import logging

    import polygraphy

    from qbench.tensorrt import polygraphy_backend
    from qbench.tensorrt._import import api_path, import_trt
    from qbench.tensorrt.builder import PRECISIONS, SHIPPED, BuildOptions, _config_keywords
    from qbench.tensorrt.calibrator import EntropyCalibrator
    from qbench.ranges import Ranges, TensorRange
    from tests.trt import doubles

    trt = import_trt()
    pg = polygraphy_backend.backend(trt)
    # Polygraphy's messages must reach Python logging (never stdout, where this script's JSON goes)
    records: list[str] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lambda record: records.append(record.getMessage())
    logging.getLogger("Polygraphy").addHandler(handler)
    logging.getLogger("Polygraphy").setLevel(logging.DEBUG)
    path = api_path(trt)
    profile = {"x": ((1, 3, 8, 8), (2, 3, 8, 8), (4, 3, 8, 8))}
    out = {"version": polygraphy.__version__, "path": path, "runs": {}}
    for precision in PRECISIONS + SHIPPED:  # the shipped formats' rows: fp8, w4a16, bf16
        log: list = []
        x = doubles.tensor(trt, log, "x", (-1, 3, 8, 8))
        conv_out = doubles.tensor(trt, log, "conv_out")
        network = doubles.Network(trt, log, [x], [doubles.layer(trt, log, "conv", "CONVOLUTION", [conv_out])], [conv_out])
        calibrator = None
        if path == "v10" and precision == "int8":
            ranges = Ranges({"x": TensorRange("x", 2.0)})
            calibrator = EntropyCalibrator(lambda: iter(()), ranges=ranges, input_dtypes={"x": np.float32}, trt=trt)
        options = BuildOptions(layer_precisions={"conv": "fp16"} if calibrator is not None else {})
        keywords = _config_keywords(trt, path, precision, options, profile, calibrator, pg)
        try:
            pg.CreateConfig(**keywords)(doubles.builder(trt, log), network)
            error = None
        except Exception as exc:  # noqa: BLE001 - reported, the test asserts there is none
            error = f"{type(exc).__name__}: {polygraphy_backend.one_line(exc)}"
        entries = [e for e in log if e[0] in ("config", "profile")]
        out["runs"][precision] = {
            "error": error,
            "flags": sorted(str(e[2][0]).split(".")[-1] for e in entries if e[1] == "set_flag"),
            "cleared": sorted(str(e[2][0]).split(".")[-1] for e in entries if e[1] == "clear_flag"),
            "set": sorted({e[1] for e in entries if e[2] == "="}),
            "called": sorted({f"{e[0]}.{e[1]}" for e in entries if e[2] != "="}),
            "calibrator_is_qbench": any(e[1] == "int8_calibrator" and e[3] is calibrator and calibrator is not None
                                        for e in entries if e[2] == "="),
            "verbosity": next((str(e[3]) for e in entries if e[1] == "profiling_verbosity" and e[2] == "="), None),
            "shapes": [[list(map(int, d)) for d in e[2][1:]] for e in entries if e[1] == "set_shape"],
        }
    out["polygraphy_log"] = records
    print(json.dumps(out))


if __name__ == "__main__":
    main()
