// wsml_cuda_versions: the CUDA side of --version and of run logs (common/sysinfo.c finds it
// in libwsml-cuda.so with dlsym). Cheap on purpose: the CUDA runtime is static and its
// version calls create no context; cuDNN 9's libcudnn.so is a small dispatcher (about 10 ms
// to load); cuBLAS is NOT loaded, since libcublasLt costs seconds of start-up (see
// backend_cuda.cu), so only the version it was built with is given. Works, and says so,
// on a machine without a driver or without cuDNN.
#include <cublas_api.h>
#include <cuda_runtime.h>
#include <cudnn_version.h>
#include <dlfcn.h>
#include <stdio.h>

#define WSML_VSTR2(x) #x
#define WSML_VSTR(x) WSML_VSTR2(x)

// One line, e.g. "CUDA runtime 13.0 (static), driver 13.0; cuDNN 9.19.0 (built with
// 9.19.0); cuBLAS built with 13.0.0 (loaded by --backend cuda only)". Returns 0.
extern "C" int wsml_cuda_versions(char *buf, size_t cap) {
    int runtime = 0, driver = 0;
    cudaRuntimeGetVersion(&runtime);
    char driver_text[64];
    if (cudaDriverGetVersion(&driver) == cudaSuccess && driver > 0)
        snprintf(driver_text, sizeof driver_text, "driver %d.%d", driver / 1000,
                 driver % 1000 / 10);
    else
        snprintf(driver_text, sizeof driver_text, "no NVIDIA driver");
    cudaGetLastError(); // a failed query must not leave a sticky error for later calls

    char cudnn_text[512];
    const char *soname = "libcudnn.so." WSML_VSTR(CUDNN_MAJOR);
    void *cudnn = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    size_t (*get_version)(void) = NULL;
    if (cudnn)
        *(void **)&get_version = dlsym(cudnn, "cudnnGetVersion");
    if (get_version) {
        size_t v = get_version();
        snprintf(cudnn_text, sizeof cudnn_text, "cuDNN %zu.%zu.%zu (built with %d.%d.%d)",
                 v / 10000, v / 100 % 100, v % 100, CUDNN_MAJOR, CUDNN_MINOR, CUDNN_PATCHLEVEL);
    } else {
        snprintf(cudnn_text, sizeof cudnn_text, "cuDNN %d.%d.%d built with, %s not loadable",
                 CUDNN_MAJOR, CUDNN_MINOR, CUDNN_PATCHLEVEL, soname);
    }
    if (cudnn)
        dlclose(cudnn);
    snprintf(buf, cap,
             "CUDA runtime %d.%d (static), %s; %s; cuBLAS built with %d.%d.%d (loaded by "
             "--backend cuda only)",
             runtime / 1000, runtime % 1000 / 10, driver_text, cudnn_text, CUBLAS_VER_MAJOR,
             CUBLAS_VER_MINOR, CUBLAS_VER_PATCH);
    return 0;
}
