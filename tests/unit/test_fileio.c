// common/fileio: whole-file reads, atomic writes (old or new file, never a torn one,
// no temp files left, write failures such as a full disk reported with the path), mkdir -p.
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/fileio.h"
#include "tests/unit/common_testutil.h"

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    cr_assert(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

static void expect_content(const char *path, const char *want) {
    char *b;
    size_t n;
    wsml_err err = {0};
    cr_assert_eq(wsml_read_file(path, &b, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, strlen(want));
    cr_assert_str_eq(b, want);
    free(b);
}

Test(fileio, read_file_whole_and_errors) {
    char dir[128], path[256];
    ct_tmpdir(dir, sizeof dir, "fio");
    snprintf(path, sizeof path, "%s/a.bin", dir);
    unsigned char bytes[3000];
    for (size_t i = 0; i < sizeof bytes; i++)
        bytes[i] = (unsigned char)(i * 7);
    bytes[10] = 0;
    ct_write_bytes(path, bytes, sizeof bytes);
    char *b;
    size_t n;
    wsml_err err = {0};
    cr_assert_eq(wsml_read_file(path, &b, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, sizeof bytes);
    cr_assert_eq(memcmp(b, bytes, n), 0, "binary safe");
    cr_assert_eq(b[n], '\0', "NUL-terminated");
    free(b);
    ct_write_bytes(path, "", 0);
    cr_assert_eq(wsml_read_file(path, &b, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 0);
    cr_assert_str_eq(b, "");
    free(b);
    snprintf(path, sizeof path, "%s/missing", dir);
    cr_assert_eq(wsml_read_file(path, &b, &n, &err), WSML_EIO);
    cr_assert(strstr(err.msg, path) && strstr(err.msg, "No such file"), "%s", err.msg);
    cr_assert_null(b);
    cr_assert_eq(wsml_read_file(dir, &b, &n, &err), WSML_EIO, "a directory");
    cr_assert(strstr(err.msg, dir), "%s", err.msg);
    ct_rmdir(dir);
}

Test(fileio, atomic_write_replaces_and_leaves_no_temp) {
    char dir[128], path[256];
    ct_tmpdir(dir, sizeof dir, "fioa");
    snprintf(path, sizeof path, "%s/out.txt", dir);
    wsml_err err = {0};
    cr_assert_eq(wsml_write_file_atomic(path, "first", 5, &err), 0, "%s", err.msg);
    expect_content(path, "first");
    cr_assert_eq(wsml_write_file_atomic(path, "second version", 14, &err), 0, "%s", err.msg);
    expect_content(path, "second version");
    cr_assert_eq(wsml_write_file_atomic(path, NULL, 0, &err), 0, "%s", err.msg);
    expect_content(path, "");
    cr_assert_eq(count_entries(dir), 1, "only the target remains");

    // An aborted write leaves the old file untouched and no temp file.
    cr_assert_eq(wsml_write_file_atomic(path, "old", 3, &err), 0, "%s", err.msg);
    wsml_atomic_file af;
    cr_assert_eq(wsml_atomic_open(&af, path, &err), 0, "%s", err.msg);
    fputs("half-written new content", af.f);
    fflush(af.f);
    expect_content(path, "old"); // not visible before commit
    cr_assert_eq(count_entries(dir), 2, "the temp file sits beside the target");
    wsml_atomic_abort(&af);
    expect_content(path, "old");
    cr_assert_eq(count_entries(dir), 1);

    // Commit publishes; a second commit or abort of the same handle is harmless.
    cr_assert_eq(wsml_atomic_open(&af, path, &err), 0, "%s", err.msg);
    fputs("new", af.f);
    cr_assert_eq(wsml_atomic_commit(&af, &err), 0, "%s", err.msg);
    expect_content(path, "new");
    cr_assert_neq(wsml_atomic_commit(&af, &err), 0);
    wsml_atomic_abort(&af);
    expect_content(path, "new");
    cr_assert_eq(count_entries(dir), 1);
    ct_rmdir(dir);
}

// Two files that appear together (wsml-eval's per_class.csv and metrics.json): close
// keeps the temp file and publishes nothing; abort after close removes it; rename
// publishes it; a second rename or abort is harmless.
Test(fileio, atomic_close_then_rename_or_abort) {
    char dir[128], path[256];
    ct_tmpdir(dir, sizeof dir, "fioc");
    snprintf(path, sizeof path, "%s/out.txt", dir);
    wsml_err err = {0};
    wsml_atomic_file af;
    cr_assert_eq(wsml_atomic_open(&af, path, &err), 0, "%s", err.msg);
    fputs("closed, then dropped", af.f);
    cr_assert_eq(wsml_atomic_close(&af, &err), 0, "%s", err.msg);
    cr_assert_eq(access(path, F_OK), -1, "close publishes nothing");
    cr_assert_eq(count_entries(dir), 1, "the temp file stays until rename or abort");
    wsml_atomic_abort(&af);
    cr_assert_eq(count_entries(dir), 0, "abort after close removes the temp file");

    cr_assert_eq(wsml_atomic_open(&af, path, &err), 0, "%s", err.msg);
    cr_assert_neq(wsml_atomic_rename(&af, &err), 0, "rename before close");
    fputs("published", af.f);
    cr_assert_eq(wsml_atomic_close(&af, &err), 0, "%s", err.msg);
    cr_assert_eq(wsml_atomic_rename(&af, &err), 0, "%s", err.msg);
    expect_content(path, "published");
    cr_assert_neq(wsml_atomic_rename(&af, &err), 0);
    wsml_atomic_abort(&af);
    expect_content(path, "published");
    cr_assert_eq(count_entries(dir), 1);
    ct_rmdir(dir);
}

Test(fileio, atomic_write_errors_name_the_path) {
    char dir[128], path[256];
    ct_tmpdir(dir, sizeof dir, "fioe");
    wsml_err err = {0};
    snprintf(path, sizeof path, "%s/no/such/dir/f", dir);
    cr_assert_eq(wsml_write_file_atomic(path, "x", 1, &err), WSML_EIO);
    cr_assert(strstr(err.msg, "no/such/dir/f"), "%s", err.msg);
    // Renaming over a directory fails: the error names the path, the temp file is gone.
    snprintf(path, sizeof path, "%s/d", dir);
    cr_assert_eq(mkdir(path, 0755), 0);
    char inner[300];
    snprintf(inner, sizeof inner, "%s/keep", path);
    ct_write_bytes(inner, "k", 1);
    cr_assert_eq(wsml_write_file_atomic(path, "x", 1, &err), WSML_EIO);
    cr_assert(strstr(err.msg, path), "%s", err.msg);
    cr_assert_eq(count_entries(dir), 1, "no temp file left");
    ct_rmdir(dir);
}

// A full disk (ENOSPC) cannot be staged without root, but a file-size limit fails the
// same write path with EFBIG: the commit must report it with the path and leave the old
// file in place. Runs in a child so the limit does not leak into the test runner.
Test(fileio, failed_write_is_reported_at_commit) {
    char dir[128], path[256];
    ct_tmpdir(dir, sizeof dir, "fiofull");
    snprintf(path, sizeof path, "%s/big.bin", dir);
    ct_write_bytes(path, "old", 3);
    char msgfile[300];
    snprintf(msgfile, sizeof msgfile, "%s/msg", dir);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {65536, 65536};
        setrlimit(RLIMIT_FSIZE, &rl);
        wsml_err err = {0};
        wsml_atomic_file af;
        if (wsml_atomic_open(&af, path, &err) != 0)
            _exit(10);
        char chunk[1000];
        memset(chunk, 'x', sizeof chunk);
        for (int i = 0; i < 200; i++)
            fwrite(chunk, 1, sizeof chunk, af.f); // ignores errors, as callers may
        int rc = wsml_atomic_commit(&af, &err);
        // the convenience function fails the same way
        wsml_err err2 = {0};
        char *big = calloc(1, 200000);
        int rc2 = wsml_write_file_atomic(path, big, 200000, &err2);
        FILE *m = fopen(msgfile, "w");
        fprintf(m, "%d\n%s\n%d\n%s\n", rc, err.msg, rc2, err2.msg);
        fclose(m);
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char *b;
    size_t n;
    wsml_err err = {0};
    cr_assert_eq(wsml_read_file(msgfile, &b, &n, &err), 0);
    int rc = atoi(b);
    cr_assert_eq(rc, WSML_EIO, "commit must fail: %s", b);
    cr_assert(strstr(b, path) && strstr(b, "File too large"), "%s", b);
    char *second = strchr(strchr(b, '\n') + 1, '\n') + 1;
    cr_assert_eq(atoi(second), WSML_EIO, "%s", b);
    cr_assert(strstr(second, path), "%s", second);
    free(b);
    unlink(msgfile);
    expect_content(path, "old");
    cr_assert_eq(count_entries(dir), 1, "no temp file left");
    ct_rmdir(dir);
}

Test(fileio, mkdirs) {
    char dir[128], path[512];
    ct_tmpdir(dir, sizeof dir, "fiom");
    wsml_err err = {0};
    snprintf(path, sizeof path, "%s/a/b/c/", dir);
    cr_assert_eq(wsml_mkdirs(path, &err), 0, "%s", err.msg);
    struct stat st;
    cr_assert(stat(path, &st) == 0 && S_ISDIR(st.st_mode));
    cr_assert_eq(wsml_mkdirs(path, &err), 0, "existing is fine: %s", err.msg);
    snprintf(path, sizeof path, "%s/a//b2/./c", dir);
    cr_assert_eq(wsml_mkdirs(path, &err), 0, "%s", err.msg);
    snprintf(path, sizeof path, "%s/file", dir);
    ct_write_bytes(path, "x", 1);
    cr_assert_neq(wsml_mkdirs(path, &err), 0, "a file is in the way");
    cr_assert(strstr(err.msg, path), "%s", err.msg);
    snprintf(path, sizeof path, "%s/file/sub", dir);
    cr_assert_neq(wsml_mkdirs(path, &err), 0);
    cr_assert(strstr(err.msg, "file"), "%s", err.msg);
    cr_assert_eq(wsml_mkdirs("", &err), WSML_EARG);
    cr_assert_eq(wsml_mkdirs("/", &err), 0);
    cr_assert_eq(wsml_mkdirs(".", &err), 0);
    ct_rmdir(dir);
}
