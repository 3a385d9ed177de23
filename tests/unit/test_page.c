// eval/page.h and eval/csv.h: the results page's readers and files. Oracles: values
// derived by hand from the run.jsonl lines written here (the definitions in eval/page.h),
// and the supplement's Table 2 as printed (../shared/paper-supplement.txt).
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/fileio.h"
#include "common_testutil.h"
#include "eval/csv.h"
#include "eval/page.h"

static void write_text(const char *dir, const char *name, const char *text) {
    char path[1100];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    ct_write_bytes(path, text, strlen(text));
}

static char *read_text(const char *dir, const char *name) {
    char path[1100], *text = NULL;
    size_t len = 0;
    wsml_err err = {0};
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    cr_assert_eq(wsml_read_file(path, &text, &len, &err), 0, "%s", err.msg);
    return text;
}

static int exists(const char *dir, const char *name) {
    char path[1100];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return stat(path, &st) == 0;
}

Test(page, csv_reader_handles_quotes_line_breaks_and_crlf) {
    wsml_csv c;
    wsml_err err = {0};
    const char *text = "method,dataset,run_dirs\r\n"
                       "\"LL-R, abs\",voc,\"a;b\"\n"
                       "\"say \"\"hi\"\"\",\"two\nlines\",\n"
                       "short\n";
    cr_assert_eq(wsml_csv_parse(text, "t.csv", &c, &err), 0, "%s", err.msg);
    cr_assert_eq(c.num_rows, 4);
    cr_expect_eq(c.num_fields[0], 3);
    cr_expect_str_eq(wsml_csv_get(&c, 0, 2), "run_dirs");
    cr_expect_str_eq(wsml_csv_get(&c, 1, 0), "LL-R, abs");
    cr_expect_str_eq(wsml_csv_get(&c, 1, 2), "a;b");
    cr_expect_str_eq(wsml_csv_get(&c, 2, 0), "say \"hi\"");
    cr_expect_str_eq(wsml_csv_get(&c, 2, 1), "two\nlines");
    cr_expect_eq(c.num_fields[2], 3);
    cr_expect_str_eq(wsml_csv_get(&c, 2, 2), "");
    cr_expect_eq(c.num_fields[3], 1);
    cr_expect_str_eq(wsml_csv_get(&c, 3, 1), ""); // past the row's end
    cr_expect_eq(wsml_csv_column(&c, "dataset"), 1);
    cr_expect_eq(wsml_csv_column(&c, "paper"), -1);
    wsml_csv_free(&c);

    cr_expect_eq(wsml_csv_parse("a,b\n1,\"open\n", "bad.csv", &c, &err), WSML_EFORMAT);
    cr_expect(strstr(err.msg, "bad.csv: line 2"), "%s", err.msg);
}

// LL-Cp over 3 epochs (hand-made counts): epoch 2 corrects 36 entries permanently, 25 of
// them hidden positives, so epoch 3 sees 100 - 25 = 75 hidden positives.
static const char *LLCP_RUN =
    "{\"epoch\":1,\"train_loss\":0.5,\"modified\":0,\"modified_hidden_pos\":0,"
    "\"hidden_pos\":100,\"corrected_total\":0,\"corrected_true_pos_total\":0,\"val_map\":60}\n"
    "{\"epoch\":2,\"train_loss\":9,\"modified\":1,\"modified_hidden_pos\":1,\"hidden_pos\":100,"
    "\"val_map\":1}\n"                         // overwritten by the resumed epoch 2 below
    "{\"step\":17,\"epoch\":2,\"loss\":0.3}\n" // a --trace line: not an epoch line
    "{\"epoch\":2,\"train_loss\":0.4,\"modified\":40,\"modified_hidden_pos\":30,"
    "\"hidden_pos\":100,\"corrected_total\":36,\"corrected_true_pos_total\":25,\"val_map\":62}\n"
    "{\"epoch\":3,\"train_loss\":0.3,\"modified\":40,\"modified_hidden_pos\":20,"
    "\"hidden_pos\":75,\"corrected_total\":70,\"corrected_true_pos_total\":45,\"val_map\":61}\n"
    "{\"event\":\"final\",\"best_epoch\":2,\"best_val_map\":62,\"test_map\":58.5,"
    "\"early_stopped\":true}\n"
    "{\"epoch\":4,\"val_m"; // cut by a kill

Test(page, run_log_diagnostics_follow_their_definitions) {
    char dir[128];
    ct_tmpdir(dir, sizeof(dir), "pagelog");
    write_text(dir, "run.jsonl", LLCP_RUN);
    wsml_run_log log;
    wsml_err err = {0};
    cr_assert_eq(wsml_run_log_read(dir, &log, &err), 0, "%s", err.msg);
    cr_assert_eq(log.num_epochs, 3);
    cr_expect(log.finished && log.early_stopped && log.best_epoch == 2);
    cr_expect_float_eq(log.test_map, 58.5, 1e-12);
    cr_expect_float_eq(log.val_map[1], 62.0, 1e-12); // the resumed epoch's line wins
    cr_expect_float_eq(log.train_loss[2], 0.3, 1e-12);
    cr_expect(isnan(log.precision[0]), "epoch 1 modifies nothing: no precision");
    cr_expect_float_eq(log.precision[1], 30.0 / 40, 1e-12);
    cr_expect_float_eq(log.precision[2], 20.0 / 40, 1e-12);
    // recall: every hidden positive (100) is the denominator, also in epoch 3
    cr_expect_float_eq(log.recall[0], 0.0, 1e-12);
    cr_expect_float_eq(log.recall[1], 30.0 / 100, 1e-12);
    cr_expect_float_eq(log.recall[2], (20.0 + 25) / 100, 1e-12);
    cr_expect_float_eq(log.corrected_true_pos[2], 45.0, 1e-12);
    cr_expect_float_eq(log.corrected[1], 36.0, 1e-12);
    cr_expect_float_eq(log.hidden_pos_start, 100.0, 1e-12);
    wsml_run_log_free(&log);

    // no hidden positive known (real partial labels): no diagnostics at all
    write_text(dir, "run.jsonl",
               "{\"epoch\":1,\"modified\":0,\"modified_hidden_pos\":0,\"hidden_pos\":0,"
               "\"val_map\":5}\n{\"epoch\":2,\"modified\":8,\"modified_hidden_pos\":0,"
               "\"hidden_pos\":0,\"val_map\":6}\n");
    cr_assert_eq(wsml_run_log_read(dir, &log, &err), 0, "%s", err.msg);
    cr_expect(!log.knows_hidden && !log.finished && isnan(log.test_map));
    cr_expect(isnan(log.precision[1]) && isnan(log.recall[1]));
    wsml_run_log_free(&log);

    write_text(dir, "run.jsonl", "{\"epoch\":0,\"val_map\":5}\n");
    cr_expect_eq(wsml_run_log_read(dir, &log, &err), WSML_EFORMAT);
    cr_expect(strstr(err.msg, "run.jsonl: line 1: epoch 0"), "%s", err.msg);
    ct_rmdir(dir);
    cr_expect_eq(wsml_run_log_read(dir, &log, &err), WSML_EIO);
    cr_expect(strstr(err.msg, "run.jsonl"), "%s", err.msg);
}

Test(page, series_band_skips_missing_values) {
    const double a[3] = {1, NAN, 3}, b[2] = {2, 4};
    const double *values[2] = {a, b};
    const int lengths[2] = {3, 2};
    double mean[3], lo[3], hi[3];
    int count[3];
    wsml_series_band(values, lengths, 2, 3, mean, lo, hi, count);
    cr_expect_float_eq(mean[0], 1.5, 1e-12);
    cr_expect(lo[0] == 1 && hi[0] == 2 && count[0] == 2);
    cr_expect(mean[1] == 4 && lo[1] == 4 && hi[1] == 4 && count[1] == 1);
    cr_expect(mean[2] == 3 && count[2] == 1);
}

// A run directory of the by-group layout: config.json and a finished run.jsonl with the
// test mAP per group.
static void make_run(const char *root, const char *name, const char *loss, const char *groups) {
    char dir[512], text[1400];
    snprintf(dir, sizeof(dir), "%s/%s", root, name);
    cr_assert_eq(mkdir(dir, 0755), 0);
    snprintf(text, sizeof(text),
             "{\"dataset\":\"openimages\",\"loss\":\"%s\",\"threshold\":\"relative\","
             "\"delta_rel\":0.01,\"lr\":2e-05,\"seed\":1,\"store\":\"%s/no-store\"}\n",
             loss, root);
    write_text(dir, "config.json", text);
    snprintf(text, sizeof(text),
             "{\"epoch\":1,\"train_loss\":0.2,\"modified\":0,\"modified_hidden_pos\":0,"
             "\"hidden_pos\":0,\"val_map\":70}\n{\"epoch\":2,\"train_loss\":0.1,\"modified\":3,"
             "\"modified_hidden_pos\":0,\"hidden_pos\":0,\"val_map\":71}\n"
             "{\"event\":\"final\",\"best_epoch\":2,\"best_val_map\":71,\"test_map\":%s}\n",
             groups);
    write_text(dir, "run.jsonl", text);
}

Test(page, group_bars_put_the_papers_table_2_beside_ours) {
    char root[128];
    ct_tmpdir(root, sizeof(root), "pagegrp");
    make_run(root, "an", "an", "80.5,\"test_groups\":[70,71,72,73,74]");
    make_run(root, "llr", "ll-r",
             "81.5,\"test_groups\":{\"G1\":75,\"G2\":76,\"G3\":77,"
             "\"G4\":78,\"G5\":79}");
    char an[256], llr[256], out[256];
    snprintf(an, sizeof(an), "%s/an/", root);
    snprintf(llr, sizeof(llr), "%s/llr", root);
    snprintf(out, sizeof(out), "%s/report", root);
    const char *dirs[2] = {an, llr};
    wsml_page_section sec = {"Table 2", WSML_TABLE_BY_GROUP, dirs, 2};
    wsml_page_opts opts = {"t", &sec, 1, NULL, 0, NULL};
    char **plots = NULL;
    int num_plots = 0;
    wsml_err err = {0};
    cr_assert_eq(wsml_page_write(&opts, out, &plots, &num_plots, &err), 0, "%s", err.msg);
    // curves, no diagnostics (no hidden positive is known), the group bars
    cr_assert_eq(num_plots, 3);
    cr_expect_str_eq(plots[0], "table-2-openimages-map");
    cr_expect_str_eq(plots[1], "table-2-openimages-loss");
    cr_expect_str_eq(plots[2], "table-2-openimages-groups");
    wsml_page_plots_free(plots, num_plots);
    cr_expect(!exists(out, "plots/table-2-openimages-ll.gp"));
    cr_expect(exists(out, "plots/table-2-openimages-groups.gp"));

    // every method's bars; the paper's Table 2 as printed beside the rows it has (Naive AN
    // and LL-relative, = the LL-R run), none beside LL-R
    char *dat = read_text(out, "plots/table-2-openimages-groups.dat");
    const char *expect[6] = {"G1 70 77.099999999999994 75 NaN 75 77.700000000000003",
                             "G2 71 78.700000000000003 76 NaN 76 79.299999999999997",
                             "G3 72 81.5 77 NaN 77 82.099999999999994",
                             "G4 73 84.099999999999994 78 NaN 78 84.700000000000003",
                             "G5 74 88.799999999999997 79 NaN 79 89.400000000000006",
                             "all 80.5 82 81.5 NaN 81.5 82.599999999999994"};
    for (int g = 0; g < 6; g++)
        cr_expect(strstr(dat, expect[g]), "no line '%s' in:\n%s", expect[g], dat);
    cr_expect(strstr(dat, "Naive AN ours, Naive AN paper, LL-R ours, LL-R paper, LL-relative "
                          "(best of R/Ct/Cp) ours"),
              "%s", dat);
    char *gp = read_text(out, "plots/table-2-openimages-groups.gp");
    cr_expect(strstr(gp, "'LL-R (paper)'") == NULL && strstr(gp, "'Naive AN (paper)'"), "%s", gp);
    free(gp);
    free(dat);

    char *page = read_text(out, "index.html");
    cr_expect(strstr(page, "<img src=\"plots/table-2-openimages-groups.png\""));
    cr_expect(!strstr(page, "<script"), "the page needs no JavaScript");
    // the paper's "all" beside ours in the results table: 82.0 for Naive AN
    cr_expect(strstr(page, "<td class=\"best\">80.5</td><td class=\"paper\">82.0</td>") ||
                  strstr(page, "<td>80.5</td><td class=\"paper\">82.0</td>"),
              "no paper value beside Naive AN's all");
    free(page);
    ct_rmdir(root);
}

Test(page, bad_inputs_are_refused_before_the_page_is_written) {
    char root[128], out[256], cam[256];
    ct_tmpdir(root, sizeof(root), "pagebad");
    make_run(root, "an", "an", "80.5");
    snprintf(out, sizeof(out), "%s/report", root);
    snprintf(cam, sizeof(cam), "%s/an/config.json", root);
    char run[256];
    snprintf(run, sizeof(run), "%s/an", root);
    const char *dirs[1] = {run};
    const char *cams[1] = {cam};
    wsml_page_section secs[2] = {{"Table 1", WSML_TABLE_BY_DATASET, dirs, 1},
                                 {"table 1", WSML_TABLE_BY_DATASET, dirs, 1}};
    wsml_page_opts opts = {NULL, secs, 2, NULL, 0, NULL};
    char **plots = NULL;
    int num_plots = 0;
    wsml_err err = {0};
    cr_expect_eq(wsml_page_write(&opts, out, &plots, &num_plots, &err), WSML_EARG);
    cr_expect(strstr(err.msg, "different titles"), "%s", err.msg);
    opts = (wsml_page_opts){NULL, secs, 1, cams, 1, NULL};
    cr_expect_eq(wsml_page_write(&opts, out, &plots, &num_plots, &err), WSML_EFORMAT);
    cr_expect(strstr(err.msg, "config.json: not a PNG"), "%s", err.msg);
    cr_expect(!exists(out, "index.html"), "a failed page must not leave index.html");
    ct_rmdir(root);
}
