// wsml-train: trains a multi-label classifier from a store's partial labels with one of
// the losses of SPEC.md §2 and writes a run directory (train/trainer.h).
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "common/log.h"
#include "train/backend.h"
#include "train/trainer.h"

#define PROG "wsml-train"

static void usage(FILE *f) {
    fprintf(
        f,
        "Usage: wsml-train --store STORE --out RUNDIR [options]\n"
        "Trains a ResNet on a store's observed (partial) labels with one of the losses of\n"
        "Kim et al. (CVPR 2022) or its baselines; selects the epoch with the best val mAP\n"
        "(clean labels) and reports its test mAP. RUNDIR receives config.json, run.jsonl\n"
        "(one line per epoch), best.safetensors and last.safetensors (for --resume).\n"
        "\n"
        "Data and output:\n"
        "  --store STORE          a store made by wsml-ingest (required)\n"
        "  --out RUNDIR           run directory (required; created if missing)\n"
        "  --resume               continue RUNDIR's run from last.safetensors, exactly; the\n"
        "                         options default to config.json's and must not change it\n"
        "  --force                replace a run already in RUNDIR\n"
        "Loss (SPEC.md section 2):\n"
        "  --loss LOSS            full | an | an-ls | wan | epr | role | ll-r | ll-ct | ll-cp\n"
        "                         (default an)\n"
        "  --threshold KIND       relative | absolute: how ll-* choose large losses (relative)\n"
        "  --delta-rel PCT        relative: modified share grows by PCT PERCENT per epoch, as\n"
        "                         the reference's --delta_rel (default 0.2, paper grid 0.1..0.5)\n"
        "  --r0 R --delta-abs D   absolute: threshold R - (t-1)*D at epoch t (default 2, 0.1)\n"
        "  --ls X                 an-ls label smoothing (default 0.1)\n"
        "  --epr-k K              epr/role expected positives per image (default: Cole et al.'s\n"
        "                         value for voc/coco/nuswide/cub, else the train split's mean)\n"
        "  --reference-quirks     reproduce the public LargeLossMatters code (ll-cp runs as\n"
        "                         ll-ct; see SPEC.md) instead of the paper\n"
        "Model:\n"
        "  --arch ARCH            resnet18 | resnet34 | resnet50 | resnet101 (default resnet18)\n"
        "  --width-mult X         channel width multiplier (default 1 = torchvision)\n"
        "  --head HEAD            linear | boostlu (BoostLU, CVPR 2023; default linear)\n"
        "  --alpha A              BoostLU's boost of positive CAM values (default 5)\n"
        "  --pretrained FILE      ImageNet weights (safetensors, torchvision names); the fc\n"
        "                         head is re-initialised for the store's classes\n"
        "  --init CKPT            start from a whole network (head included), e.g. the\n"
        "                         best.safetensors of a --freeze-backbone run (LinearInit)\n"
        "  --freeze-backbone      train the head only (LinearInit, SPEC.md section 3)\n"
        "Optimisation:\n"
        "  --recipe paper         the paper's recipe (resnet50, batch 16, Adam, lr 1e-5, head\n"
        "                         lr x10, 10 epochs); other flags override it\n"
        "  --optimizer OPT        adam | sgd (sgd: momentum 0.9, weight decay 1e-3; default adam)\n"
        "  --lr LR                backbone learning rate (default 1e-4)\n"
        "  --lr-mult M            head learning rate = M * LR (default 10)\n"
        "  --epochs N             (default 10)      --batch B   (default 16)\n"
        "  --seed S               weights, epoch order, flips (default 1)\n"
        "  --no-flip              no random horizontal flip\n"
        "  --no-shuffle           store order every epoch\n"
        "  --no-early-stop        train all epochs (default: stop when val mAP is more than\n"
        "                         3 points below the best, as the reference)\n"
        "  --max-steps N          stop after N steps in total (saves last.safetensors)\n"
        "Execution:\n"
        "  --backend B            cpu | cuda (cuda needs a build with CUDA; default cpu)\n"
        "  --precision P          what convolutions and GEMMs compute in: tf32 (default;\n"
        "                         TF32 tensor cores, as PyTorch's allow_tf32) | fp32 | bf16\n"
        "                         (bfloat16 inputs, fp32 accumulation; weights, optimiser\n"
        "                         state and BN statistics stay fp32; cuda only). The cpu\n"
        "                         backend computes in fp32 (tf32 runs as fp32 there)\n"
        "  --threads N            compute threads (default: all CPUs); a resumed run keeps it\n"
        "  --workers N            loader threads (default 2; never changes the numbers)\n"
        "  --save-every N         also save last.safetensors every N steps (default 200;\n"
        "                         0 = at the end of each epoch only)\n"
        "  --trace                one run.jsonl line per step (loss, modified entries)\n"
        "  -q, --quiet            no progress bar or info lines\n"
        "  -h, --help             this help;  --version  the version\n"
        "\n"
        "Examples:\n"
        "  # the paper's recipe on PASCAL VOC (LL-Ct, relative threshold 0.2%% per epoch)\n"
        "  wsml-ingest --format voc --root data/VOCdevkit/VOC2012 --out stores/voc\n"
        "  wsml-train --store stores/voc --out runs/voc-llct --recipe paper \\\n"
        "             --pretrained resnet50-imagenet.safetensors --loss ll-ct --delta-rel 0.2\n"
        "  # the demo-size run: a small ResNet-18 on Fashion-MNIST mosaics, on the CPU\n"
        "  wsml-ingest --format fashion-mosaic --size 64 --out stores/mosaic\n"
        "  wsml-train --store stores/mosaic --out runs/mosaic-llcp --arch resnet18 \\\n"
        "             --width-mult 0.25 --loss ll-cp --delta-rel 1 --lr 1e-3 --epochs 8\n"
        "  # the same on a GPU in bf16\n"
        "  wsml-train --store stores/mosaic --out runs/mosaic-bf16 --arch resnet18 \\\n"
        "             --width-mult 0.25 --loss ll-cp --backend cuda --precision bf16\n"
        "  # continue a run that was killed\n"
        "  wsml-train --out runs/mosaic-llcp --resume\n"
        "\n"
        "Exit status: 0 ok (also after --max-steps), 1 runtime error (NaN loss, I/O, an\n"
        "interrupt: last.safetensors keeps the last good state), 2 usage error.\n");
}

static int usage_error(const char *msg, const char *arg) {
    fprintf(stderr, "%s: error: ", PROG);
    fprintf(stderr, msg, arg);
    fprintf(stderr, " (see --help)\n");
    return 2;
}

// ---- strict number parsing -------------------------------------------------------------------

static int parse_double(const char *s, double *v) {
    char *end = NULL;
    double x = strtod(s, &end);
    if (!*s || *end || !isfinite(x))
        return -1;
    *v = x;
    return 0;
}

static int parse_long(const char *s, long long lo, long long hi, long long *v) {
    char *end = NULL;
    long long x = strtoll(s, &end, 10);
    if (!*s || *end || x < lo || x > hi)
        return -1;
    *v = x;
    return 0;
}

enum {
    OPT_STORE = 256,
    OPT_OUT,
    OPT_RESUME,
    OPT_FORCE,
    OPT_LOSS,
    OPT_THRESHOLD,
    OPT_DELTA_REL,
    OPT_R0,
    OPT_DELTA_ABS,
    OPT_LS,
    OPT_EPR_K,
    OPT_QUIRKS,
    OPT_ARCH,
    OPT_WIDTH,
    OPT_HEAD,
    OPT_ALPHA,
    OPT_PRETRAINED,
    OPT_INIT,
    OPT_FREEZE,
    OPT_RECIPE,
    OPT_OPTIMIZER,
    OPT_LR,
    OPT_LR_MULT,
    OPT_EPOCHS,
    OPT_BATCH,
    OPT_SEED,
    OPT_NO_FLIP,
    OPT_NO_SHUFFLE,
    OPT_EARLY_STOP,
    OPT_NO_EARLY_STOP,
    OPT_MAX_STEPS,
    OPT_BACKEND,
    OPT_PRECISION,
    OPT_THREADS,
    OPT_WORKERS,
    OPT_SAVE_EVERY,
    OPT_TRACE,
    OPT_VERSION,
};

static const struct option LONG_OPTS[] = {
    {"store", required_argument, 0, OPT_STORE},
    {"out", required_argument, 0, OPT_OUT},
    {"resume", no_argument, 0, OPT_RESUME},
    {"force", no_argument, 0, OPT_FORCE},
    {"loss", required_argument, 0, OPT_LOSS},
    {"threshold", required_argument, 0, OPT_THRESHOLD},
    {"delta-rel", required_argument, 0, OPT_DELTA_REL},
    {"r0", required_argument, 0, OPT_R0},
    {"delta-abs", required_argument, 0, OPT_DELTA_ABS},
    {"ls", required_argument, 0, OPT_LS},
    {"epr-k", required_argument, 0, OPT_EPR_K},
    {"reference-quirks", no_argument, 0, OPT_QUIRKS},
    {"arch", required_argument, 0, OPT_ARCH},
    {"width-mult", required_argument, 0, OPT_WIDTH},
    {"head", required_argument, 0, OPT_HEAD},
    {"alpha", required_argument, 0, OPT_ALPHA},
    {"pretrained", required_argument, 0, OPT_PRETRAINED},
    {"init", required_argument, 0, OPT_INIT},
    {"freeze-backbone", no_argument, 0, OPT_FREEZE},
    {"recipe", required_argument, 0, OPT_RECIPE},
    {"optimizer", required_argument, 0, OPT_OPTIMIZER},
    {"lr", required_argument, 0, OPT_LR},
    {"lr-mult", required_argument, 0, OPT_LR_MULT},
    {"epochs", required_argument, 0, OPT_EPOCHS},
    {"batch", required_argument, 0, OPT_BATCH},
    {"seed", required_argument, 0, OPT_SEED},
    {"no-flip", no_argument, 0, OPT_NO_FLIP},
    {"no-shuffle", no_argument, 0, OPT_NO_SHUFFLE},
    {"early-stop", no_argument, 0, OPT_EARLY_STOP},
    {"no-early-stop", no_argument, 0, OPT_NO_EARLY_STOP},
    {"max-steps", required_argument, 0, OPT_MAX_STEPS},
    {"backend", required_argument, 0, OPT_BACKEND},
    {"precision", required_argument, 0, OPT_PRECISION},
    {"threads", required_argument, 0, OPT_THREADS},
    {"workers", required_argument, 0, OPT_WORKERS},
    {"save-every", required_argument, 0, OPT_SAVE_EVERY},
    {"trace", no_argument, 0, OPT_TRACE},
    {"quiet", no_argument, 0, 'q'},
    {"help", no_argument, 0, 'h'},
    {"version", no_argument, 0, OPT_VERSION},
    {0, 0, 0, 0},
};

static int set_str(char *dst, size_t cap, const char *flag, const char *v) {
    if (strlen(v) >= cap) {
        fprintf(stderr, "%s: error: %s: value too long (%zu bytes at most) (see --help)\n", PROG,
                flag, cap - 1);
        return 2;
    }
    snprintf(dst, cap, "%s", v);
    return 0;
}

// Applies argv's options on top of *o. Returns 0, 2 (usage error, printed), or -1 after
// --help/--version (printed; exit 0). apply_recipe = 0 skips --recipe's defaults (a
// resumed run's config.json already holds the resolved values).
static int parse_args(int argc, char **argv, wsml_train_opts *o, int apply_recipe) {
    // --recipe first, so that every other flag overrides it wherever it stands.
    for (int i = 1; i < argc && apply_recipe; i++) {
        const char *v = NULL;
        if (!strcmp(argv[i], "--recipe") && i + 1 < argc)
            v = argv[i + 1];
        if (!strncmp(argv[i], "--recipe=", 9))
            v = argv[i] + 9;
        if (v && !strcmp(v, "paper"))
            wsml_train_opts_paper(o);
    }
    optind = 1;
    opterr = 0;
    int c;
    double d;
    long long n;
    while ((c = getopt_long(argc, argv, ":qh", LONG_OPTS, NULL)) != -1) {
        const char *flag = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
        int rc = 0;
        switch (c) {
        case OPT_STORE:
            rc = set_str(o->store, sizeof o->store, "--store", optarg);
            break;
        case OPT_OUT:
            rc = set_str(o->out, sizeof o->out, "--out", optarg);
            break;
        case OPT_RESUME:
            o->resume = 1;
            break;
        case OPT_FORCE:
            o->force = 1;
            break;
        case OPT_LOSS:
            if ((n = wsml_loss_kind_parse(optarg)) < 0)
                return usage_error("--loss '%s': expected full, an, an-ls, wan, epr, role, "
                                   "ll-r, ll-ct or ll-cp",
                                   optarg);
            o->loss.kind = (wsml_loss_kind)n;
            break;
        case OPT_THRESHOLD:
            if ((n = wsml_threshold_kind_parse(optarg)) < 0)
                return usage_error("--threshold '%s': expected relative or absolute", optarg);
            o->loss.threshold = (wsml_threshold_kind)n;
            break;
        case OPT_DELTA_REL:
            if (parse_double(optarg, &d) < 0 || d < 0 || d > 100)
                return usage_error("--delta-rel '%s': expected a percentage in [0, 100]", optarg);
            o->loss.delta_rel_percent = d;
            break;
        case OPT_R0:
            if (parse_double(optarg, &d) < 0)
                return usage_error("--r0 '%s': expected a number", optarg);
            o->loss.r0 = d;
            break;
        case OPT_DELTA_ABS:
            if (parse_double(optarg, &d) < 0 || d < 0)
                return usage_error("--delta-abs '%s': expected a number >= 0", optarg);
            o->loss.delta_abs = d;
            break;
        case OPT_LS:
            if (parse_double(optarg, &d) < 0 || d < 0 || d > 1)
                return usage_error("--ls '%s': expected a number in [0, 1]", optarg);
            o->loss.ls_coef = d;
            break;
        case OPT_EPR_K:
            if (parse_double(optarg, &d) < 0 || d <= 0)
                return usage_error("--epr-k '%s': expected a positive number", optarg);
            o->loss.expected_num_pos = d;
            o->epr_k_given = 1;
            break;
        case OPT_QUIRKS:
            o->loss.reference_quirks = 1;
            break;
        case OPT_ARCH:
            if (strcmp(optarg, "resnet18") && strcmp(optarg, "resnet34") &&
                strcmp(optarg, "resnet50") && strcmp(optarg, "resnet101"))
                return usage_error("--arch '%s': expected resnet18, resnet34, resnet50 or "
                                   "resnet101",
                                   optarg);
            snprintf(o->arch, sizeof o->arch, "%s", optarg);
            break;
        case OPT_WIDTH:
            if (parse_double(optarg, &d) < 0 || d <= 0 || d > 4)
                return usage_error("--width-mult '%s': expected a number in (0, 4]", optarg);
            o->width_mult = d;
            break;
        case OPT_HEAD:
            if (strcmp(optarg, "linear") && strcmp(optarg, "boostlu"))
                return usage_error("--head '%s': expected linear or boostlu", optarg);
            snprintf(o->head, sizeof o->head, "%s", optarg);
            break;
        case OPT_ALPHA:
            if (parse_double(optarg, &d) < 0 || d <= 0)
                return usage_error("--alpha '%s': expected a positive number", optarg);
            o->alpha = d;
            break;
        case OPT_PRETRAINED:
            rc = set_str(o->pretrained, sizeof o->pretrained, "--pretrained", optarg);
            break;
        case OPT_INIT:
            rc = set_str(o->init, sizeof o->init, "--init", optarg);
            break;
        case OPT_FREEZE:
            o->freeze_backbone = 1;
            break;
        case OPT_RECIPE:
            if (strcmp(optarg, "paper"))
                return usage_error("--recipe '%s': the only recipe is 'paper'", optarg);
            break; // applied before the loop
        case OPT_OPTIMIZER:
            if ((n = wsml_optim_kind_parse(optarg)) < 0)
                return usage_error("--optimizer '%s': expected adam or sgd", optarg);
            o->optimizer = (wsml_optim_kind)n;
            break;
        case OPT_LR:
            if (parse_double(optarg, &d) < 0 || d <= 0)
                return usage_error("--lr '%s': expected a positive number", optarg);
            o->lr = d;
            break;
        case OPT_LR_MULT:
            if (parse_double(optarg, &d) < 0 || d <= 0)
                return usage_error("--lr-mult '%s': expected a positive number", optarg);
            o->lr_mult = d;
            break;
        case OPT_EPOCHS:
            if (parse_long(optarg, 1, 100000, &n) < 0)
                return usage_error("--epochs '%s': expected an integer in 1..100000", optarg);
            o->epochs = (int)n;
            break;
        case OPT_BATCH:
            if (parse_long(optarg, 1, 65536, &n) < 0)
                return usage_error("--batch '%s': expected an integer in 1..65536", optarg);
            o->batch = (int)n;
            break;
        case OPT_SEED:
            if (parse_long(optarg, 0, 4294967295LL, &n) < 0)
                return usage_error("--seed '%s': expected an integer in 0..4294967295", optarg);
            o->seed = (uint32_t)n;
            break;
        case OPT_NO_FLIP:
            o->flip = 0;
            break;
        case OPT_NO_SHUFFLE:
            o->shuffle = 0;
            break;
        case OPT_EARLY_STOP:
            o->early_stop = 1;
            break;
        case OPT_NO_EARLY_STOP:
            o->early_stop = 0;
            break;
        case OPT_MAX_STEPS:
            if (parse_long(optarg, 0, INT64_MAX, &n) < 0)
                return usage_error("--max-steps '%s': expected an integer >= 0", optarg);
            o->max_steps = n;
            break;
        case OPT_BACKEND:
            if (strcmp(optarg, "cpu") && strcmp(optarg, "cuda"))
                return usage_error("--backend '%s': expected cpu or cuda", optarg);
            snprintf(o->backend, sizeof o->backend, "%s", optarg);
            break;
        case OPT_PRECISION:
            if (wsml_precision_parse(optarg) < 0)
                return usage_error("--precision '%s': expected tf32, fp32 or bf16", optarg);
            snprintf(o->precision, sizeof o->precision, "%s", optarg);
            break;
        case OPT_THREADS:
            if (parse_long(optarg, 0, 1024, &n) < 0)
                return usage_error("--threads '%s': expected an integer in 0..1024 (0 = all "
                                   "CPUs)",
                                   optarg);
            o->threads = (int)n;
            break;
        case OPT_WORKERS:
            if (parse_long(optarg, 1, 256, &n) < 0)
                return usage_error("--workers '%s': expected an integer in 1..256", optarg);
            o->workers = (int)n;
            break;
        case OPT_SAVE_EVERY:
            if (parse_long(optarg, 0, 1LL << 40, &n) < 0 || n > 2147483647)
                return usage_error("--save-every '%s': expected an integer >= 0", optarg);
            o->save_every = (int)n;
            break;
        case OPT_TRACE:
            o->trace = 1;
            break;
        case 'q':
            o->quiet = 1;
            break;
        case 'h':
            usage(stdout);
            return -1;
        case OPT_VERSION:
            printf("%s %s\n", PROG, WSML_VERSION);
            return -1;
        case ':':
            return usage_error("%s: missing value", flag);
        default:
            return usage_error("unknown option '%s'", flag);
        }
        if (rc)
            return rc;
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    return 0;
}

// ---- signals ---------------------------------------------------------------------------------

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1; // the loop finishes the step, saves last.safetensors and stops
}

int main(int argc, char **argv) {
    wsml_set_prog(PROG);
    wsml_train_opts o;
    wsml_train_opts_default(&o);
    int rc = parse_args(argc, argv, &o, 1);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (o.resume && o.out[0]) {
        // Options default to the run's own (config.json); given flags must agree with
        // them (checked by the trainer) except the ones that do not change numbers.
        char path[WSML_PATH_MAX + 32], *text = NULL;
        size_t len = 0;
        wsml_err err;
        snprintf(path, sizeof path, "%s/config.json", o.out);
        if (wsml_read_file(path, &text, &len, &err) == 0) {
            wsml_train_opts recorded;
            wsml_train_opts_default(&recorded);
            recorded.trace = 0;
            if (wsml_train_opts_from_json(text, &recorded, &err) < 0) {
                free(text);
                wsml_err_prefix(&err, "%s", path);
                wsml_err_print(PROG, &err);
                return 1;
            }
            free(text);
            recorded.max_steps = 0; // a limit of one invocation, not of the run
            rc = parse_args(argc, argv, &recorded, 0);
            if (rc)
                return rc < 0 ? 0 : rc;
            o = recorded;
        }
    }
    wsml_set_quiet(o.quiet);
    wsml_err err;
    wsml_err_clear(&err);
    if (wsml_train_opts_check(&o, &err) < 0) {
        fprintf(stderr, "%s: error: %s (see --help)\n", PROG, err.msg);
        return 2;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND; // a second signal kills at once (checkpoints are atomic)
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    wsml_train_hooks hooks = {&g_stop};
    wsml_train_result res;
    rc = wsml_train_run(&o, &hooks, &res, &err);
    if (rc < 0) {
        wsml_err_print(PROG, &err);
        // Options the store or the build cannot serve are usage errors (exit 2), found
        // before any training; anything later is a runtime error.
        return rc == WSML_EARG && !res.started ? 2 : 1;
    }
    return 0;
}
