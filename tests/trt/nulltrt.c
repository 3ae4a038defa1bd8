/* Null TensorRT libraries: just enough for the REAL TensorRT Python bindings to import.
 *
 * The bindings' extension (tensorrt_bindings/tensorrt.so) links libnvinfer.so.N,
 * libnvonnxparser.so.N and libnvinfer_plugin.so.N and imports exactly nine C factory functions
 * from them (`nm -D --undefined-only tensorrt.so`). Every other symbol the bindings use is a C++
 * virtual method reached through the objects these factories return, so libraries that export the
 * nine factories, each returning NULL/0, satisfy the dynamic linker. Consequence: enums, trt.nptype,
 * trt.volume, trt.Logger and Python subclasses of the real interface classes all work; creating a
 * Builder/Runtime fails cleanly (the bindings see NULL and raise), and nothing is ever computed.
 *
 * When NULLTRT_TRACE names a file, every factory appends its name to it, so a test can see which
 * TensorRT entry points qbench (through the bindings and Polygraphy) reached.
 *
 * Compile once per library with -DNULLTRT_NVINFER, -DNULLTRT_ONNXPARSER or -DNULLTRT_PLUGIN and the
 * matching -Wl,-soname (tests/trt/conftest.py does this in a session fixture).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#define EXPORT __attribute__((visibility("default")))

static void trace(const char *name) {
    const char *path = getenv("NULLTRT_TRACE");
    FILE *f = path ? fopen(path, "a") : NULL;
    if (f) { fprintf(f, "%s\n", name); fclose(f); }
}

#ifdef NULLTRT_NVINFER
EXPORT void *createInferBuilder_INTERNAL(void *logger, int32_t version) { (void)logger; (void)version; trace("createInferBuilder"); return NULL; }
EXPORT void *createInferRuntime_INTERNAL(void *logger, int32_t version) { (void)logger; (void)version; trace("createInferRuntime"); return NULL; }
EXPORT void *createInferRefitter_INTERNAL(void *engine, void *logger, int32_t version) { (void)engine; (void)logger; (void)version; return NULL; }
EXPORT void *getPluginRegistry(void) { return NULL; }
EXPORT void *getBuilderPluginRegistry(int32_t capability) { (void)capability; return NULL; }
#endif

#ifdef NULLTRT_ONNXPARSER
EXPORT void *createNvOnnxParser_INTERNAL(void *network, void *logger, int32_t version) { (void)network; (void)logger; (void)version; return NULL; }
EXPORT void *createNvOnnxParserRefitter_INTERNAL(void *refitter, void *logger, int32_t version) { (void)refitter; (void)logger; (void)version; return NULL; }
EXPORT int32_t getNvOnnxParserVersion(void) { return 0; }
#endif

#ifdef NULLTRT_PLUGIN
EXPORT bool initLibNvInferPlugins(void *logger, const char *ns) { (void)logger; (void)ns; trace("initLibNvInferPlugins"); return false; }
#endif
