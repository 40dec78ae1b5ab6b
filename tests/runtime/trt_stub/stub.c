/*
 * Stand-ins for the nine C entry points that tensorrt_bindings/tensorrt.so imports from libnvinfer,
 * libnvonnxparser and libnvinfer_plugin (see shared/FACTS.md, TensorRT). Compiled once per library
 * soname and placed beside tensorrt.so, they let the real Python bindings import on a machine without
 * TensorRT, so the contract tests can introspect and spec the real classes and enums. Every factory
 * returns NULL: constructing trt.Builder or trt.Runtime then raises TypeError, which is why the tests
 * use doubles for those objects.
 */
void *createInferBuilder_INTERNAL(void *logger, int version) { (void)logger; (void)version; return 0; }
void *createInferRefitter_INTERNAL(void *engine, void *logger, int version) { (void)engine; (void)logger; (void)version; return 0; }
void *createInferRuntime_INTERNAL(void *logger, int version) { (void)logger; (void)version; return 0; }
void *createNvOnnxParser_INTERNAL(void *network, void *logger, int version) { (void)network; (void)logger; (void)version; return 0; }
void *createNvOnnxParserRefitter_INTERNAL(void *refitter, void *logger, int version) { (void)refitter; (void)logger; (void)version; return 0; }
void *getBuilderPluginRegistry(int capability) { (void)capability; return 0; }
int getNvOnnxParserVersion(void) { return 0; }
void *getPluginRegistry(void) { return 0; }
int initLibNvInferPlugins(void *logger, const char *ns) { (void)logger; (void)ns; return 0; }
