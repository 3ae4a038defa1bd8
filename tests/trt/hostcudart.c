/* A host-memory stand-in for the CUDA runtime (libcudart.so): a TEST VEHICLE, NOT A GPU.
 *
 * It exports the runtime functions Polygraphy's ctypes wrapper (polygraphy/cuda/cuda.py) and qbench's
 * calibrator backend call, implemented on host memory: cudaMalloc is malloc, every cudaMemcpy kind is
 * memcpy, streams are dummy handles whose synchronisation is immediate. With it on LD_LIBRARY_PATH,
 * Polygraphy's debug listener and qbench's calibrator run end to end on the CPU, and every byte they
 * "copy to the device" can be read back at the address they hand to TensorRT. It computes nothing and
 * says nothing about a real GPU's behaviour (asynchrony, alignment, device limits).
 * tests/trt/conftest.py compiles it as libcudart.so.13 in a session fixture.
 */
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

EXPORT int cudaMalloc(void **ptr, size_t nbytes) { *ptr = malloc(nbytes ? nbytes : 1); return *ptr ? 0 : 2; }
EXPORT int cudaFree(void *ptr) { free(ptr); return 0; }
EXPORT int cudaMemcpy(void *dst, const void *src, size_t nbytes, int kind) { (void)kind; memmove(dst, src, nbytes); return 0; }
EXPORT int cudaMemcpyAsync(void *dst, const void *src, size_t nbytes, int kind, void *stream) {
    (void)kind; (void)stream; memmove(dst, src, nbytes); return 0;
}
EXPORT int cudaStreamCreate(void **stream) { *stream = malloc(1); return *stream ? 0 : 2; }
EXPORT int cudaStreamSynchronize(void *stream) { (void)stream; return 0; }
EXPORT int cudaStreamDestroy(void *stream) { free(stream); return 0; }
EXPORT int cudaGetDeviceCount(int *count) { *count = 1; return 0; }
EXPORT int cudaGetDevice(int *device) { *device = 0; return 0; }
/* cudaDeviceProp begins with char name[256]; the caller passes a buffer larger than the struct */
EXPORT int cudaGetDeviceProperties(char *prop, int device) {
    (void)device; strncpy(prop, "host-memory CUDA runtime stand-in (no GPU)", 256); return 0;
}
/* cudaDevAttrComputeCapabilityMajor (75) / Minor (76) from HOSTCUDART_CC ("8.6"); unset: an error,
   so the compute capability is unknown, as on a machine whose runtime cannot say */
EXPORT int cudaDeviceGetAttribute(int *value, int attr, int device) {
    const char *cc = getenv("HOSTCUDART_CC");
    int major = 0, minor = 0;
    (void)device;
    if (cc == NULL || sscanf(cc, "%d.%d", &major, &minor) != 2) return 1;
    if (attr == 75) { *value = major; return 0; }
    if (attr == 76) { *value = minor; return 0; }
    return 1;
}
