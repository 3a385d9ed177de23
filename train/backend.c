// Backend selection by name (train/backend.h).
#include <string.h>

#include "common/log.h"
#include "common/sysinfo.h"
#include "train/backend.h"
#include "train/cuda/backend_cuda.h"

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

// The cpu backend computes in float32; tf32 is accepted as fp32 (what TF32 tensor cores
// approximate), so that one command line runs on either backend.
static int cpu_create(const wsml_backend_options *opt, wsml_backend **out, wsml_err *err) {
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

// Every backend by name (a new one adds a line here and to WSML_NUM_BACKENDS). cuda is
// loaded on demand from libwsml-cuda.so (train/backend_cuda.c).
static int cuda_describe(int device, char *buf, size_t cap) {
    char line[1024];
    int rc = wsml_cuda_describe(device, line, sizeof line) ? -1 : 0;
    if (!strncmp(line, "GPU ", 4)) // some failures name the device already
        snprintf(buf, cap, "%s", line);
    else
        snprintf(buf, cap, "GPU %d: %s", device, line);
    return rc;
}

static const struct {
    const char *name;
    int (*create)(const wsml_backend_options *opt, wsml_backend **out, wsml_err *err);
    int (*describe)(int device, char *buf, size_t cap); // NULL: nothing to say
    int bf16;                                           // computes in bf16
} BACKENDS[WSML_NUM_BACKENDS] = {{"cpu", cpu_create, NULL, 0},
                                 {"cuda", wsml_backend_cuda_create, cuda_describe, 1}};

int wsml_backend_parse(const char *name) {
    for (int i = 0; name && i < WSML_NUM_BACKENDS; i++)
        if (!strcmp(name, BACKENDS[i].name))
            return i;
    return -1;
}

const char *wsml_backend_name(int index) {
    return index >= 0 && index < WSML_NUM_BACKENDS ? BACKENDS[index].name : NULL;
}

const char *wsml_backend_names(void) {
    static char names[64];
    if (!names[0])
        for (int i = 0, n = 0; i < WSML_NUM_BACKENDS && n >= 0 && (size_t)n < sizeof names; i++)
            n += snprintf(names + n, sizeof names - (size_t)n, "%s%s", i ? ", " : "",
                          BACKENDS[i].name);
    return names;
}

int wsml_backend_supports(const char *name, wsml_precision p) {
    int i = wsml_backend_parse(name);
    return i >= 0 && (p != WSML_PRECISION_BF16 || BACKENDS[i].bf16);
}

int wsml_backend_describe(const char *name, int device, char *buf, size_t cap) {
    int i = wsml_backend_parse(name);
    if (cap)
        buf[0] = '\0';
    if (i < 0 || !BACKENDS[i].describe)
        return 1;
    return BACKENDS[i].describe(device, buf, cap);
}

int wsml_backend_create(const char *name, const wsml_backend_options *opt, wsml_backend **out,
                        wsml_err *err) {
    *out = NULL;
    int i = name ? wsml_backend_parse(name) : 0;
    if (i < 0)
        return wsml_errf(err, WSML_EARG, "--backend %s: unknown backend (%s)", name,
                         wsml_backend_names());
    return BACKENDS[i].create(opt, out, err);
}

void wsml_backend_destroy(wsml_backend *be) {
    if (be)
        be->destroy(be);
}

int wsml_backend_pick_device(const char *backend, int requested, int *device, wsml_err *err) {
    return wsml_backend_pick_device_at(backend, requested, wsml_local_rank(), device, err);
}

int wsml_backend_pick_device_at(const char *backend, int requested, int local_rank, int *device,
                                wsml_err *err) {
    int cuda = backend && !strcmp(backend, "cuda");
    *device = requested >= 0 ? requested : local_rank > 0 ? local_rank : 0;
    if (!cuda) {
        if (requested >= 0)
            wsml_info("--device %d is ignored on the cpu backend", requested);
        return 0;
    }
    // 0 devices (or no libwsml-cuda.so): the backend's creation says why
    int count = wsml_cuda_device_count();
    if (count > 0 && requested < 0)
        *device %= count;
    if (count > 0 && *device >= count)
        return wsml_errf(err, WSML_EARG,
                         "--device %d: this process sees %d CUDA device(s) (0..%d, numbered "
                         "after CUDA_VISIBLE_DEVICES)",
                         *device, count, count - 1);
    return 0;
}
