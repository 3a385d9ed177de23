// Whole-file reads and crash-safe writes: data goes to a temporary file beside the target,
// is fsync'd, renamed over the target and the directory fsync'd, so that a reader sees
// the old file or the complete new one, never a torn one.
#include "common/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int wsml_open_regular(const char *path, FILE **f, size_t *size, wsml_err *err) {
    *f = fopen(path, "rb");
    if (!*f)
        return wsml_errf(err, WSML_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(*f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(*f);
        *f = NULL;
        return wsml_errf(err, WSML_EIO, "%s: not a regular file", path);
    }
    *size = (size_t)st.st_size;
    return 0;
}

int wsml_read_file(const char *path, char **buf, size_t *len, wsml_err *err) {
    *buf = NULL;
    *len = 0;
    FILE *f;
    size_t n;
    int rc = wsml_open_regular(path, &f, &n, err);
    if (rc)
        return rc;
    char *b = malloc(n + 1);
    if (!b) {
        fclose(f);
        return wsml_errf(err, WSML_ENOMEM, "%s: out of memory reading %zu bytes", path, n);
    }
    size_t got = fread(b, 1, n, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || got != n) {
        free(b);
        return wsml_errf(err, WSML_EIO, "%s: short read (%zu of %zu bytes)", path, got, n);
    }
    b[n] = '\0';
    *buf = b;
    *len = n;
    return 0;
}

static void fsync_dir_of(const char *path) {
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

int wsml_atomic_open(wsml_atomic_file *af, const char *path, wsml_err *err) {
    memset(af, 0, sizeof *af);
    if (strlen(path) >= sizeof af->path)
        return wsml_errf(err, WSML_EARG, "%s: path too long", path);
    snprintf(af->path, sizeof af->path, "%s", path);
    snprintf(af->tmp, sizeof af->tmp, "%s.tmp.%ld", path, (long)getpid());
    af->f = fopen(af->tmp, "wb");
    if (!af->f)
        return wsml_errf(err, WSML_EIO, "%s: cannot create: %s", af->tmp, strerror(errno));
    return 0;
}

int wsml_atomic_close(wsml_atomic_file *af, wsml_err *err) {
    if (!af->f)
        return wsml_errf(err, WSML_ESTATE, "%s: not open", af->path);
    int e = 0;
    // errno still holds the failed write's reason (ENOSPC, EFBIG, EDQUOT, EIO) when the
    // error flag was set by an earlier fwrite/fprintf on af->f.
    if (fflush(af->f) != 0 || ferror(af->f))
        e = errno ? errno : EIO;
    if (!e && fsync(fileno(af->f)) != 0)
        e = errno;
    if (fclose(af->f) != 0 && !e)
        e = errno;
    af->f = NULL;
    if (e) {
        unlink(af->tmp);
        af->tmp[0] = '\0';
        return wsml_errf(err, WSML_EIO, "%s: write failed: %s", af->path, strerror(e));
    }
    return 0;
}

int wsml_atomic_rename(wsml_atomic_file *af, wsml_err *err) {
    if (af->f || !af->tmp[0])
        return wsml_errf(err, WSML_ESTATE, "%s: not closed", af->path);
    if (rename(af->tmp, af->path) != 0) {
        int e = errno;
        unlink(af->tmp);
        af->tmp[0] = '\0';
        return wsml_errf(err, WSML_EIO, "%s: rename failed: %s", af->path, strerror(e));
    }
    af->tmp[0] = '\0';
    fsync_dir_of(af->path);
    return 0;
}

int wsml_atomic_commit(wsml_atomic_file *af, wsml_err *err) {
    int rc = wsml_atomic_close(af, err);
    return rc ? rc : wsml_atomic_rename(af, err);
}

void wsml_atomic_abort(wsml_atomic_file *af) {
    if (af->f) {
        fclose(af->f);
        af->f = NULL;
    }
    if (af->tmp[0])
        unlink(af->tmp);
}

int wsml_write_file_atomic(const char *path, const void *data, size_t len, wsml_err *err) {
    wsml_atomic_file af;
    int rc = wsml_atomic_open(&af, path, err);
    if (rc)
        return rc;
    if (len && fwrite(data, 1, len, af.f) != len) {
        int e = errno;
        wsml_atomic_abort(&af);
        return wsml_errf(err, WSML_EIO, "%s: write failed: %s", path, strerror(e ? e : EIO));
    }
    return wsml_atomic_commit(&af, err);
}

int wsml_mkdirs(const char *path, wsml_err *err) {
    char buf[4096];
    if (!path || !*path)
        return wsml_errf(err, WSML_EARG, "mkdir: empty directory name");
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return wsml_errf(err, WSML_EARG, "%s: path too long", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return wsml_errf(err, WSML_EIO, "%s: cannot create directory: %s", buf,
                                 strerror(errno));
            *p = c;
            if (c == '\0')
                break;
        }
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return wsml_errf(err, WSML_EIO, "%s: exists and is not a directory", path);
    return 0;
}
