/* status.c: names and messages of status codes, and the per-thread last error. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char last_error[1024];

const char *lr_status_name(int status) {
    switch (status) {
#define LR_STATUS_NAME(name, code, msg)                                                    \
    case code:                                                                             \
        return "LR_" #name;
        LR_STATUS_MAP(LR_STATUS_NAME)
#undef LR_STATUS_NAME
    }
    return "LR_UNKNOWN";
}

const char *lr_strerror(int status) {
    switch (status) {
#define LR_STATUS_MSG(name, code, msg)                                                     \
    case code:                                                                             \
        return msg;
        LR_STATUS_MAP(LR_STATUS_MSG)
#undef LR_STATUS_MSG
    }
    return "unknown status";
}

const char *lr_last_error(void) { return last_error; }

int lr_fail(int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}

int lr_read_file(const char *path, size_t limit, char **out, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return lr_fail(LR_E_IO, "%s: cannot open: %s", path, strerror(errno));
    if (fseek(fp, 0, SEEK_END) != 0) {
        fclose(fp);
        return lr_fail(LR_E_IO, "%s: cannot seek", path);
    }
    long size = ftell(fp);
    if (size < 0 || (unsigned long)size > limit) {
        fclose(fp);
        return lr_fail(LR_E_IO, "%s: size %ld is outside 0..%zu bytes", path, size, limit);
    }
    rewind(fp);
    char *buf = malloc((size_t)size + 1);
    if (!buf) {
        fclose(fp);
        return lr_fail(LR_E_NOMEM, "%s: cannot allocate %ld bytes", path, size);
    }
    size_t got = fread(buf, 1, (size_t)size, fp);
    fclose(fp);
    if (got != (size_t)size) {
        free(buf);
        return lr_fail(LR_E_IO, "%s: short read", path);
    }
    buf[size] = '\0';
    *out = buf;
    *len = (size_t)size;
    return LR_OK;
}

char *lr_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t k = a;
    if (k > 0 && p[k - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}
