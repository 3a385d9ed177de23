// Backend selection by name (train/backend.h).
#include <string.h>

#include "train/backend.h"

int wsml_backend_create(const char *name, const wsml_backend_options *opt, wsml_backend **out,
                        wsml_err *err) {
    *out = NULL;
    if (!name || strcmp(name, "cpu") == 0) return wsml_backend_cpu_create(opt, out, err);
    if (strcmp(name, "cuda") == 0) {
        // Loaded on demand from libwsml-cuda.so (train/cuda_loader.c).
        return wsml_backend_cuda_create(opt, out, err);
    }
    return wsml_errf(err, WSML_EARG, "--backend %s: unknown backend (cpu, cuda)", name);
}

void wsml_backend_destroy(wsml_backend *be) {
    if (be) be->destroy(be);
}
