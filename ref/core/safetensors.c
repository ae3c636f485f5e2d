/* safetensors.c: a strict reader of the safetensors format over a mapped file, and an
 * atomic writer. The reader checks what the format itself requires: a bounded header
 * length, valid JSON, known dtypes, shape x dtype size equal to the byte span, offsets
 * inside the data section, and no two tensors sharing bytes. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The limit the reference implementation sets on the JSON header. */
#define ST_MAX_HEADER ((uint64_t)100000000)

struct lr_st_file {
    char *path;
    void *map;
    size_t map_len;
    const unsigned char *data; /* start of the data section */
    uint64_t data_len;
    lr_st_entry *entries; /* file order */
    lr_st_entry **by_name; /* sorted by name */
    size_t n;
    json_t *metadata; /* object of strings, or NULL */
};

static int cmp_name(const void *a, const void *b) {
    return strcmp((*(lr_st_entry *const *)a)->name, (*(lr_st_entry *const *)b)->name);
}
static int cmp_offset(const void *a, const void *b) {
    const lr_st_entry *x = *(lr_st_entry *const *)a, *y = *(lr_st_entry *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int parse_entry(lr_st_file *f, const char *key, json_t *v, lr_st_entry *e) {
    const char *name = f->path;
    if (!json_is_object(v))
        return lr_fail(LR_E_HEADER, "%s: tensor \"%s\": expected an object", name, key);
    json_t *dt = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape"),
           *offs = json_object_get(v, "data_offsets");
    if (!json_is_string(dt))
        return lr_fail(LR_E_HEADER, "%s: tensor \"%s\": dtype: missing or not a string", name, key);
    if (lr_dtype_parse(json_string_value(dt), &e->t.dtype) != LR_OK)
        return lr_fail(LR_E_DTYPE, "%s: tensor \"%s\": dtype \"%s\" is not supported", name, key,
                       json_string_value(dt));
    if (!json_is_array(shape))
        return lr_fail(LR_E_HEADER, "%s: tensor \"%s\": shape: missing or not an array", name, key);
    size_t nd = json_array_size(shape);
    if (nd > LR_MAX_DIMS)
        return lr_fail(LR_E_HEADER, "%s: tensor \"%s\": shape: %zu dimensions (at most %d)", name,
                       key, nd, LR_MAX_DIMS);
    e->t.ndim = (int)nd;
    uint64_t numel = 1;
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(shape, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return lr_fail(LR_E_HEADER, "%s: tensor \"%s\": shape[%zu]: not a non-negative integer",
                           name, key, i);
        e->t.shape[i] = (int64_t)json_integer_value(d);
        /* Every partial product must fit int64, as lr_tensor_numel() forms them: a zero
         * dimension after [2^32, 2^31] would otherwise hide the overflow. */
        if (lr_mul_overflows(numel, (uint64_t)e->t.shape[i], &numel) || numel > (uint64_t)INT64_MAX)
            return lr_fail(LR_E_SPAN, "%s: tensor \"%s\": shape: element count overflows", name, key);
    }
    uint64_t nbytes;
    if (lr_mul_overflows(numel, lr_dtype_size(e->t.dtype), &nbytes))
        return lr_fail(LR_E_SPAN, "%s: tensor \"%s\": shape: byte size overflows", name, key);
    if (!json_is_array(offs) || json_array_size(offs) != 2 ||
        !json_is_integer(json_array_get(offs, 0)) || !json_is_integer(json_array_get(offs, 1)))
        return lr_fail(LR_E_HEADER, "%s: tensor \"%s\": data_offsets: expected [begin, end]", name, key);
    json_int_t b = json_integer_value(json_array_get(offs, 0));
    json_int_t en = json_integer_value(json_array_get(offs, 1));
    if (b < 0 || en < b)
        return lr_fail(LR_E_OFFSET, "%s: tensor \"%s\": data_offsets: [%lld, %lld] is not a range",
                       name, key, (long long)b, (long long)en);
    if ((uint64_t)(en - b) != nbytes)
        return lr_fail(LR_E_SPAN,
                       "%s: tensor \"%s\": data_offsets span %lld bytes but shape x %s needs %llu",
                       name, key, (long long)(en - b), lr_dtype_name(e->t.dtype),
                       (unsigned long long)nbytes);
    if ((uint64_t)en > f->data_len)
        return lr_fail(LR_E_OFFSET,
                       "%s: tensor \"%s\": data_offsets end %lld is past the data section (%llu bytes)",
                       name, key, (long long)en, (unsigned long long)f->data_len);
    e->offset = (uint64_t)b;
    e->nbytes = nbytes;
    e->t.data = f->data + b;
    return LR_OK;
}

static int parse_header(lr_st_file *f, const unsigned char *buf, size_t len) {
    const char *name = f->path;
    if (len < 8)
        return lr_fail(LR_E_TRUNCATED, "%s: %zu bytes, too short for the 8-byte header length",
                       name, len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i];
    if (hlen > ST_MAX_HEADER)
        return lr_fail(LR_E_HEADER, "%s: header length %llu exceeds the %llu-byte limit", name,
                       (unsigned long long)hlen, (unsigned long long)ST_MAX_HEADER);
    if (hlen > len - 8)
        return lr_fail(LR_E_TRUNCATED, "%s: header length %llu runs past the end of the file (%zu bytes)",
                       name, (unsigned long long)hlen, len);
    if (hlen < 2 || buf[8] != '{')
        return lr_fail(LR_E_HEADER, "%s: header does not start with '{'", name);
    f->data = buf + 8 + hlen;
    f->data_len = len - 8 - hlen;

    json_error_t err;
    json_t *root = json_loadb((const char *)buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &err);
    if (!root)
        return lr_fail(LR_E_JSON, "%s: header: line %d column %d: %s", name, err.line, err.column,
                       err.text);
    int rc = LR_OK;
    if (!json_is_object(root)) {
        rc = lr_fail(LR_E_HEADER, "%s: header: expected a JSON object", name);
        goto out;
    }
    size_t cap = json_object_size(root);
    f->entries = calloc(cap ? cap : 1, sizeof *f->entries);
    f->by_name = calloc(cap ? cap : 1, sizeof *f->by_name);
    if (!f->entries || !f->by_name) {
        rc = lr_fail(LR_E_NOMEM, "%s: header: out of memory", name);
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(v)) {
                rc = lr_fail(LR_E_HEADER, "%s: __metadata__: expected an object", name);
                goto out;
            }
            const char *mk;
            json_t *mv;
            json_object_foreach(v, mk, mv) {
                if (!json_is_string(mv)) {
                    rc = lr_fail(LR_E_HEADER, "%s: __metadata__.%s: expected a string", name, mk);
                    goto out;
                }
            }
            f->metadata = json_incref(v);
            continue;
        }
        lr_st_entry *e = &f->entries[f->n];
        if ((rc = parse_entry(f, key, v, e))) goto out;
        if (!(e->name = strdup(key))) {
            rc = lr_fail(LR_E_NOMEM, "%s: out of memory", name);
            goto out;
        }
        f->by_name[f->n] = e;
        f->n++;
    }

    /* No two tensors may share a byte: sort by offset and compare neighbours. */
    qsort(f->by_name, f->n, sizeof *f->by_name, cmp_offset);
    const lr_st_entry *prev = NULL;
    for (size_t i = 0; i < f->n; i++) {
        const lr_st_entry *e = f->by_name[i];
        if (e->nbytes == 0) continue;
        if (prev && e->offset < prev->offset + prev->nbytes) {
            rc = lr_fail(LR_E_OVERLAP, "%s: tensor \"%s\" overlaps tensor \"%s\"", name, e->name,
                         prev->name);
            goto out;
        }
        prev = e;
    }
    qsort(f->by_name, f->n, sizeof *f->by_name, cmp_name);
out:
    json_decref(root);
    return rc;
}

static int st_new(const char *name, lr_st_file **out) {
    lr_st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(name))) {
        free(f);
        return lr_fail(LR_E_NOMEM, "%s: out of memory", name);
    }
    *out = f;
    return LR_OK;
}

int lr_st_parse(const void *buf, size_t len, const char *name, lr_st_file **out) {
    lr_st_file *f;
    int rc = st_new(name, &f);
    if (rc) return rc;
    if ((rc = parse_header(f, buf, len))) {
        lr_st_close(f);
        return rc;
    }
    *out = f;
    return LR_OK;
}

int lr_st_open(const char *path, lr_st_file **out) {
    void *map;
    size_t len;
    int rc = lr_map_file(path, 8, &map, &len);
    if (rc) return rc;
    lr_st_file *f;
    if ((rc = st_new(path, &f))) {
        if (map) munmap(map, len);
        return rc;
    }
    f->map = map;
    f->map_len = map ? len : 0;
    if ((rc = parse_header(f, f->map, len))) {
        lr_st_close(f);
        return rc;
    }
    *out = f;
    return LR_OK;
}

void lr_st_release(const lr_st_file *f, const lr_st_entry *e) {
    if (!f->map || !e) return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = ((uintptr_t)e->t.data + page - 1) & ~(page - 1);
    uintptr_t hi = ((uintptr_t)e->t.data + (uintptr_t)e->nbytes) & ~(page - 1);
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

void lr_st_close(lr_st_file *f) {
    if (!f) return;
    for (size_t i = 0; i < f->n; i++) free((char *)f->entries[i].name);
    free(f->entries);
    free(f->by_name);
    json_decref(f->metadata);
    if (f->map) munmap(f->map, f->map_len);
    free(f->path);
    free(f);
}

const char *lr_st_path(const lr_st_file *f) { return f->path; }
size_t lr_st_count(const lr_st_file *f) { return f->n; }
const lr_st_entry *lr_st_at(const lr_st_file *f, size_t i) { return i < f->n ? &f->entries[i] : NULL; }

const lr_st_entry *lr_st_find(const lr_st_file *f, const char *name) {
    size_t lo = 0, hi = f->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, f->by_name[mid]->name);
        if (c == 0) return f->by_name[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const char *lr_st_metadata(const lr_st_file *f, const char *key) {
    return f->metadata ? json_string_value(json_object_get(f->metadata, key)) : NULL;
}

/* ---- Writer ---------------------------------------------------------------------- */

typedef struct {
    char *name;
    lr_tensor t; /* data owned unless borrowed */
    size_t nbytes;
    bool borrowed;
} wentry;

struct lr_st_writer {
    wentry *e;
    size_t n, cap;
    json_t *metadata;
};

int lr_st_writer_create(lr_st_writer **out) {
    lr_st_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->metadata = json_object())) {
        free(w);
        return lr_fail(LR_E_NOMEM, "safetensors writer: out of memory");
    }
    *out = w;
    return LR_OK;
}

static int writer_add(lr_st_writer *w, const char *name, const lr_tensor *t, bool copy_data) {
    if (strcmp(name, "__metadata__") == 0)
        return lr_fail(LR_E_INVAL, "safetensors writer: tensor name \"__metadata__\" is reserved");
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->e[i].name, name) == 0)
            return lr_fail(LR_E_INVAL, "safetensors writer: tensor \"%s\" added twice", name);
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 64;
        wentry *e = realloc(w->e, cap * sizeof *e);
        if (!e) return lr_fail(LR_E_NOMEM, "safetensors writer: out of memory");
        w->e = e;
        w->cap = cap;
    }
    size_t nbytes = (size_t)lr_tensor_numel(t) * lr_dtype_size(t->dtype);
    void *copy = copy_data ? malloc(nbytes ? nbytes : 1) : (void *)t->data;
    char *nm = strdup(name);
    if (!copy || !nm) {
        if (copy_data) free(copy);
        free(nm);
        return lr_fail(LR_E_NOMEM, "safetensors writer: out of memory for \"%s\"", name);
    }
    if (copy_data) memcpy(copy, t->data, nbytes);
    wentry *e = &w->e[w->n++];
    e->name = nm;
    e->t = *t;
    e->t.data = copy;
    e->nbytes = nbytes;
    e->borrowed = !copy_data;
    return LR_OK;
}

int lr_st_writer_add(lr_st_writer *w, const char *name, const lr_tensor *t) { return writer_add(w, name, t, true); }
int lr_st_writer_add_ref(lr_st_writer *w, const char *name, const lr_tensor *t) {
    return writer_add(w, name, t, false);
}

int lr_st_writer_set_metadata(lr_st_writer *w, const char *key, const char *value) {
    if (json_object_set_new(w->metadata, key, json_string(value)) != 0)
        return lr_fail(LR_E_INVAL, "safetensors writer: metadata \"%s\": not valid UTF-8", key);
    return LR_OK;
}

/* The file's bytes: length, header padded to 8 with spaces, then every tensor. */
typedef struct {
    const lr_st_writer *w;
    const char *header;
} st_image;

static int write_image(FILE *f, void *user) {
    const st_image *im = user;
    size_t jlen = strlen(im->header), padded = (jlen + 7) / 8 * 8;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    if (fwrite(len8, 1, 8, f) != 8 || fwrite(im->header, 1, jlen, f) != jlen ||
        fwrite("        ", 1, padded - jlen, f) != padded - jlen)
        return -1;
    for (size_t i = 0; i < im->w->n; i++)
        if (fwrite(im->w->e[i].t.data, 1, im->w->e[i].nbytes, f) != im->w->e[i].nbytes) return -1;
    return 0;
}

int lr_st_writer_write(lr_st_writer *w, const char *path, bool overwrite) {
    json_t *hdr = json_object();
    if (!hdr) return lr_fail(LR_E_NOMEM, "%s: out of memory", path);
    if (json_object_size(w->metadata) > 0) json_object_set(hdr, "__metadata__", w->metadata);
    uint64_t off = 0;
    for (size_t i = 0; i < w->n; i++) {
        json_t *shape = json_array();
        for (int d = 0; d < w->e[i].t.ndim; d++) json_array_append_new(shape, json_integer(w->e[i].t.shape[d]));
        json_t *ent = json_pack("{s:s, s:o, s:[I,I]}", "dtype", lr_dtype_name(w->e[i].t.dtype),
                                "shape", shape, "data_offsets", (json_int_t)off,
                                (json_int_t)(off + w->e[i].nbytes));
        if (!ent || json_object_set_new(hdr, w->e[i].name, ent) != 0) {
            json_decref(hdr);
            return lr_fail(LR_E_INVAL, "%s: tensor \"%s\": cannot encode", path, w->e[i].name);
        }
        off += w->e[i].nbytes;
    }
    char *js = json_dumps(hdr, JSON_COMPACT);
    json_decref(hdr);
    if (!js) return lr_fail(LR_E_NOMEM, "%s: cannot encode header", path);
    st_image im = {w, js};
    int rc = lr_write_file_atomic(path, overwrite, write_image, &im);
    free(js);
    return rc;
}

void lr_st_writer_free(lr_st_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) {
        free(w->e[i].name);
        if (!w->e[i].borrowed) free((void *)w->e[i].t.data);
    }
    free(w->e);
    json_decref(w->metadata);
    free(w);
}
