// wsml-train's options (train/trainer.h): ONE table, OPTIONS below, with each option's
// flag, field, type, range, default, config.json key, help text and whether it changes
// the numbers of a run. Everything else is derived from it: the defaults, getopt's long
// options, --help, the range errors of parsing and of wsml_train_opts_check, config.json
// (both ways) and resume's same-run check. Adding an option = adding its field to
// wsml_train_opts and one entry here.
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli.h"
#include "train/backend.h"
#include "train/net.h"
#include "train/trainer.h"

// ---- choices ---------------------------------------------------------------------------------

// The names an option accepts, from the module that owns them: parse gives the value
// (or -1), name the value's name for first <= value < first + count.
typedef struct {
    int (*parse)(const char *name);
    const char *(*name)(int value);
    int first, count;
} choice_list;

static const char *loss_name(int v) {
    return wsml_loss_kind_name((wsml_loss_kind)v);
}
static const char *threshold_name(int v) {
    return wsml_threshold_kind_name((wsml_threshold_kind)v);
}
static const char *optim_name(int v) {
    return wsml_optim_kind_name((wsml_optim_kind)v);
}
static const char *arch_name(int v) {
    return wsml_arch_name((wsml_arch)v);
}
static const char *head_name(int v) {
    return wsml_head_name((wsml_head_kind)v);
}
static const char *precision_name(int v) {
    return wsml_precision_name((wsml_precision)v);
}
static int recipe_parse(const char *name) {
    return strcmp(name, "paper") ? -1 : 0;
}
static const char *recipe_name(int v) {
    (void)v;
    return "paper";
}

static const choice_list LOSSES = {wsml_loss_kind_parse, loss_name, 0, WSML_LOSS_NUM_KINDS};
static const choice_list THRESHOLDS = {wsml_threshold_kind_parse, threshold_name, 0,
                                       WSML_THRESHOLD_NUM_KINDS};
static const choice_list OPTIMIZERS = {wsml_optim_kind_parse, optim_name, 0, WSML_OPTIM_NUM_KINDS};
static const choice_list ARCHS = {wsml_arch_parse, arch_name, 0, WSML_NUM_ARCHS};
static const choice_list HEADS = {wsml_head_parse, head_name, 0, WSML_NUM_HEADS};
static const choice_list BACKENDS = {wsml_backend_parse, wsml_backend_name, 0, WSML_NUM_BACKENDS};
// in help order: tf32 (the default) first
static const choice_list PRECISIONS = {wsml_precision_parse, precision_name, WSML_PRECISION_FP32,
                                       3};
static const choice_list RECIPES = {recipe_parse, recipe_name, 0, 1};

// ---- the table ---------------------------------------------------------------------------

typedef enum {
    T_STRING, // char[size]; with choices: one of their names
    T_ENUM,   // an enum field holding a choices value (config.json: its name)
    T_DOUBLE, // finite, in [lo, hi] (lo excluded when lo_open)
    T_INT,    // int in [ilo, ihi]
    T_I64,    // int64_t in [ilo, ihi]
    T_U32,    // uint32_t in [ilo, ihi]
    T_BOOL,   // int 0/1, set by --NAME (BOOL_ON) and/or cleared by --no-NAME (BOOL_OFF)
} opt_type;

enum { BOOL_ON = 1, BOOL_OFF = 2 };
enum { S_DATA, S_LOSS, S_MODEL, S_OPTIM, S_EXEC, NUM_SECTIONS };
static const char *const SECTION_TITLES[NUM_SECTIONS] = {
    "Data and output:", "Loss (docs/methods.md section 2):", "Model:", "Optimisation:",
    "Execution:"};

typedef struct {
    const char *name; // "--lr": the flag, and how messages name the option
    const char *json; // config.json key (NULL: not recorded)
    opt_type type;
    size_t offset, size; // the field in wsml_train_opts
    const choice_list *choices;
    double lo, hi; // T_DOUBLE's range
    int lo_open;
    int64_t ilo, ihi;  // integers' range
    int bool_forms;    // T_BOOL: BOOL_ON | BOOL_OFF (default BOOL_ON)
    int has_default;   // 0: the field keeps wsml_loss_config_default's value (or 0)
    double def;        // default of numbers, enums and bools
    const char *def_s; // default of strings
    int numerics;      // changes the numbers: a resumed run must keep it
    int required;      // T_STRING that must not be empty
    size_t given;      // !0: offset + 1 of an int set to 1 when the flag is given, and
                       // the range is checked only then
    char short_opt;    // 'q' for -q
    int section;
    const char *metavar; // --help: "--lr LR"
    const char *help;    // --help text: "\n" continues on the next line; {choices} and
                         // {default} stand for the choices' names and the default
} opt_spec;

#define F(field) offsetof(wsml_train_opts, field), sizeof(((wsml_train_opts *)0)->field)
#define POSITIVE .lo = 0, .hi = HUGE_VAL, .lo_open = 1

static const opt_spec OPTIONS[] = {
    // in config.json's order
    {"--store", "store", T_STRING, F(store), .required = 1, .section = S_DATA, .metavar = "STORE",
     .help = "a store made by wsml-ingest (required)"},
    {"--out", "out", T_STRING, F(out), .required = 1, .section = S_DATA, .metavar = "RUNDIR",
     .help = "run directory (required; created if missing)"},
    {"--resume", NULL, T_BOOL, F(resume), .section = S_DATA,
     .help = "continue RUNDIR's run from last.safetensors, exactly; the\n"
             "options default to config.json's and must not change it"},
    {"--force", NULL, T_BOOL, F(force), .section = S_DATA,
     .help = "replace a run already in RUNDIR"},
    {"--arch", "arch", T_STRING, F(arch), &ARCHS, .has_default = 1, .def_s = "resnet18",
     .numerics = 1, .section = S_MODEL, .metavar = "ARCH", .help = "{choices} (default {default})"},
    {"--width-mult", "width_mult", T_DOUBLE, F(width_mult), .lo = 0, .hi = 4, .lo_open = 1,
     .has_default = 1, .def = 1, .numerics = 1, .section = S_MODEL, .metavar = "X",
     .help = "channel width multiplier (default {default} = torchvision)"},
    {"--head", "head", T_STRING, F(head), &HEADS, .has_default = 1, .def_s = "linear",
     .numerics = 1, .section = S_MODEL, .metavar = "HEAD",
     .help = "{choices} (BoostLU, CVPR 2023; default {default})"},
    {"--alpha", "alpha", T_DOUBLE, F(alpha), POSITIVE, .has_default = 1, .def = 5, .numerics = 1,
     .section = S_MODEL, .metavar = "A",
     .help = "BoostLU's boost of positive CAM values (default {default})"},
    {"--pretrained", "pretrained", T_STRING, F(pretrained), .numerics = 1, .section = S_MODEL,
     .metavar = "FILE",
     .help = "ImageNet weights (safetensors, torchvision names); the fc\n"
             "head is re-initialised for the store's classes"},
    {"--init", "init", T_STRING, F(init), .numerics = 1, .section = S_MODEL, .metavar = "CKPT",
     .help = "start from a whole network (head included), e.g. the\n"
             "best.safetensors of a --freeze-backbone run (LinearInit; ROLE\n"
             "also takes over its label estimates)"},
    {"--freeze-backbone", "freeze_backbone", T_BOOL, F(freeze_backbone), .numerics = 1,
     .section = S_MODEL,
     .help = "train the head only, the backbone in eval mode (BN statistics\n"
             "frozen), as LinearInit's first phase (docs/methods.md section 3);\n"
             "e.g. --freeze-backbone --pretrained W --no-flip --epochs 25, then\n"
             "--init RUNDIR/best.safetensors --epochs 10"},
    {"--loss", "loss", T_ENUM, F(loss.kind), &LOSSES, .numerics = 1, .section = S_LOSS,
     .metavar = "LOSS", .help = "{choices}\n(default {default})"},
    {"--threshold", "threshold", T_ENUM, F(loss.threshold), &THRESHOLDS, .numerics = 1,
     .section = S_LOSS, .metavar = "KIND",
     .help = "{choices}: how ll-* choose large losses ({default})"},
    {"--delta-rel", "delta_rel", T_DOUBLE, F(loss.delta_rel_percent), .lo = 0, .hi = 100,
     .numerics = 1, .section = S_LOSS, .metavar = "PCT",
     .help = "relative: modified share grows by PCT PERCENT per epoch, as\n"
             "the reference's --delta_rel (default {default}, paper grid 0.1..0.5)"},
    {"--r0", "r0", T_DOUBLE, F(loss.r0), .lo = -HUGE_VAL, .hi = HUGE_VAL, .numerics = 1,
     .section = S_LOSS, .metavar = "R",
     .help = "absolute: threshold R - (t-1)*D at epoch t (default {default})"},
    {"--delta-abs", "delta_abs", T_DOUBLE, F(loss.delta_abs), .lo = 0, .hi = HUGE_VAL,
     .numerics = 1, .section = S_LOSS, .metavar = "D",
     .help = "absolute: the threshold's decrease D per epoch (default {default})"},
    {"--ls", "ls", T_DOUBLE, F(loss.ls_coef), .lo = 0, .hi = 1, .numerics = 1, .section = S_LOSS,
     .metavar = "X", .help = "an-ls label smoothing (default {default})"},
    {"--epr-k", "epr_k", T_DOUBLE, F(loss.expected_num_pos), POSITIVE, .numerics = 1,
     .given = offsetof(wsml_train_opts, epr_k_given) + 1, .section = S_LOSS, .metavar = "K",
     .help = "epr/role expected positives per image (default: Cole et al.'s\n"
             "value for the store's dataset as its info records it: voc/coco/\n"
             "cub formats, or an ingest --name like nuswide; else the train\n"
             "split's mean, with a warning)"},
    {NULL, "epr_k_given", T_BOOL, F(epr_k_given), .help = NULL}, // set by --epr-k
    {"--reference-quirks", "reference_quirks", T_BOOL, F(loss.reference_quirks), .numerics = 1,
     .section = S_LOSS,
     .help = "reproduce the public LargeLossMatters code (ll-cp runs as\n"
             "ll-ct; see docs/methods.md) instead of the paper"},
    {"--optimizer", "optimizer", T_ENUM, F(optimizer), &OPTIMIZERS, .has_default = 1,
     .def = WSML_OPTIM_ADAM, .numerics = 1, .section = S_OPTIM, .metavar = "OPT",
     .help = "{choices} (sgd: momentum 0.9, weight decay 1e-3; default {default})"},
    {"--lr", "lr", T_DOUBLE, F(lr), POSITIVE, .has_default = 1, .def = 1e-4, .numerics = 1,
     .section = S_OPTIM, .metavar = "LR", .help = "backbone learning rate (default {default})"},
    {"--lr-mult", "lr_mult", T_DOUBLE, F(lr_mult), POSITIVE, .has_default = 1, .def = 10,
     .numerics = 1, .section = S_OPTIM, .metavar = "M",
     .help = "head learning rate = M * LR (default {default})"},
    {"--epochs", "epochs", T_INT, F(epochs), .ilo = 1, .ihi = 100000, .has_default = 1, .def = 10,
     .section = S_OPTIM, .metavar = "N", .help = "epochs to train (default {default})"},
    {"--batch", "batch", T_INT, F(batch), .ilo = 1, .ihi = 65536, .has_default = 1, .def = 16,
     .numerics = 1, .section = S_OPTIM, .metavar = "B",
     .help = "batch size (default {default}); per process under mpirun/srun:\n"
             "the global batch is processes x B"},
    {"--seed", "seed", T_U32, F(seed), .ilo = 0, .ihi = UINT32_MAX, .has_default = 1, .def = 1,
     .numerics = 1, .section = S_OPTIM, .metavar = "S",
     .help = "weights, epoch order, flips (default {default})"},
    {"--flip", "flip", T_BOOL, F(flip), .bool_forms = BOOL_OFF, .has_default = 1, .def = 1,
     .numerics = 1, .section = S_OPTIM, .help = "no random horizontal flip"},
    {"--shuffle", "shuffle", T_BOOL, F(shuffle), .bool_forms = BOOL_OFF, .has_default = 1, .def = 1,
     .numerics = 1, .section = S_OPTIM, .help = "store order every epoch"},
    {"--early-stop", "early_stop", T_BOOL, F(early_stop), .bool_forms = BOOL_ON | BOOL_OFF,
     .has_default = 1, .def = 1, .numerics = 1, .section = S_OPTIM,
     .help = "train all epochs (default: stop when val mAP is more than\n"
             "3 points below the best, as the reference)"},
    {"--max-steps", "max_steps", T_I64, F(max_steps), .ilo = 0, .ihi = INT64_MAX,
     .section = S_OPTIM, .metavar = "N",
     .help = "stop after N steps in total (saves last.safetensors)"},
    {"--backend", "backend", T_STRING, F(backend), &BACKENDS, .has_default = 1, .def_s = "cpu",
     .numerics = 1, .section = S_EXEC, .metavar = "B",
     .help = "{choices} (cuda needs a build with CUDA; default {default})"},
    {"--precision", "precision", T_STRING, F(precision), &PRECISIONS, .has_default = 1,
     .def_s = "tf32", .numerics = 1, .section = S_EXEC, .metavar = "P",
     .help = "what convolutions and GEMMs compute in: {choices}\n"
             "(default {default}: TF32 tensor cores, as PyTorch's allow_tf32;\n"
             "bf16: bfloat16 inputs, fp32 accumulation, while weights,\n"
             "optimiser state and BN statistics stay fp32; cuda only).\n"
             "The cpu backend computes in fp32 (tf32 runs as fp32 there)"},
    {"--threads", "threads", T_INT, F(threads), .ilo = 0, .ihi = 1024, .numerics = 1,
     .section = S_EXEC, .metavar = "N",
     .help = "compute threads (default: the CPUs this process may use:\ntaskset, Slurm, cgroups); "
             "a resumed run keeps it"},
    {"--device", "device", T_INT, F(device), .ilo = 0, .ihi = 4095, .has_default = 1, .def = -1,
     .given = offsetof(wsml_train_opts, device_given) + 1, .section = S_EXEC, .metavar = "N",
     .help = "CUDA device, numbered after CUDA_VISIBLE_DEVICES (default: the\n"
             "MPI/Slurm local rank modulo the visible devices, else 0;\n"
             "recorded, and ignored, on the cpu backend), e.g. --device 1"},
    {"--workers", "workers", T_INT, F(workers), .ilo = 1, .ihi = 256, .has_default = 1, .def = 2,
     .section = S_EXEC, .metavar = "N",
     .help = "loader threads (default {default}; never changes the numbers)"},
    {"--save-every", "save_every", T_INT, F(save_every), .ilo = 0, .ihi = INT_MAX, .has_default = 1,
     .def = 200, .section = S_EXEC, .metavar = "N",
     .help = "also save last.safetensors every N steps (default {default};\n"
             "0 = at the end of each epoch only)"},
    {"--sync-bn", "sync_bn", T_BOOL, F(sync_bn), .numerics = 1, .section = S_EXEC,
     .help = "data parallel (mpirun/srun): BatchNorm statistics over the global\n"
             "batch, so N processes x --batch B train as 1 x N*B (default: each\n"
             "process's own share, as PyTorch DDP), e.g.\n"
             "mpirun -n 4 wsml-train ... --batch 4 --sync-bn"},
    {NULL, "world_size", T_INT, F(world_size), .ilo = 1, .ihi = 1 << 24, .has_default = 1, .def = 1,
     .help = NULL}, // set from the processes (a resume must keep it)
    {"--trace", "trace", T_BOOL, F(trace), .section = S_EXEC,
     .help = "one run.jsonl line per step (loss, modified entries)"},
    {"--recipe", "recipe", T_STRING, F(recipe), &RECIPES, .section = S_OPTIM, .metavar = "paper",
     .help = "the paper's recipe (resnet50, batch 16, Adam, lr 1e-5, head\n"
             "lr x10, 10 epochs), applied before the other flags"},
    {"--quiet", NULL, T_BOOL, F(quiet), .short_opt = 'q', .section = S_EXEC,
     .help = "no progress bar or info lines"},
};
#define NUM_OPTIONS (sizeof OPTIONS / sizeof *OPTIONS)
#undef F
#undef POSITIVE

// ---- fields ------------------------------------------------------------------------------

static void *field(wsml_train_opts *o, const opt_spec *s) {
    return (char *)o + s->offset;
}
static const void *cfield(const wsml_train_opts *o, const opt_spec *s) {
    return (const char *)o + s->offset;
}

// Integers and enums as int64 (enums are int-sized).
static int64_t get_int(const wsml_train_opts *o, const opt_spec *s) {
    const void *p = cfield(o, s);
    switch (s->type) {
    case T_I64:
        return *(const int64_t *)p;
    case T_U32:
        return *(const uint32_t *)p;
    default:
        return *(const int *)p;
    }
}

static void set_int(wsml_train_opts *o, const opt_spec *s, int64_t v) {
    void *p = field(o, s);
    switch (s->type) {
    case T_I64:
        *(int64_t *)p = v;
        break;
    case T_U32:
        *(uint32_t *)p = (uint32_t)v;
        break;
    default:
        *(int *)p = (int)v;
    }
}

static int is_integer(const opt_spec *s) {
    return s->type == T_INT || s->type == T_I64 || s->type == T_U32;
}

// "resnet18, resnet34, resnet50 or resnet101" (sep ", ") or "a | b | c" (sep " | ").
static void choice_names(const choice_list *c, const char *sep, int final_or, char *buf,
                         size_t cap) {
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < c->count && len < cap; i++) {
        const char *join = i == 0 ? "" : i == c->count - 1 && final_or ? " or " : sep;
        len += (size_t)snprintf(buf + len, cap - len, "%s%s", join, c->name(c->first + i));
    }
}

// What the option accepts, for errors: "an integer in 1..65536", "a positive number", ...
static void expected(const opt_spec *s, char *buf, size_t cap) {
    if (s->choices)
        choice_names(s->choices, ", ", 1, buf, cap);
    else if (is_integer(s) && s->ihi == INT64_MAX)
        snprintf(buf, cap, "an integer >= %lld", (long long)s->ilo);
    else if (is_integer(s))
        snprintf(buf, cap, "an integer in %lld..%lld", (long long)s->ilo, (long long)s->ihi);
    else if (s->lo == 0 && s->lo_open && isinf(s->hi))
        snprintf(buf, cap, "a positive number");
    else if (isinf(s->lo) && isinf(s->hi))
        snprintf(buf, cap, "a number");
    else if (isinf(s->hi))
        snprintf(buf, cap, "a number >= %g", s->lo);
    else
        snprintf(buf, cap, "a number in %c%g, %g]", s->lo_open ? '(' : '[', s->lo, s->hi);
}

static int in_range(const opt_spec *s, double d) {
    return isfinite(d) && (s->lo_open ? d > s->lo : d >= s->lo) && d <= s->hi;
}

// Sets the option from text (a flag's value or nothing for a bool). 0, or WSML_EARG:
// "FLAG 'VALUE': expected ...".
static int set_from_text(wsml_train_opts *o, const opt_spec *s, const char *v, int on,
                         wsml_err *err) {
    char want[160];
    void *p = field(o, s);
    int64_t i = 0;
    double d = 0;
    switch (s->type) {
    case T_BOOL:
        *(int *)p = on;
        return 0;
    case T_STRING:
        if (s->choices && s->choices->parse(v) < 0)
            break;
        if (strlen(v) >= s->size)
            return wsml_errf(err, WSML_EARG, "%s: value too long (%zu bytes at most)", s->name,
                             s->size - 1);
        snprintf(p, s->size, "%s", v);
        return 0;
    case T_ENUM:
        if ((i = s->choices->parse(v)) < 0)
            break;
        *(int *)p = (int)i;
        return 0;
    case T_DOUBLE:
        if (wsml_parse_double(v, -HUGE_VAL, HUGE_VAL, &d) || !in_range(s, d))
            break;
        *(double *)p = d;
        if (s->given)
            *(int *)((char *)o + s->given - 1) = 1;
        return 0;
    default:
        if (wsml_parse_i64(v, s->ilo, s->ihi, &i))
            break;
        set_int(o, s, i);
        if (s->given)
            *(int *)((char *)o + s->given - 1) = 1;
        return 0;
    }
    expected(s, want, sizeof want);
    return wsml_errf(err, WSML_EARG, "%s '%s': expected %s", s->name, v, want);
}

// ---- defaults, the paper's recipe, checks -------------------------------------------------

void wsml_train_opts_default(wsml_train_opts *o) {
    memset(o, 0, sizeof *o);
    wsml_loss_config_default(&o->loss);
    for (size_t k = 0; k < NUM_OPTIONS; k++) {
        const opt_spec *s = &OPTIONS[k];
        if (!s->has_default)
            continue;
        if (s->type == T_STRING)
            snprintf(field(o, s), s->size, "%s", s->def_s);
        else if (s->type == T_DOUBLE)
            *(double *)field(o, s) = s->def;
        else
            set_int(o, s, (int64_t)s->def);
    }
}

void wsml_train_opts_paper(wsml_train_opts *o) {
    // docs/methods.md §3: ResNet-50 (ImageNet weights via --pretrained), 448x448 (the store's
    // size), flip, batch 16, Adam, lr 1e-5, head 10x, 10 epochs, best-val selection,
    // the reference's early stop.
    snprintf(o->arch, sizeof o->arch, "resnet50");
    o->width_mult = 1.0;
    o->optimizer = WSML_OPTIM_ADAM;
    o->lr = 1e-5;
    o->lr_mult = 10.0;
    o->epochs = 10;
    o->batch = 16;
    o->flip = 1;
    o->shuffle = 1;
    o->early_stop = 1;
    snprintf(o->recipe, sizeof o->recipe, "paper");
}

// Each option's own rule (required, choices, range), FLAG VALUE naming it.
static int check_option(const wsml_train_opts *o, const opt_spec *s, wsml_err *err) {
    char want[160], value[64] = "";
    int ok = 1;
    if (s->given && !*(const int *)((const char *)o + s->given - 1))
        return 0;
    if (s->type == T_STRING) {
        const char *v = cfield(o, s);
        if (s->required && !v[0])
            return wsml_errf(err, WSML_EARG, "%s is required", s->name);
        ok = !s->choices || (!v[0] && !s->has_default) || s->choices->parse(v) >= 0;
        snprintf(value, sizeof value, "%s", v);
    } else if (s->type == T_ENUM) {
        int64_t v = get_int(o, s);
        ok = v >= s->choices->first && v < s->choices->first + s->choices->count;
        snprintf(value, sizeof value, "%lld", (long long)v);
    } else if (s->type == T_DOUBLE) {
        double d = *(const double *)cfield(o, s);
        ok = in_range(s, d);
        snprintf(value, sizeof value, "%g", d);
    } else if (is_integer(s)) {
        int64_t v = get_int(o, s);
        ok = v >= s->ilo && v <= s->ihi;
        snprintf(value, sizeof value, "%lld", (long long)v);
    }
    if (ok)
        return 0;
    expected(s, want, sizeof want);
    return wsml_errf(err, WSML_EARG, "%s %s: expected %s", s->name, value, want);
}

int wsml_train_opts_check(const wsml_train_opts *o, wsml_err *err) {
    for (size_t k = 0; k < NUM_OPTIONS; k++) {
        int rc = check_option(o, &OPTIONS[k], err);
        if (rc < 0)
            return rc;
    }
    // combinations
    if (o->pretrained[0] && o->init[0])
        return wsml_errf(err, WSML_EARG,
                         "--pretrained and --init exclude each other (--init holds a whole "
                         "network, head included)");
    if (o->freeze_backbone && !o->pretrained[0] && !o->init[0])
        return wsml_errf(err, WSML_EARG,
                         "--freeze-backbone needs trained backbone weights: give --init CKPT "
                         "or --pretrained FILE");
    if (wsml_backend_parse(o->backend) >= 0 &&
        !wsml_backend_supports(o->backend, (wsml_precision)wsml_precision_parse(o->precision)))
        return wsml_errf(err, WSML_EARG,
                         "--precision bf16 needs --backend cuda (the cpu backend computes in "
                         "fp32; tf32 runs as fp32 there)");
    if (o->resume && o->force)
        return wsml_errf(err, WSML_EARG, "--resume and --force exclude each other");
    if (o->loss.reference_quirks && !wsml_loss_is_large_loss(o->loss.kind))
        return wsml_errf(err, WSML_EARG,
                         "--reference-quirks only changes ll-r, ll-ct and ll-cp (got --loss %s)",
                         wsml_loss_kind_name(o->loss.kind));
    // The loss module's own rules (e.g. ls, Δrel for the ll-* losses); EPR/ROLE's k may
    // still come from the store, and C is checked again with the store.
    wsml_loss_config loss = o->loss;
    if (!o->epr_k_given)
        loss.expected_num_pos = 1.0;
    return wsml_loss_config_check(&loss, 2, err);
}

// ---- config.json "options" -----------------------------------------------------------

char *wsml_train_opts_to_json(const wsml_train_opts *o) {
    json_t *j = json_object();
    for (size_t k = 0; k < NUM_OPTIONS; k++) {
        const opt_spec *s = &OPTIONS[k];
        const void *p = cfield(o, s);
        json_t *v;
        if (!s->json)
            continue;
        if (s->type == T_STRING)
            v = json_string(p);
        else if (s->type == T_ENUM)
            v = json_string(s->choices->name(*(const int *)p));
        else if (s->type == T_DOUBLE)
            v = json_real(*(const double *)p);
        else if (s->type == T_BOOL)
            v = json_boolean(*(const int *)p);
        else
            v = json_integer(get_int(o, s));
        json_object_set_new(j, s->json, v);
    }
    // %.17g keeps every double exact through a round trip.
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    json_decref(j);
    return text;
}

// One recorded option from config.json into o (a missing key keeps o's value).
static int from_json_value(json_t *v, const opt_spec *s, wsml_train_opts *o, wsml_err *err) {
    void *p = field(o, s);
    switch (s->type) {
    case T_STRING:
        if (!json_is_string(v) || strlen(json_string_value(v)) >= s->size)
            return wsml_errf(err, WSML_EFORMAT,
                             "config.json: \"%s\" must be a string (< %zu bytes)", s->json,
                             s->size);
        snprintf(p, s->size, "%s", json_string_value(v));
        return 0;
    case T_ENUM: {
        int e = json_is_string(v) ? s->choices->parse(json_string_value(v)) : -1;
        if (e < 0)
            return wsml_errf(err, WSML_EFORMAT, "config.json: unknown %s \"%s\"", s->json,
                             json_is_string(v) ? json_string_value(v) : "(not a string)");
        *(int *)p = e;
        return 0;
    }
    case T_DOUBLE:
        if (!json_is_number(v))
            return wsml_errf(err, WSML_EFORMAT, "config.json: \"%s\" must be a number", s->json);
        *(double *)p = json_number_value(v);
        return 0;
    case T_BOOL:
        if (!json_is_boolean(v))
            return wsml_errf(err, WSML_EFORMAT, "config.json: \"%s\" must be true or false",
                             s->json);
        *(int *)p = json_is_true(v);
        return 0;
    default: {
        // the type's own range (the option's is checked with the others)
        int64_t lo = s->type == T_I64 ? INT64_MIN : s->type == T_U32 ? 0 : INT_MIN;
        int64_t hi = s->type == T_I64 ? INT64_MAX : s->type == T_U32 ? UINT32_MAX : INT_MAX;
        json_int_t x = json_is_integer(v) ? json_integer_value(v) : 0;
        if (!json_is_integer(v) || x < lo || x > hi)
            return wsml_errf(err, WSML_EFORMAT,
                             "config.json: \"%s\" must be an integer in %lld..%lld", s->json,
                             (long long)lo, (long long)hi);
        set_int(o, s, x);
        return 0;
    }
    }
}

int wsml_train_opts_from_json(const char *json_text, wsml_train_opts *o, wsml_err *err) {
    json_error_t jerr;
    json_t *j = json_loads(json_text, 0, &jerr);
    if (!j || !json_is_object(j)) {
        if (j)
            json_decref(j);
        return wsml_errf(err, WSML_EFORMAT, "config.json: line %d: %s", jerr.line, jerr.text);
    }
    // into a copy, so that an error leaves o as it was
    wsml_train_opts got = *o;
    int rc = 0;
    for (size_t k = 0; k < NUM_OPTIONS && rc == 0; k++) {
        json_t *v = OPTIONS[k].json ? json_object_get(j, OPTIONS[k].json) : NULL;
        if (v)
            rc = from_json_value(v, &OPTIONS[k], &got, err);
    }
    json_decref(j);
    if (rc == 0)
        *o = got;
    return rc;
}

// The shortest %g form of d that reads back as d ("1e-05", not "1.0000000000000001e-05").
static const char *shortest(double d, char *buf, size_t cap) {
    for (int digits = 6; digits <= 17; digits++) {
        snprintf(buf, cap, "%.*g", digits, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    return buf;
}

int wsml_train_opts_same_run(const wsml_train_opts *a, const wsml_train_opts *b, wsml_err *err) {
    const char *hint = "; a resumed run needs the values it started with (config.json)";
    for (size_t k = 0; k < NUM_OPTIONS; k++) {
        const opt_spec *s = &OPTIONS[k];
        if (!s->numerics)
            continue;
        const void *pa = cfield(a, s), *pb = cfield(b, s);
        if (s->type == T_STRING && strcmp(pa, pb))
            return wsml_errf(err, WSML_EARG, "%s '%s' differs from the run's '%s'%s", s->name,
                             (const char *)pb, (const char *)pa, hint);
        if (s->type == T_ENUM && *(const int *)pa != *(const int *)pb)
            return wsml_errf(err, WSML_EARG, "%s %s differs from the run's %s%s", s->name,
                             s->choices->name(*(const int *)pb), s->choices->name(*(const int *)pa),
                             hint);
        double da = s->type == T_DOUBLE ? *(const double *)pa : (double)get_int(a, s);
        double db = s->type == T_DOUBLE ? *(const double *)pb : (double)get_int(b, s);
        if (s->type != T_STRING && s->type != T_ENUM && da != db) {
            char va[32], vb[32];
            return wsml_errf(err, WSML_EARG, "%s %s differs from the run's %s%s", s->name,
                             shortest(db, vb, sizeof vb), shortest(da, va, sizeof va), hint);
        }
    }
    return 0;
}

// ---- the command line ------------------------------------------------------------------

// getopt_long's val of an option: 2·k + 1 for --NAME, 2·k + 2 for --no-NAME, where k is
// the option's index; 'h', 'q' and VERSION_VAL outside that range.
#define VAL_BASE 256
#define VERSION_VAL 255

static int forms(const opt_spec *s) {
    return s->type != T_BOOL ? BOOL_ON : s->bool_forms ? s->bool_forms : BOOL_ON;
}

int wsml_train_opts_parse(int argc, char **argv, wsml_train_opts *o, int apply_recipe,
                          wsml_err *err) {
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
    struct option longopts[2 * NUM_OPTIONS + 3];
    char no_names[NUM_OPTIONS][48];
    size_t n = 0;
    for (size_t k = 0; k < NUM_OPTIONS; k++) {
        const opt_spec *s = &OPTIONS[k];
        if (!s->name)
            continue;
        int has_arg = s->type == T_BOOL ? no_argument : required_argument;
        if (forms(s) & BOOL_ON)
            longopts[n++] = (struct option){s->name + 2, has_arg, 0, VAL_BASE + 2 * (int)k};
        if (forms(s) & BOOL_OFF) {
            snprintf(no_names[k], sizeof no_names[k], "no-%s", s->name + 2);
            longopts[n++] = (struct option){no_names[k], no_argument, 0, VAL_BASE + 2 * (int)k + 1};
        }
    }
    longopts[n++] = (struct option){"help", no_argument, 0, 'h'};
    longopts[n++] = (struct option){"version", no_argument, 0, VERSION_VAL};
    longopts[n] = (struct option){0, 0, 0, 0};

    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":qh", longopts, NULL)) != -1) {
        const char *flag = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
        if (c == 'h')
            return WSML_OPTS_HELP;
        if (c == VERSION_VAL)
            return WSML_OPTS_VERSION;
        if (c == ':')
            return wsml_errf(err, WSML_EARG, "%s: missing value", flag);
        const opt_spec *s = NULL;
        int on = 1;
        if (c >= VAL_BASE && c < VAL_BASE + 2 * (int)NUM_OPTIONS) {
            s = &OPTIONS[(c - VAL_BASE) / 2];
            on = (c - VAL_BASE) % 2 == 0;
        }
        for (size_t k = 0; k < NUM_OPTIONS && !s && c > 0 && c < VERSION_VAL; k++)
            if (OPTIONS[k].short_opt == c)
                s = &OPTIONS[k];
        if (!s)
            return wsml_errf(err, WSML_EARG, "unknown option '%s'", flag);
        int rc = set_from_text(o, s, optarg, on, err);
        if (rc < 0)
            return rc;
    }
    if (optind < argc)
        return wsml_errf(err, WSML_EARG, "unexpected argument '%s'", argv[optind]);
    return 0;
}

// ---- --help ----------------------------------------------------------------------------

// s->help with {choices} and {default} filled in, into buf.
static void help_text(const opt_spec *s, const wsml_train_opts *def, char *buf, size_t cap) {
    size_t len = 0;
    for (const char *h = s->help; *h && len + 1 < cap;) {
        char sub[160] = "";
        if (!strncmp(h, "{choices}", 9) && s->choices) {
            choice_names(s->choices, " | ", 0, sub, sizeof sub);
            h += 9;
        } else if (!strncmp(h, "{default}", 9)) {
            const void *p = cfield(def, s);
            if (s->type == T_STRING)
                snprintf(sub, sizeof sub, "%s", (const char *)p);
            else if (s->type == T_ENUM)
                snprintf(sub, sizeof sub, "%s", s->choices->name(*(const int *)p));
            else if (s->type == T_DOUBLE)
                snprintf(sub, sizeof sub, "%g", *(const double *)p);
            else
                snprintf(sub, sizeof sub, "%lld", (long long)get_int(def, s));
            h += 9;
        } else {
            sub[0] = *h++;
            sub[1] = 0;
        }
        len += (size_t)snprintf(buf + len, cap - len, "%s", sub);
    }
}

void wsml_train_opts_help(FILE *f) {
    wsml_train_opts def;
    wsml_train_opts_default(&def);
    for (int section = 0; section < NUM_SECTIONS; section++) {
        fprintf(f, "%s\n", SECTION_TITLES[section]);
        for (size_t k = 0; k < NUM_OPTIONS; k++) {
            const opt_spec *s = &OPTIONS[k];
            if (!s->name || !s->help || s->section != section)
                continue;
            char left[64], text[1024];
            if (s->short_opt)
                snprintf(left, sizeof left, "-%c, %s", s->short_opt, s->name);
            else if (forms(s) == BOOL_OFF)
                snprintf(left, sizeof left, "--no-%s", s->name + 2);
            else if (s->type == T_BOOL)
                snprintf(left, sizeof left, "%s", s->name);
            else
                snprintf(left, sizeof left, "%s %s", s->name, s->metavar);
            if (forms(s) == (BOOL_ON | BOOL_OFF))
                snprintf(left, sizeof left, "--no-%s", s->name + 2); // the default is on
            help_text(s, &def, text, sizeof text);
            fprintf(f, "  %-22s ", left);
            for (const char *t = text; *t; t++) {
                fputc(*t, f);
                if (*t == '\n')
                    fprintf(f, "%25s", "");
            }
            fputc('\n', f);
        }
    }
    fprintf(f,
            "  -h, --help             this help;  --version  versions of wsml and its libraries\n");
}
