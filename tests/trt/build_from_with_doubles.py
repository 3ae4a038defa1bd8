"""``qbench build --from <out>/<format>-best`` in process, through Polygraphy's loaders, under the real
bindings, with doubles for the Builder and the ONNX parser only (tests/trt/doubles.py), as in
build_with_doubles.py: the CLI reads the folder, qbench's builder picks the row of the formats table,
Polygraphy's CreateConfig sets the flags on a double of the real IBuilderConfig (every member it
touches must exist there) and NetworkFromOnnxBytes creates the network with the flags it is given.

Run as a script: argv = folder, engine path, and optionally a trt.BuilderFlag member to hide (to
stand for a TensorRT whose bindings lack it). Prints one JSON object: the builder flags set, the
network creation flags, the keywords CreateConfig got, and what the parsed model holds (element types
of its float initializers, its Q/DQ operators, its opset).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    import onnx

    from qbench.cli.trt import build_command
    from qbench.errors import QbenchError
    from qbench.tensorrt import polygraphy_backend
    from qbench.tensorrt._import import import_trt
    from tests.trt import doubles

    folder, engine = Path(sys.argv[1]), Path(sys.argv[2])
    hide = sys.argv[3] if len(sys.argv) > 3 else None
    trt = import_trt()
    pg = polygraphy_backend.backend(trt)
    if hide is not None:  # the real enum without one member: a TensorRT that lacks that flag
        real = trt.BuilderFlag
        trt.BuilderFlag = type("BuilderFlag", (), {k: getattr(real, k) for k in dir(real)
                                                   if not k.startswith("_") and k != hide})
    log: list = []
    x = doubles.tensor(trt, log, "x", (-1, 3, 48, 192))
    y = doubles.tensor(trt, log, "y")
    network = doubles.Network(trt, log, [x], [doubles.layer(trt, log, "y", "ACTIVATION", [y])], [y])
    parsed: list = []
    real_parser = trt.OnnxParser
    builder = doubles.builder(trt, log, network, engine=b"engine built by the double")
    trt.Builder = lambda logger: builder
    trt.OnnxParser = lambda net, logger: doubles.Checked(real_parser, "parser", log, values={"num_errors": 0}, returns={
        "parse": lambda data, *a, **k: parsed.append(bytes(data)) or True})
    keywords: list = []
    real_create_config = pg.CreateConfig

    def create_config(**kw):
        keywords.append(sorted(k for k, v in kw.items() if v is True))
        return real_create_config(**kw)

    pg.CreateConfig = create_config
    try:
        # the classifier's input is dynamic (?x3x?x?): its profile is given as a user would
        build_command.main(["--from", str(folder), "-o", str(engine), "--shapes", "x:1x3x48x192,2x3x48x192,4x3x48x192"],
                           standalone_mode=False)
        error = None
    except QbenchError as exc:
        error = str(exc)
    model = onnx.load_from_string(parsed[-1]) if parsed else None
    floats = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16", onnx.TensorProto.BFLOAT16: "bfloat16"}
    print(json.dumps({
        "error": error,
        "engine": engine.read_bytes().decode() if engine.exists() else None,
        "flags": sorted(str(e[2][0]).split(".")[-1] for e in log if e[0] == "config" and e[1] == "set_flag"),
        "network_flags": [e[3].get("flags", e[2][0] if e[2] else None) for e in log
                          if e[0] == "builder" and e[1] == "create_network"],
        "strongly_typed_flags": 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED),
        "true_keywords": keywords[-1] if keywords else None,
        "float_initializers": sorted({floats[t.data_type] for t in model.graph.initializer if t.data_type in floats})
        if model else None,
        "qdq": sorted({n.op_type for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")})
        if model else None,
        "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None) if model else None,
    }))


if __name__ == "__main__":
    main()
