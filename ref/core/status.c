/* status.c: names and messages of status codes, the per-thread last error, and the
 * small file helpers every reader and writer shares. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

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

int lr_write_file_atomic(const char *path, bool overwrite, lr_write_fn fill, void *user) {
    size_t n = strlen(path) + 16;
    char *tmp = malloc(n);
    if (!tmp) return lr_fail(LR_E_NOMEM, "%s: out of memory", path);
    snprintf(tmp, n, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int rc = lr_fail(LR_E_IO, "%s: cannot create a temporary file beside it: %s", path, strerror(errno));
        free(tmp);
        return rc;
    }
    fchmod(fd, 0644); /* mkstemp creates 0600: give the output a data file's usual mode */
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        int rc = lr_fail(LR_E_IO, "%s: %s", path, strerror(errno));
        close(fd);
        unlink(tmp);
        free(tmp);
        return rc;
    }
    errno = 0;
    int bad = fill(f, user) != 0, err = errno;
    if (!bad && (fflush(f) != 0 || ferror(f))) bad = 1, err = errno;
    if (!bad && fsync(fd) != 0) bad = 1, err = errno;
    if (fclose(f) != 0 && !bad) bad = 1, err = errno;
    int rc = LR_OK;
    if (bad) {
        rc = lr_fail(LR_E_IO, "%s: write failed: %s", path, strerror(err ? err : EIO));
    } else if (overwrite) {
        if (rename(tmp, path) != 0) rc = lr_fail(LR_E_IO, "%s: cannot rename into place: %s", path, strerror(errno));
    } else if (link(tmp, path) != 0) {
        /* link() never replaces: an existing file is left untouched. */
        rc = lr_fail(LR_E_IO, "%s: %s", path, errno == EEXIST ? "already exists" : strerror(errno));
    }
    unlink(tmp); /* after rename it is gone already; after link the name at path remains */
    free(tmp);
    return rc;
}

int lr_map_file(const char *path, size_t min_len, void **map, size_t *len) {
    *map = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return lr_fail(LR_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return lr_fail(LR_E_IO, "%s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    if (n >= min_len && n > 0) {
        void *m = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int rc = lr_fail(LR_E_IO, "%s: cannot map: %s", path, strerror(errno));
            close(fd);
            return rc;
        }
        *map = m;
    }
    close(fd);
    *len = n;
    return LR_OK;
}
