// wsml-gpubench: times wsml's training step on synthetic data, the `train-gpu` row of
// docs/benchmarks.md (bench/gpu.sh runs it next to PyTorch on the same GPU).
//
// One step = what wsml-train does per batch, minus the data loader: the batch's copy from
// pinned host memory to the GPU (the loader's buffers are pinned; bench/gpu_torch.py
// copies its batch from pinned memory every step too, so both sides pay the same
// transfer), forward in train mode, binary cross-entropy gradient of the logits on the
// host (all labels observed), zero_grad, backward, Adam update of the two parameter
// groups (backbone lr, head 10x lr, docs/methods.md §3) — on the device (the backend's optim_step)
// or, with --optimizer host, on the host with the parameter/gradient copies. Steps are timed with
// the host clock after the step's final synchronisation (forward and backward already end with
// one); the median of --steps steps after --warmup untimed ones is reported.
//
// Built by `bash bench/gpu.sh --prepare` (not by the GNUmakefile: it is a benchmark,
// linked only against libwsml-train/common so that it runs on the GPU machine, which has
// no libvips); prints one JSON object per run on stdout.
//
//   WSML_PRECISION=tf32 wsml-gpubench --batch 16 --size 448 --arch resnet50
//   wsml-gpubench --describe          # the GPU and library versions, then exit
#include <getopt.h>
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cli.h"
#include "common/log.h"
#include "common/rng.h"
#include "train/backend.h"
#include "train/cuda/backend_cuda.h"
#include "train/net.h"
#include "train/optim.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static int fail(const char *what, const wsml_err *err) {
    fprintf(stderr, "wsml-gpubench: error: %s: %s\n", what, err->msg);
    return 1;
}

static void usage(FILE *f) {
    fprintf(f, "Usage: wsml-gpubench [options]\n"
               "Times wsml's training step (forward, BCE, backward, Adam) on random data.\n"
               "  --backend B      cuda (default) | cpu\n"
               "  --arch A         resnet18|34|50|101 (default resnet50)\n"
               "  --size N         input N x N (default 448)\n"
               "  --batch N        images per step (default 16)\n"
               "  --classes C      output classes (default 20)\n"
               "  --steps N        timed steps (default 10)   --warmup N  untimed (default 3)\n"
               "  --optimizer O    device (default; cuda only) | host (copies to the host) | none\n"
               "  --threads N      cpu backend threads (default all)\n"
               "  --describe       print the GPU and library versions and exit\n"
               "Environment: WSML_PRECISION=tf32|fp32|bf16, WSML_CUDNN_ALGO=heuristic|find.\n"
               "Example: WSML_PRECISION=fp32 wsml-gpubench --batch 64\n");
}

int main(int argc, char **argv) {
    const char *backend = "cuda", *arch = "resnet50", *optimizer = "device";
    int size = 448, batch = 16, classes = 20, steps = 10, warmup = 3, threads = 0, describe = 0;
    static const struct option longopts[] = {
        {"backend", required_argument, 0, 'b'}, {"arch", required_argument, 0, 'a'},
        {"size", required_argument, 0, 's'},    {"batch", required_argument, 0, 'n'},
        {"classes", required_argument, 0, 'c'}, {"steps", required_argument, 0, 't'},
        {"warmup", required_argument, 0, 'w'},  {"optimizer", required_argument, 0, 'o'},
        {"threads", required_argument, 0, 'j'}, {"describe", no_argument, 0, 'd'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    wsml_set_prog("wsml-gpubench");
    opterr = 0; // our own message for an unknown option
    // numeric options: name, target, range
    struct {
        int ch;
        const char *name;
        int *v, lo, hi;
    } nums[] = {{'s', "--size", &size, 32, 8192},        {'n', "--batch", &batch, 1, 65536},
                {'c', "--classes", &classes, 1, 100000}, {'t', "--steps", &steps, 1, 100000},
                {'w', "--warmup", &warmup, 0, 100000},   {'j', "--threads", &threads, 0, 1024}};
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        size_t k = 0;
        while (k < sizeof nums / sizeof nums[0] && nums[k].ch != ch)
            k++;
        if (k < sizeof nums / sizeof nums[0]) {
            if (wsml_parse_int(optarg, nums[k].lo, nums[k].hi, nums[k].v))
                return wsml_usage_error("%s '%s': expected an integer in %d..%d", nums[k].name,
                                        optarg, nums[k].lo, nums[k].hi);
            continue;
        }
        switch (ch) {
        case 'b':
            backend = optarg;
            break;
        case 'a':
            arch = optarg;
            break;
        case 'o':
            optimizer = optarg;
            break;
        case 'd':
            describe = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            return wsml_usage_error("unknown option or missing value: '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return wsml_usage_error("unexpected argument '%s'", argv[optind]);
    if (strcmp(optimizer, "device") && strcmp(optimizer, "host") && strcmp(optimizer, "none"))
        return wsml_usage_error("--optimizer '%s': expected device, host or none", optimizer);
    if (strcmp(backend, "cuda") && strcmp(backend, "cpu"))
        return wsml_usage_error("--backend '%s': expected cuda or cpu", backend);
    if (wsml_arch_parse(arch) < 0)
        return wsml_usage_error("--arch '%s': expected resnet18, resnet34, resnet50 or resnet101",
                                arch);
    int cuda = !strcmp(backend, "cuda");
    if (!cuda && !strcmp(optimizer, "device"))
        optimizer = "host";
    char line[1024] = "";
    if (cuda && wsml_cuda_describe(0, line, sizeof line) != 0) {
        fprintf(stderr, "wsml-gpubench: error: %s\n", line);
        return 1;
    }
    if (describe) {
        printf("%s\n", line);
        return 0;
    }

    wsml_err err;
    wsml_backend *be = NULL;
    wsml_backend_options bo = {.num_threads = threads, .device = 0, .workspace_bytes = 0};
    if (wsml_backend_create(backend, &bo, &be, &err))
        return fail("backend", &err);
    wsml_net_config cfg;
    wsml_net_config_default(&cfg);
    cfg.arch = (wsml_arch)wsml_arch_parse(arch);
    cfg.num_classes = classes;
    cfg.height = cfg.width = size;
    cfg.max_batch = batch;
    wsml_net *net = NULL;
    double t_create = now();
    if (wsml_net_create(&cfg, be, &net, &err))
        return fail("network", &err);
    t_create = now() - t_create;
    wsml_net_init(net, 1);

    size_t np = wsml_net_num_params(net), nbb = wsml_net_num_backbone_params(net);
    wsml_optim opt;
    wsml_optim_config ocfg;
    wsml_optim_config_default(&ocfg, WSML_OPTIM_ADAM);
    if (wsml_optim_init(&opt, &ocfg, &err) ||
        wsml_optim_add_group(&opt, "backbone", nbb, 1e-5, &err) < 0 ||
        wsml_optim_add_group(&opt, "head", np - nbb, 1e-4, &err) < 0)
        return fail("optimizer", &err);
    float *m = NULL, *v = NULL, *host_p = NULL, *host_g = NULL;
    int device_opt = !strcmp(optimizer, "device"), host_opt = !strcmp(optimizer, "host");
    if (device_opt) {
        m = be->alloc(be, np * sizeof(float));
        v = be->alloc(be, np * sizeof(float));
        if (!m || !v || be->zero(be, m, np * sizeof(float)) || be->zero(be, v, np * sizeof(float)))
            return fail("optimizer state", &be->err);
    }
    if (host_opt && !be->host_memory) {
        host_p = malloc(np * sizeof(float));
        host_g = malloc(np * sizeof(float));
        if (!host_p || !host_g)
            return fprintf(stderr, "wsml-gpubench: out of memory\n"), 1;
    }

    size_t in_count = (size_t)batch * size * size * 3;
    // pinned on the cuda backend (as wsml-train's loader buffers), plain memory on the cpu
    float *input = be->host_alloc ? be->host_alloc(be, in_count * sizeof(float))
                                  : malloc(in_count * sizeof(float));
    float *labels = malloc((size_t)batch * classes * sizeof(float));
    float *dlogits = malloc((size_t)batch * classes * sizeof(float));
    double *t_step = calloc((size_t)steps, sizeof(double));
    double *t_fb = calloc((size_t)steps, sizeof(double));
    if (!input || !labels || !dlogits || !t_step || !t_fb)
        return fprintf(stderr, "wsml-gpubench: out of memory\n"), 1;
    wsml_rng rng;
    wsml_rng_seed(&rng, 2);
    for (size_t i = 0; i < in_count; i++)
        input[i] = (float)wsml_rng_normal(&rng);
    for (int i = 0; i < batch * classes; i++)
        labels[i] = wsml_rng_double(&rng) < 0.2;

    double first_loss = 0, last_loss = 0;
    for (int s = 0; s < warmup + steps; s++) {
        double t0 = now();
        if (wsml_net_forward(net, input, batch, WSML_NET_TRAIN, &err))
            return fail("forward", &err);
        const float *z = wsml_net_logits(net);
        double loss = 0;
        for (int i = 0; i < batch * classes; i++) {
            double zi = z[i], y = labels[i];
            loss += fmax(zi, 0) - zi * y + log1p(exp(-fabs(zi)));
            dlogits[i] = (float)((1 / (1 + exp(-zi)) - y) / (batch * classes));
        }
        loss /= batch * classes;
        if (!isfinite(loss)) {
            fprintf(stderr, "wsml-gpubench: error: step %d: loss is %g\n", s, loss);
            return 1;
        }
        if (s == 0)
            first_loss = loss;
        last_loss = loss;
        if (wsml_net_zero_grad(net, &err))
            return fail("zero_grad", &err);
        if (wsml_net_backward(net, dlogits, &err))
            return fail("backward", &err);
        double t1 = now();
        float *params = wsml_net_params(net), *grads = wsml_net_grads(net);
        if (device_opt) {
            if (be->optim_step(be, &opt, 0, params, grads, m, v) ||
                be->optim_step(be, &opt, 1, params + nbb, grads + nbb, m + nbb, v + nbb) ||
                be->synchronize(be))
                return fail("optimizer", &be->err);
        } else if (host_opt) {
            float *p = params, *g = grads;
            if (host_p) {
                if (be->copy_to_host(be, host_p, params, np * sizeof(float)) ||
                    be->copy_to_host(be, host_g, grads, np * sizeof(float)))
                    return fail("optimizer copies", &be->err);
                p = host_p, g = host_g;
            }
            wsml_optim_step(&opt, 0, p, g);
            wsml_optim_step(&opt, 1, p + nbb, g + nbb);
            if (host_p && be->copy_to_device(be, params, host_p, np * sizeof(float)))
                return fail("optimizer copies", &be->err);
        }
        double t2 = now();
        if (s >= warmup) {
            t_step[s - warmup] = t2 - t0;
            t_fb[s - warmup] = t1 - t0;
        }
    }
    double step_s = median(t_step, steps), fb_s = median(t_fb, steps);
    wsml_backend_memory mem;
    memset(&mem, 0, sizeof mem);
    if (cuda && be->memory_info(be, &mem))
        return fail("memory", &be->err);
    struct mallinfo2 mi = mallinfo2();
    const char *prec = cuda ? mem.precision : "fp32";
    printf("{\"tool\": \"wsml\", \"backend\": \"%s\", \"precision\": \"%s\", \"algo\": \"%s\", "
           "\"arch\": \"%s\", \"size\": %d, \"batch\": %d, \"classes\": %d, \"optimizer\": \"%s\", "
           "\"warmup\": %d, \"steps\": %d, \"step_ms\": %.3f, \"fwd_bwd_ms\": %.3f, "
           "\"images_per_s\": %.2f, \"create_s\": %.2f, \"first_loss\": %.6f, "
           "\"last_loss\": %.6f, \"peak_alloc_mib\": %.1f, \"device_used_mib\": %.1f, "
           "\"device_total_mib\": %.1f, \"host_heap_mib\": %.1f, \"input\": \"%s\", "
           "\"device\": \"%s\"}\n",
           be->name, prec, cuda ? mem.algo_search : "-", arch, size, batch, classes, optimizer,
           warmup, steps, step_s * 1e3, fb_s * 1e3, batch / step_s, t_create, first_loss, last_loss,
           mem.peak_allocated_bytes / 1048576.0, mem.device_used_bytes / 1048576.0,
           mem.device_total_bytes / 1048576.0, (mi.arena + mi.hblkhd) / 1048576.0,
           be->host_alloc ? "pinned host memory, copied every step" : "host memory",
           cuda ? line : "cpu");
    if (device_opt) {
        be->free(be, m);
        be->free(be, v);
    }
    if (be->host_alloc)
        be->host_free(be, input);
    else
        free(input);
    wsml_optim_free(&opt);
    wsml_net_free(net);
    wsml_backend_destroy(be);
    free(labels), free(dlogits), free(t_step), free(t_fb), free(host_p), free(host_g);
    return 0;
}
