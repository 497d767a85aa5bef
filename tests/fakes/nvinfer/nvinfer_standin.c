/* NOT TensorRT: a stand-in for libnvinfer.so.N, libnvinfer_plugin.so.N and libnvonnxparser.so.N.
 *
 * It exports the C entry points that NVIDIA's Python bindings (tensorrt-cu12/cu13-bindings) and our C++
 * runtime link against, and every one of them fails the way real TensorRT does when CUDA cannot start:
 * the factories return NULL. With it loaded, the real bindings import on a machine without TensorRT's
 * libraries, so their enums, classes and method signatures can be checked against ours, and
 * trt.Builder(logger) / trt.Runtime(logger) raise "factory function returned nullptr" as on a machine
 * whose GPU or driver is missing. Built by tests/fakes/nvinfer/build.py; never shipped.
 */
#include <stddef.h>

#ifndef STANDIN_MAJOR
#define STANDIN_MAJOR 10
#endif

#define EXPORT __attribute__((visibility("default")))

/* libnvinfer */
EXPORT void* createInferBuilder_INTERNAL(void* logger, int version) { (void)logger; (void)version; return NULL; }
EXPORT void* createInferRuntime_INTERNAL(void* logger, int version) { (void)logger; (void)version; return NULL; }
EXPORT void* createInferRefitter_INTERNAL(void* engine, void* logger, int version) {
  (void)engine; (void)logger; (void)version; return NULL;
}
EXPORT void* getPluginRegistry(void) { return NULL; }
EXPORT void* getBuilderPluginRegistry(int capability) { (void)capability; return NULL; }
EXPORT int getInferLibVersion(void) { return STANDIN_MAJOR * 10000; }
EXPORT int getInferLibMajorVersion(void) { return STANDIN_MAJOR; }
EXPORT int getInferLibMinorVersion(void) { return 0; }
EXPORT int getInferLibPatchVersion(void) { return 0; }
EXPORT int getInferLibBuildVersion(void) { return 0; }
EXPORT void* getLogger(void) { return NULL; }

/* libnvinfer_plugin */
EXPORT int initLibNvInferPlugins(void* logger, const char* ns) { (void)logger; (void)ns; return 0; }

/* libnvonnxparser */
EXPORT void* createNvOnnxParser_INTERNAL(void* network, void* logger, int version) {
  (void)network; (void)logger; (void)version; return NULL;
}
EXPORT void* createNvOnnxParserRefitter_INTERNAL(void* refitter, void* logger, int version) {
  (void)refitter; (void)logger; (void)version; return NULL;
}
EXPORT int getNvOnnxParserVersion(void) { return STANDIN_MAJOR * 10000; }
