// Replays fuzz corpora without libFuzzer: runs LLVMFuzzerTestOneInput on every file
// in the directories (or files) given, so `make test` re-checks every stored input
// under ASan+UBSan with gcc. A crash aborts with the sanitizer's report.
// Usage: fuzz_NAME [--min N] PATH...; a PATH (or a file in it) that cannot be read is an
// error, exit 1, and so is, with --min, replaying fewer than N inputs (a corpus folder
// emptied): a missing or empty replay must not pass.
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *prog;

// Replays one file: 1, or 0 after an error line when it cannot be read.
static int replay_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: error: %s: cannot open: %s\n", prog, path, strerror(errno));
        return 0;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    size_t got = n > 0 ? fread(buf, 1, (size_t)n, f) : 0;
    fclose(f);
    LLVMFuzzerTestOneInput(buf, got);
    free(buf);
    return 1;
}

int main(int argc, char **argv) {
    long count = 0, min_count = 0;
    int first = 1, failed = 0;
    prog = argv[0];
    if (argc > 2 && strcmp(argv[1], "--min") == 0) {
        char *end;
        min_count = strtol(argv[2], &end, 10);
        if (*argv[2] == '\0' || *end != '\0' || min_count < 0) {
            fprintf(stderr, "%s: --min wants a count, not '%s'\n", argv[0], argv[2]);
            return 2;
        }
        first = 3;
    }
    for (int i = first; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "%s: error: %s: %s\n", argv[0], argv[i], strerror(errno));
            failed = 1;
            continue;
        }
        if (!S_ISDIR(st.st_mode)) {
            int ok = replay_file(argv[i]);
            count += ok;
            failed |= !ok;
            continue;
        }
        DIR *d = opendir(argv[i]);
        if (!d) {
            fprintf(stderr, "%s: error: %s: cannot open: %s\n", argv[0], argv[i], strerror(errno));
            failed = 1;
            continue;
        }
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.')
                continue;
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name);
            int ok = replay_file(path);
            count += ok;
            failed |= !ok;
        }
        closedir(d);
    }
    printf("%s: replayed %ld inputs\n", argv[0], count);
    if (failed)
        return 1;
    if (count < min_count) {
        fprintf(
            stderr,
            "%s: error: replayed %ld inputs, expected at least %ld (a corpus folder missing?)\n",
            argv[0], count, min_count);
        return 1;
    }
    return 0;
}
