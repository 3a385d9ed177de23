// Helpers shared by the fuzz targets (header only: tests/fuzz/fuzz_*.c are the targets).
//
// Parsers that take a path get the fuzz input written to a file in a private scratch
// directory on /dev/shm (tmpfs: no disk I/O per execution). Multi-file formats split
// one input into parts at the separator line FUZZ_SEP, so that a seed holds a whole
// small dataset and the fuzzer can mutate every file of it.
#ifndef WSML_FUZZ_UTIL_H
#define WSML_FUZZ_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FUZZ_SEP "\n#~~#\n"

// The scratch directory, created once per process and removed at exit.
static char fuzz_dir_path[256];

// rm -rf of the scratch tree (no symlinks are ever created in it).
static inline void fuzz_rm_rf(const char *path) {
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char sub[1024];
            if (snprintf(sub, sizeof sub, "%s/%s", path, e->d_name) >= (int)sizeof sub)
                continue;
            fuzz_rm_rf(sub);
        }
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static inline void fuzz_cleanup(void) {
    if (fuzz_dir_path[0])
        fuzz_rm_rf(fuzz_dir_path);
}

// Removes the scratch dirs of fuzz processes that died without running atexit (a crash
// or timeout ends libFuzzer with _exit).
static inline void fuzz_remove_stale(const char *base) {
    DIR *d = opendir(base);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        long pid;
        char tail;
        if (sscanf(e->d_name, "wsml-fuzz-%ld%c", &pid, &tail) != 1 || pid <= 0)
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue; // alive (or not ours)
        char path[512];
        snprintf(path, sizeof path, "%s/%s", base, e->d_name);
        fuzz_rm_rf(path);
    }
    closedir(d);
}

static inline const char *fuzz_dir(void) {
    if (!fuzz_dir_path[0]) {
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        fuzz_remove_stale(base);
        snprintf(fuzz_dir_path, sizeof fuzz_dir_path, "%s/wsml-fuzz-%ld", base, (long)getpid());
        fuzz_rm_rf(fuzz_dir_path);
        if (mkdir(fuzz_dir_path, 0700) != 0)
            abort();
        atexit(fuzz_cleanup);
    }
    return fuzz_dir_path;
}

// mkdir -p of rel (relative to the scratch dir).
static inline void fuzz_mkdirs(const char *rel) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", fuzz_dir(), rel);
    for (char *s = p + strlen(fuzz_dir()) + 1; *s; s++)
        if (*s == '/') {
            *s = '\0';
            mkdir(p, 0700);
            *s = '/';
        }
    mkdir(p, 0700);
}

// Full path of rel inside the scratch dir (static buffer rotation of 8).
static inline const char *fuzz_path(const char *rel) {
    static char bufs[8][1024];
    static int k;
    char *b = bufs[k++ & 7];
    snprintf(b, 1024, "%s/%s", fuzz_dir(), rel);
    return b;
}

// Writes bytes to rel (truncating); aborts on I/O failure (a harness bug, not a find).
static inline const char *fuzz_write(const char *rel, const void *data, size_t len) {
    const char *p = fuzz_path(rel);
    FILE *f = fopen(p, "wb");
    if (!f)
        abort();
    if (len && fwrite(data, 1, len, f) != len)
        abort();
    if (fclose(f) != 0)
        abort();
    return p;
}

static inline void fuzz_unlink(const char *rel) {
    unlink(fuzz_path(rel));
}

// Splits data at FUZZ_SEP into at most max parts; returns the count (>= 1).
static inline int fuzz_split(const uint8_t *data, size_t size, const uint8_t **part, size_t *len,
                             int max) {
    const size_t sl = sizeof(FUZZ_SEP) - 1;
    int n = 0;
    size_t start = 0;
    for (size_t i = 0; n < max - 1 && i + sl <= size;) {
        if (memcmp(data + i, FUZZ_SEP, sl) == 0) {
            part[n] = data + start;
            len[n++] = i - start;
            i += sl;
            start = i;
        } else {
            i++;
        }
    }
    part[n] = data + start;
    len[n++] = size - start;
    return n;
}

#endif
