/* replay.c: runs one fuzz target's LLVMFuzzerTestOneInput over files, without
 * libFuzzer, so that make check (and check-valgrind, and the sanitizer build) feeds every
 * committed corpus and regression input to the parser on every run. Arguments are files
 * or directories (one level, dotfiles skipped); without arguments it replays
 * LR_FUZZ_DIR/corpus/LR_FUZZ_TARGET and LR_FUZZ_DIR/regressions/LR_FUZZ_TARGET, both
 * compiled in. A crash aborts the program; a missing input is an error (exit 1). */
#include "fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>

#ifndef LR_FUZZ_DIR
#error "LR_FUZZ_DIR (the tests/fuzz source directory) must be defined"
#endif
#ifndef LR_FUZZ_TARGET
#error "LR_FUZZ_TARGET (corpus/regressions subdirectory) must be defined"
#endif

static int run_file(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return 1;
    }
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            fprintf(stderr, "replay: %s: out of memory\n", path);
            fclose(fp);
            return 1;
        }
        len += fread(buf + len, 1, cap - len, fp);
        if (len < cap) break;
        uint8_t *grown = realloc(buf, 2 * cap);
        if (!grown) free(buf);
        buf = grown;
        cap *= 2;
    }
    int bad = ferror(fp);
    fclose(fp);
    if (bad) {
        fprintf(stderr, "replay: %s: read error\n", path);
        free(buf);
        return 1;
    }
    /* An exact-size copy, so that ASan and valgrind see a read past the input. */
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact) {
        free(buf);
        return 1;
    }
    memcpy(exact, buf, len);
    free(buf);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Replays every regular file of dir, in name order; *count grows by the files run. */
static int run_dir(const char *dir, size_t *count) {
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
        return 1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **grown = realloc(names, cap * sizeof *names);
            if (!grown) {
                rc = 1;
                break;
            }
            names = grown;
        }
        size_t len = strlen(dir) + strlen(de->d_name) + 2;
        if (!(names[n] = malloc(len))) {
            rc = 1;
            break;
        }
        snprintf(names[n++], len, "%s/%s", dir, de->d_name);
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (rc == 0 && stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) {
            rc = run_file(names[i]);
            ++*count;
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

static int run_path(const char *path, size_t *count) {
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return 1;
    }
    if (S_ISDIR(st.st_mode)) return run_dir(path, count);
    ++*count;
    return run_file(path);
}

int main(int argc, char **argv) {
    size_t count = 0;
    int rc = 0;
    if (argc > 1) {
        for (int i = 1; i < argc && rc == 0; i++) rc = run_path(argv[i], &count);
    } else {
        rc = run_path(LR_FUZZ_DIR "/corpus/" LR_FUZZ_TARGET, &count);
        if (rc == 0) rc = run_path(LR_FUZZ_DIR "/regressions/" LR_FUZZ_TARGET, &count);
    }
    if (rc == 0) printf("replay %s: %zu inputs, no crash\n", LR_FUZZ_TARGET, count);
    return rc;
}
