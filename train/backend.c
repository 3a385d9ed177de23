// Backend selection by name (train/backend.h).
#include <string.h>

#include "train/backend.h"

int wsml_precision_parse(const char *name) {
    if (!name)
        return -1;
    if (!strcmp(name, "fp32"))
        return WSML_PRECISION_FP32;
    if (!strcmp(name, "tf32"))
        return WSML_PRECISION_TF32;
    if (!strcmp(name, "bf16"))
        return WSML_PRECISION_BF16;
    return -1;
}

const char *wsml_precision_name(wsml_precision p) {
    switch (p) {
    case WSML_PRECISION_FP32:
        return "fp32";
    case WSML_PRECISION_TF32:
        return "tf32";
    case WSML_PRECISION_BF16:
        return "bf16";
    default:
        return "default";
    }
}

int wsml_backend_create(const char *name, const wsml_backend_options *opt, wsml_backend **out,
                        wsml_err *err) {
    *out = NULL;
    if (!name || strcmp(name, "cpu") == 0) {
        // The cpu backend computes in float32; tf32 is accepted as fp32 (what TF32 tensor
        // cores approximate), so that one command line runs on either backend.
        if (opt && opt->precision == WSML_PRECISION_BF16)
            return wsml_errf(err, WSML_EARG,
                             "--precision bf16: the cpu backend computes in fp32 only (tf32 "
                             "runs as fp32 there); use --backend cuda for bf16, or --precision "
                             "fp32");
        int rc = wsml_backend_cpu_create(opt, out, err);
        if (rc == 0)
            (*out)->precision = "fp32";
        return rc;
    }
    if (strcmp(name, "cuda") == 0) {
        // Loaded on demand from libwsml-cuda.so (train/backend_cuda.c).
        return wsml_backend_cuda_create(opt, out, err);
    }
    return wsml_errf(err, WSML_EARG, "--backend %s: unknown backend (cpu, cuda)", name);
}

void wsml_backend_destroy(wsml_backend *be) {
    if (be)
        be->destroy(be);
}
