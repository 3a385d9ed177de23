// The cuda backend as libwsml-train sees it: the backend itself lives in its own shared
// library, build/libwsml-cuda.so (train/cuda/), opened with dlopen() only when
// --backend cuda is asked for. Linking cuDNN and cuBLAS into every executable would cost
// each process ~1.5 s of start-up (the dynamic linker relocating libcublasLt), CPU runs
// included. These wrappers give wsml_backend_cuda_create (train/backend.h) and the
// functions of train/cuda/backend_cuda.h to C callers; everything else goes through the
// backend's table.
//
// Where the library is looked up: wsml_cuda_library (common/sysinfo.h).
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/sysinfo.h"
#include "train/backend.h"
#include "train/cuda/backend_cuda.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static void *lib;
static char load_error[1024];
static int (*p_create)(const wsml_backend_options *, wsml_backend **, wsml_err *);
static int (*p_device_count)(void);
static int (*p_describe)(int, char *, size_t);

static void load(void) {
    lib = wsml_cuda_library(load_error, sizeof load_error, NULL, 0);
    if (!lib)
        return;
    *(void **)&p_create = dlsym(lib, "wsml_backend_cuda_create");
    *(void **)&p_device_count = dlsym(lib, "wsml_cuda_device_count");
    *(void **)&p_describe = dlsym(lib, "wsml_cuda_describe");
    if (!p_create || !p_device_count || !p_describe) {
        snprintf(load_error, sizeof load_error, "libwsml-cuda.so lacks an entry point");
        p_create = NULL;
    }
}

static int loaded(void) {
    pthread_once(&once, load);
    return p_create != NULL;
}

int wsml_backend_cuda_create(const wsml_backend_options *opt, wsml_backend **out, wsml_err *err) {
    *out = NULL;
    if (!loaded())
        return wsml_errf(err, WSML_EARG,
                         "--backend cuda: the CUDA backend library could not be loaded (%s); build "
                         "with nvcc available (CUDA_HOME) so that libwsml-cuda.so sits next to the "
                         "executables, or set WSML_CUDA_LIB",
                         load_error[0] ? load_error : "libwsml-cuda.so not found");
    return p_create(opt, out, err);
}

int wsml_cuda_device_count(void) {
    return loaded() ? p_device_count() : 0;
}

int wsml_cuda_describe(int device, char *buf, size_t cap) {
    if (!loaded()) {
        snprintf(buf, cap, "CUDA backend not loaded: %s", load_error[0] ? load_error : "not found");
        return -1;
    }
    return p_describe(device, buf, cap);
}
