"""``qbench.tensorrt.builder.build_engine`` end to end through Polygraphy's loaders, under the real
bindings, with doubles standing in for what only a working libnvinfer creates (tests/trt/doubles.py).

``trt.Builder`` and ``trt.OnnxParser`` are replaced on the real bindings module by factories of
doubles; everything else is real: qbench's builder, calibrator and caches, Polygraphy's
NetworkFromOnnxBytes / PostprocessNetwork / SetLayerPrecisions / CreateConfig / EngineBytesFromNetwork,
the real enums and classes, the CUDA runtime stand-in for the calibrator's memory. The Builder
double's ``build_serialized_network`` does what TensorRT's builder does with a calibrator: asks it for
batches until it answers None (reading the bytes at each address it is given), then hands it a cache
to write. Run as a script: argv = precision, data folder, work folder; prints one JSON object.
"""

from __future__ import annotations

import ctypes
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "qbench" / "models" / "ch_PP-OCRv4_det_infer.onnx"
CONV = "p2o.Conv.0"  # a Conv node of the model: the parser names layers after ONNX nodes
CACHE_FROM_TRT = b"TRT-101601-EntropyCalibration2\nx: 3c010a14\n"


def main() -> None:
    from qbench.data import load_dataset
    from qbench.model import ModelGraph
    from qbench.tensorrt import polygraphy_backend
    from qbench.tensorrt._import import import_trt
    from qbench.tensorrt.builder import BuildOptions, build_engine
    from tests.trt import doubles

    precision, data_dir, work = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    trt = import_trt()
    polygraphy_backend.backend(trt)
    log: list = []
    x = doubles.tensor(trt, log, "x", (-1, 3, -1, -1))
    names = [CONV, "relu", "sigmoid_0.tmp_0"]
    tensors = {n: doubles.tensor(trt, log, n) for n in names}
    layers = [doubles.layer(trt, log, n, "CONVOLUTION" if n == CONV else "ACTIVATION", [tensors[n]]) for n in names]
    network = doubles.Network(trt, log, [x], layers, [tensors["sigmoid_0.tmp_0"]])
    served: list = []
    builds: list = []

    def build_serialized_network(net, config):
        builds.append(net)
        calibrator = config.int8_calibrator if "int8_calibrator" in config._values else None
        # what TensorRT's builder does with an INT8 calibrator: calibrate unless it answers with a cache
        if calibrator is not None and calibrator.read_calibration_cache() is None:
            reference = load_dataset(data_dir, ModelGraph.from_path(MODEL).inputs).batches(calibrator.get_batch_size())
            while (pointers := calibrator.get_batch(["x"])) is not None:
                want = next(reference)["x"]
                served.append([list(want.shape), ctypes.string_at(pointers[0], want.nbytes) == want.astype("float32").tobytes()])
            calibrator.write_calibration_cache(CACHE_FROM_TRT)
        return b"engine built by the double"

    builder = doubles.builder(trt, log, network)
    builder._returns["build_serialized_network"] = build_serialized_network
    real_parser = trt.OnnxParser
    trt.Builder = lambda logger: builder
    trt.OnnxParser = lambda net, logger: doubles.Checked(real_parser, "parser", log, values={"num_errors": 0},
                                                         returns={"parse": True})
    options = BuildOptions(calib_batch_size=2, capture="outputs", timing_cache=work / "timing.cache",
                           engine_cache=work / "engines", layer_precisions={CONV: "fp32"} if precision == "int8" else {},
                           shapes={} if precision == "int8" else {"x": ((1, 3, 32, 32), (1, 3, 64, 64), (1, 3, 96, 96))})
    result = build_engine(MODEL, precision, data=data_dir if precision == "int8" else None,
                          cache=work / "calib.cache" if precision == "int8" else None, options=options, trt=trt)
    flags = sorted(str(e[2][0]).split(".")[-1] for e in log if e[0] == "config" and e[1] == "set_flag")
    created = [e[3].get("flags", e[2][0] if e[2] else None) for e in log if e[0] == "builder" and e[1] == "create_network"]
    # again: 10.x INT8 now reads the cache TensorRT wrote (new ranges, new key, built); then a hit
    again = [build_engine(MODEL, precision, data=data_dir if precision == "int8" else None,
                          cache=work / "calib.cache" if precision == "int8" else None, options=options, trt=trt)
             for _ in range(2)]
    import polygraphy

    print(json.dumps({
        "polygraphy": polygraphy.__version__,
        "engine": result.engine.decode(), "path": result.path, "flags": flags, "network_flags": created,
        "strongly_typed_flags": 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED),
        "served": served, "written": sorted(result.ranges_written.entries) if result.ranges_written else None,
        "cache_file": (work / "calib.cache").read_text().splitlines() if (work / "calib.cache").exists() else None,
        "timing_cache": (work / "timing.cache").read_bytes().decode() if (work / "timing.cache").exists() else None,
        "marked": result.capture.marked, "outputs": [t.name for t in network.marked],
        "conv_precision": str(layers[0]._values.get("precision")), "notes": result.notes,
        "leftovers": sorted(f.name for f in work.iterdir() if f.name.startswith(".")),
        "from_cache": [result.from_cache] + [r.from_cache for r in again], "builds": len(builds),
    }))


if __name__ == "__main__":
    main()
