// train/trainer_opts.c: config.json's options round-trip exactly, a resumed run refuses
// every option that changes its numbers and accepts the ones that do not, and the
// option checks name the flag. (The training loop itself is tested end to end:
// tests/e2e/train_*.sh.)
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/trainer.h"

static void non_default(wsml_train_opts *o) {
    wsml_train_opts_default(o);
    snprintf(o->store, sizeof o->store, "/data/stores/voc \"quoted\"");
    snprintf(o->out, sizeof o->out, "runs/x");
    snprintf(o->arch, sizeof o->arch, "resnet50");
    o->width_mult = 0.3; // not exact in binary: must survive the text round trip
    snprintf(o->head, sizeof o->head, "boostlu");
    o->alpha = 3.7;
    snprintf(o->init, sizeof o->init, "li/best.safetensors");
    o->freeze_backbone = 1;
    o->loss.kind = WSML_LOSS_LL_CP;
    o->loss.threshold = WSML_THRESHOLD_ABSOLUTE;
    o->loss.delta_rel_percent = 0.1 + 0.2;
    o->loss.r0 = 1.5;
    o->loss.delta_abs = 0.15;
    o->loss.ls_coef = 0.05;
    o->loss.expected_num_pos = 2.9;
    o->epr_k_given = 1;
    o->loss.reference_quirks = 1;
    o->optimizer = WSML_OPTIM_SGD;
    o->lr = 3.25e-5;
    o->lr_mult = 7;
    o->epochs = 25;
    o->batch = 12;
    o->seed = 4000000000u;
    o->flip = 0;
    o->shuffle = 0;
    o->early_stop = 0;
    o->max_steps = 123;
    snprintf(o->backend, sizeof o->backend, "cuda");
    o->threads = 3;
    o->workers = 5;
    o->save_every = 17;
    o->trace = 1;
    snprintf(o->recipe, sizeof o->recipe, "paper");
}

Test(trainer, options_round_trip_through_config_json) {
    wsml_train_opts a, b;
    non_default(&a);
    char *json = wsml_train_opts_to_json(&a);
    cr_assert(json);
    wsml_train_opts_default(&b);
    wsml_err err;
    cr_assert_eq(wsml_train_opts_from_json(json, &b, &err), 0, "%s", err.msg);
    free(json);
    cr_assert_eq(wsml_train_opts_same_run(&a, &b, &err), 0, "%s", err.msg);
    // the fields same_run does not look at
    cr_assert_str_eq(b.store, a.store);
    cr_assert_str_eq(b.out, a.out);
    cr_assert_str_eq(b.recipe, a.recipe);
    cr_assert_eq(b.epochs, a.epochs);
    cr_assert_eq(b.max_steps, a.max_steps);
    cr_assert_eq(b.workers, a.workers);
    cr_assert_eq(b.save_every, a.save_every);
    cr_assert_eq(b.trace, a.trace);
    cr_assert_eq(b.epr_k_given, a.epr_k_given);
    // doubles exactly, not approximately
    cr_assert(b.width_mult == a.width_mult &&
              b.loss.delta_rel_percent == a.loss.delta_rel_percent && b.lr == a.lr);
}

// Changes the option named by flags[i] of the resume cases.
static const char *const RESUME_FLAGS[] = {
    "--lr",
    "--lr-mult",
    "--threads",
    "--seed",
    "--batch",
    "--loss",
    "--threshold",
    "--delta-rel",
    "--r0",
    "--delta-abs",
    "--width-mult",
    "--arch",
    "--head",
    "--alpha",
    "--optimizer",
    "--flip",
    "--shuffle",
    "--early-stop",
    "--backend",
    "--init",
    "--freeze-backbone",
    "--reference-quirks",
    "--epr-k",
};
static void resume_change(int i, wsml_train_opts *o) {
    switch (i) {
    case 0:
        o->lr *= 2;
        break;
    case 1:
        o->lr_mult = 1;
        break;
    case 2:
        o->threads = 4;
        break;
    case 3:
        o->seed = 2;
        break;
    case 4:
        o->batch = 32;
        break;
    case 5:
        o->loss.kind = WSML_LOSS_LL_CT;
        break;
    case 6:
        o->loss.threshold = WSML_THRESHOLD_RELATIVE;
        break;
    case 7:
        o->loss.delta_rel_percent = 0.3;
        break;
    case 8:
        o->loss.r0 = 2;
        break;
    case 9:
        o->loss.delta_abs = 0.1;
        break;
    case 10:
        o->width_mult = 0.5;
        break;
    case 11:
        snprintf(o->arch, sizeof o->arch, "resnet18");
        break;
    case 12:
        snprintf(o->head, sizeof o->head, "linear");
        break;
    case 13:
        o->alpha = 5;
        break;
    case 14:
        o->optimizer = WSML_OPTIM_ADAM;
        break;
    case 15:
        o->flip = 1;
        break;
    case 16:
        o->shuffle = 1;
        break;
    case 17:
        o->early_stop = 1;
        break;
    case 18:
        snprintf(o->backend, sizeof o->backend, "cpu");
        break;
    case 19:
        o->init[0] = 0;
        break;
    case 20:
        o->freeze_backbone = 0;
        break;
    case 21:
        o->loss.reference_quirks = 0;
        break;
    case 22:
        o->loss.expected_num_pos = 1.5;
        break;
    }
}

Test(trainer, resume_refuses_changed_numerics) {
    wsml_train_opts a, b;
    wsml_err err;
    for (int i = 0; i < (int)(sizeof RESUME_FLAGS / sizeof *RESUME_FLAGS); i++) {
        non_default(&a);
        b = a;
        resume_change(i, &b);
        cr_assert_eq(wsml_train_opts_same_run(&a, &b, &err), WSML_EARG, "%s not refused",
                     RESUME_FLAGS[i]);
        cr_assert(strstr(err.msg, RESUME_FLAGS[i]), "message for %s: %s", RESUME_FLAGS[i], err.msg);
    }
    // What a resumed run may change: how long, how often it saves, its loader threads,
    // whether it traces, where it is.
    non_default(&a);
    b = a;
    b.epochs = 40;
    b.max_steps = 0;
    b.workers = 1;
    b.save_every = 0;
    b.trace = 0;
    b.quiet = 1;
    snprintf(b.out, sizeof b.out, "elsewhere");
    snprintf(b.store, sizeof b.store, "moved/store");
    cr_assert_eq(wsml_train_opts_same_run(&a, &b, &err), 0, "%s", err.msg);
}

static const char *const CHECK_FLAGS[] = {
    "--store",
    "--out",
    "--arch",
    "--width-mult",
    "--head",
    "--pretrained",
    "--freeze-backbone",
    "--lr",
    "--epochs",
    "--batch",
    "--threads",
    "--resume",
    "--delta-rel",
    "--reference-quirks",
};
static void check_change(int i, wsml_train_opts *o) {
    switch (i) {
    case 0:
        o->store[0] = 0;
        break;
    case 1:
        o->out[0] = 0;
        break;
    case 2:
        snprintf(o->arch, sizeof o->arch, "vgg16");
        break;
    case 3:
        o->width_mult = 0;
        break;
    case 4:
        snprintf(o->head, sizeof o->head, "mlp");
        break;
    case 5:
        snprintf(o->pretrained, sizeof o->pretrained, "a.safetensors");
        snprintf(o->init, sizeof o->init, "b.safetensors");
        break;
    case 6:
        o->freeze_backbone = 1;
        break;
    case 7:
        o->lr = -1;
        break;
    case 8:
        o->epochs = 0;
        break;
    case 9:
        o->batch = 0;
        break;
    case 10:
        o->threads = -1;
        break;
    case 11:
        o->resume = o->force = 1;
        break;
    case 12:
        o->loss.kind = WSML_LOSS_LL_R;
        o->loss.delta_rel_percent = 101;
        break;
    case 13:
        o->loss.reference_quirks = 1;
        break;
    }
}

Test(trainer, option_checks_name_the_flag) {
    wsml_train_opts o;
    wsml_err err;
    for (int i = 0; i < (int)(sizeof CHECK_FLAGS / sizeof *CHECK_FLAGS); i++) {
        wsml_train_opts_default(&o);
        snprintf(o.store, sizeof o.store, "s");
        snprintf(o.out, sizeof o.out, "r");
        cr_assert_eq(wsml_train_opts_check(&o, &err), 0, "%s", err.msg);
        check_change(i, &o);
        cr_assert_eq(wsml_train_opts_check(&o, &err), WSML_EARG, "%s not refused", CHECK_FLAGS[i]);
        cr_assert(strstr(err.msg, CHECK_FLAGS[i]), "message for %s: %s", CHECK_FLAGS[i], err.msg);
    }
}

Test(trainer, paper_recipe_is_spec_section_3) {
    wsml_train_opts o;
    wsml_train_opts_default(&o);
    wsml_train_opts_paper(&o);
    cr_assert_str_eq(o.arch, "resnet50");
    cr_assert_eq(o.batch, 16);
    cr_assert_eq(o.optimizer, WSML_OPTIM_ADAM);
    cr_assert(o.lr == 1e-5 && o.lr_mult == 10);
    cr_assert_eq(o.epochs, 10);
    cr_assert(o.flip && o.early_stop);
}

// ---- the command line (the option table's getopt) -------------------------------------------

static int parse(wsml_train_opts *o, wsml_err *err, int argc, const char **argv) {
    return wsml_train_opts_parse(argc, (char **)argv, o, 1, err);
}

Test(trainer, command_line_sets_every_kind_of_option) {
    const char *argv[] = {"wsml-train",
                          "--store",
                          "s",
                          "--out=r",
                          "--loss",
                          "ll-cp",
                          "--threshold",
                          "absolute",
                          "--r0",
                          "-1.5",
                          "--delta-abs",
                          "0.25",
                          "--epr-k",
                          "2.5",
                          "--arch",
                          "resnet34",
                          "--width-mult",
                          "0.5",
                          "--head",
                          "boostlu",
                          "--optimizer",
                          "sgd",
                          "--lr",
                          "3e-4",
                          "--seed",
                          "4294967295",
                          "--no-flip",
                          "--no-early-stop",
                          "--early-stop",
                          "--max-steps",
                          "9000000000",
                          "--backend",
                          "cuda",
                          "--precision",
                          "bf16",
                          "--threads",
                          "3",
                          "-q",
                          "--trace",
                          "--freeze-backbone",
                          "--resume"};
    wsml_train_opts o;
    wsml_train_opts_default(&o);
    wsml_err err;
    cr_assert_eq(parse(&o, &err, sizeof argv / sizeof *argv, argv), 0, "%s", err.msg);
    cr_assert_str_eq(o.store, "s");
    cr_assert_str_eq(o.out, "r");
    cr_assert_eq(o.loss.kind, WSML_LOSS_LL_CP);
    cr_assert_eq(o.loss.threshold, WSML_THRESHOLD_ABSOLUTE);
    cr_assert(o.loss.r0 == -1.5 && o.loss.delta_abs == 0.25);
    cr_assert(o.loss.expected_num_pos == 2.5 && o.epr_k_given);
    cr_assert_str_eq(o.arch, "resnet34");
    cr_assert(o.width_mult == 0.5);
    cr_assert_str_eq(o.head, "boostlu");
    cr_assert_eq(o.optimizer, WSML_OPTIM_SGD);
    cr_assert(o.lr == 3e-4);
    cr_assert_eq(o.seed, 4294967295u);
    cr_assert(!o.flip && o.shuffle && o.early_stop); // the last of --no-/--early-stop wins
    cr_assert_eq(o.max_steps, 9000000000LL);
    cr_assert_str_eq(o.backend, "cuda");
    cr_assert_str_eq(o.precision, "bf16");
    cr_assert_eq(o.threads, 3);
    cr_assert(o.quiet && o.trace && o.freeze_backbone && o.resume && !o.force);
    // untouched options keep their defaults
    cr_assert_eq(o.batch, 16);
    cr_assert(o.lr_mult == 10 && o.alpha == 5 && o.loss.delta_rel_percent == 0.2);
    cr_assert_eq(o.workers, 2);
    cr_assert_eq(o.save_every, 200);
}

Test(trainer, command_line_recipe_first_then_flags) {
    const char *argv[] = {"wsml-train", "--lr", "2e-5", "--recipe", "paper", "--epochs", "3"};
    wsml_train_opts o;
    wsml_train_opts_default(&o);
    wsml_err err;
    cr_assert_eq(parse(&o, &err, 7, argv), 0, "%s", err.msg);
    cr_assert(o.lr == 2e-5);   // given before --recipe, still wins
    cr_assert_eq(o.epochs, 3); // given after
    cr_assert_str_eq(o.arch, "resnet50");
    cr_assert_str_eq(o.recipe, "paper");
    // a resumed run does not apply it again
    wsml_train_opts_default(&o);
    cr_assert_eq(wsml_train_opts_parse(7, (char **)argv, &o, 0, &err), 0, "%s", err.msg);
    cr_assert_str_eq(o.arch, "resnet18");
}

Test(trainer, command_line_errors_name_flag_and_range) {
    static const char *const cases[][3] = {
        {"--batch", "0", "--batch '0': expected an integer in 1..65536"},
        {"--lr", "-1", "--lr '-1': expected a positive number"},
        {"--width-mult", "4.5", "--width-mult '4.5': expected a number in (0, 4]"},
        {"--delta-rel", "101", "--delta-rel '101': expected a number in [0, 100]"},
        {"--ls", "nan", "--ls 'nan': expected a number in [0, 1]"},
        {"--loss", "foo",
         "--loss 'foo': expected full, an, an-ls, wan, epr, role, ll-r, ll-ct "
         "or ll-cp"},
        {"--precision", "fp16", "--precision 'fp16': expected fp32, tf32 or bf16"},
        {"--max-steps", "-1", "--max-steps '-1': expected an integer >= 0"},
        {"--seed", "4294967296", "--seed '4294967296': expected an integer in 0..4294967295"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *argv[] = {"wsml-train", cases[i][0], cases[i][1]};
        wsml_train_opts o;
        wsml_train_opts_default(&o);
        wsml_err err;
        cr_assert_eq(parse(&o, &err, 3, argv), WSML_EARG, "%s %s accepted", cases[i][0],
                     cases[i][1]);
        cr_assert_str_eq(err.msg, cases[i][2]);
    }
    const char *help[] = {"wsml-train", "--help"}, *version[] = {"wsml-train", "--version"};
    const char *missing[] = {"wsml-train", "--epochs"}, *unknown[] = {"wsml-train", "--flip"};
    wsml_train_opts o;
    wsml_train_opts_default(&o);
    wsml_err err;
    cr_assert_eq(parse(&o, &err, 2, help), WSML_OPTS_HELP);
    cr_assert_eq(parse(&o, &err, 2, version), WSML_OPTS_VERSION);
    cr_assert_eq(parse(&o, &err, 2, missing), WSML_EARG);
    cr_assert_str_eq(err.msg, "--epochs: missing value");
    cr_assert_eq(parse(&o, &err, 2, unknown), WSML_EARG); // only --no-flip exists
    cr_assert_str_eq(err.msg, "unknown option '--flip'");
}

// --help lists every option the parser accepts, with the defaults that
// wsml_train_opts_default sets.
Test(trainer, help_lists_the_table) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    wsml_train_opts_help(f);
    fclose(f);
    const char *lines[] = {
        "  --loss LOSS            full | an | an-ls | wan | epr | role | ll-r | ll-ct | ll-cp",
        "  --lr LR                backbone learning rate (default 0.0001)",
        "  --batch B              batch size (default 16)",
        "  --no-flip              no random horizontal flip",
        "  --no-early-stop        train all epochs",
        "  --backend B            cpu | cuda",
        "  -q, --quiet",
        "  --recipe paper",
        "  --save-every N         also save last.safetensors every N steps (default 200;",
    };
    for (size_t i = 0; i < sizeof lines / sizeof *lines; i++)
        cr_assert(strstr(text, lines[i]), "--help lacks '%s':\n%s", lines[i], text);
    free(text);
}
