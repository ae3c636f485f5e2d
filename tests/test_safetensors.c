/* test_safetensors.c: the safetensors reader and writer: a round trip of every dtype
 * and rank, the writer's refusal to overwrite and its temporary files, reading from
 * memory, and one small crafted file per kind of bad input, each with its exact status
 * and a message naming the file and the tensor. Also the 16-bit float encodings the
 * test helpers use, against the library's decoding. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* ---- round trip ----------------------------------------------------------------------- */

typedef struct {
    const char *name;
    lr_dtype dtype;
    int ndim;
    int64_t shape[LR_MAX_DIMS];
} spec;

static const spec round_trip_specs[] = {
    {"a.f64", LR_F64, 2, {2, 3}},
    {"b.f32", LR_F32, 1, {5}},
    {"c.f16", LR_F16, 3, {2, 2, 3}},
    {"d.bf16", LR_BF16, 4, {1, 2, 3, 2}},
    {"e.i64", LR_I64, 1, {3}},
    {"f.i32 scalar", LR_I32, 0, {0}},
    {"g.empty", LR_F32, 2, {0, 5}},
    {"h/odd name \"quoted\" \xc3\xbc", LR_BF16, 2, {3, 1}},
};

static size_t spec_bytes(const spec *s) {
    size_t n = 1;
    for (int d = 0; d < s->ndim; d++) n *= (size_t)s->shape[d];
    return n * lr_dtype_size(s->dtype);
}

/* Deterministic bytes for tensor k; variant changes them. */
static unsigned char *spec_data(const spec *s, size_t k, int variant) {
    size_t n = spec_bytes(s);
    unsigned char *b = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(b);
    for (size_t i = 0; i < n; i++) b[i] = (unsigned char)(i * 37 + k * 101 + (size_t)variant * 7 + 1);
    return b;
}

static lr_st_writer *make_writer(int variant) {
    lr_st_writer *w;
    TU_ASSERT_OK(lr_st_writer_create(&w));
    for (size_t k = 0; k < N_ELEMS(round_trip_specs); k++) {
        const spec *s = &round_trip_specs[k];
        unsigned char *data = spec_data(s, k, variant);
        lr_tensor t = {.dtype = s->dtype, .ndim = s->ndim, .data = data};
        memcpy(t.shape, s->shape, sizeof t.shape);
        TU_ASSERT_OK(lr_st_writer_add(w, s->name, &t));
        free(data); /* the writer copied it */
    }
    TU_ASSERT_OK(lr_st_writer_set_metadata(w, "format", "pt"));
    TU_ASSERT_OK(lr_st_writer_set_metadata(w, "note", variant ? "second" : "h\xc3\xa9llo \"quoted\""));
    return w;
}

/* f holds exactly the tensors of make_writer(variant), in order. */
static void check_contents(const lr_st_file *f, int variant) {
    ck_assert_uint_eq(lr_st_count(f), N_ELEMS(round_trip_specs));
    uint64_t off = 0;
    for (size_t k = 0; k < N_ELEMS(round_trip_specs); k++) {
        const spec *s = &round_trip_specs[k];
        const lr_st_entry *e = lr_st_at(f, k);
        ck_assert_ptr_nonnull(e);
        ck_assert_str_eq(e->name, s->name);
        ck_assert_ptr_eq(lr_st_find(f, s->name), e);
        ck_assert_int_eq(e->t.dtype, s->dtype);
        ck_assert_int_eq(e->t.ndim, s->ndim);
        for (int d = 0; d < s->ndim; d++) ck_assert_int_eq(e->t.shape[d], s->shape[d]);
        ck_assert_uint_eq(e->nbytes, spec_bytes(s));
        ck_assert_uint_eq(e->offset, off);
        off += e->nbytes;
        unsigned char *want = spec_data(s, k, variant);
        ck_assert_msg(memcmp(e->t.data, want, spec_bytes(s)) == 0, "bytes of %s differ", s->name);
        free(want);
    }
    ck_assert_ptr_null(lr_st_at(f, N_ELEMS(round_trip_specs)));
    ck_assert_ptr_null(lr_st_find(f, "absent"));
    ck_assert_ptr_null(lr_st_find(f, ""));
    ck_assert_str_eq(lr_st_metadata(f, "format"), "pt");
    ck_assert_str_eq(lr_st_metadata(f, "note"), variant ? "second" : "h\xc3\xa9llo \"quoted\"");
    ck_assert_ptr_null(lr_st_metadata(f, "absent"));
}

START_TEST(round_trip) {
    char *dir = tu_tmpdir("st-round");
    char *path = tu_path(dir, "t.safetensors");
    lr_st_writer *w = make_writer(0);
    TU_ASSERT_OK(lr_st_writer_write(w, path, false));
    lr_st_writer_free(w);

    lr_st_file *f;
    TU_ASSERT_OK(lr_st_open(path, &f));
    ck_assert_str_eq(lr_st_path(f), path);
    check_contents(f, 0);
    lr_st_close(f);

    /* The data section starts 8-byte aligned, as the format recommends. */
    size_t len;
    unsigned char *buf = tu_read_file(path, &len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i];
    ck_assert_uint_eq((8 + hlen) % 8, 0);
    ck_assert_uint_le(8 + hlen, len);
    ck_assert_int_eq(buf[8], '{');

    /* The same bytes parsed from memory point into the caller's buffer. */
    TU_ASSERT_OK(lr_st_parse(buf, len, "in-memory", &f));
    ck_assert_str_eq(lr_st_path(f), "in-memory");
    check_contents(f, 0);
    ck_assert_ptr_eq(lr_st_at(f, 0)->t.data, buf + 8 + hlen);
    lr_st_close(f);
    free(buf);

    ck_assert_uint_eq(tu_dir_count(dir, ""), 1);
    /* Readable by others, like any data file (mkstemp alone would leave it 0600). */
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_msg((st.st_mode & 0044) == 0044, "mode %o", (unsigned)(st.st_mode & 0777));
    free(path);
    tu_tmpdir_free(dir);
}
END_TEST

/* A hand-made file parsed from memory: values through lr_tensor_get. */
START_TEST(parse_memory) {
    static const char hdr[] = "{\"__metadata__\":{\"format\":\"pt\"},"
                              "\"y\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[8,12]},"
                              "\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    size_t hlen = sizeof hdr - 1, len = 8 + hlen + 12;
    unsigned char *buf = calloc(1, len);
    ck_assert_ptr_nonnull(buf);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memcpy(buf + 8, hdr, hlen);
    float xs[2] = {1.5f, -2.0f};
    uint16_t ys[2] = {0x3c00, 0xc500}; /* 1.0, -5.0 */
    memcpy(buf + 8 + hlen, xs, 8);
    memcpy(buf + 8 + hlen + 8, ys, 4);

    lr_st_file *f;
    TU_ASSERT_OK(lr_st_parse(buf, len, "mem", &f));
    ck_assert_uint_eq(lr_st_count(f), 2);
    ck_assert_str_eq(lr_st_at(f, 0)->name, "y"); /* file (header) order, not offset order */
    ck_assert_str_eq(lr_st_at(f, 1)->name, "x");
    const lr_st_entry *x = lr_st_find(f, "x"), *y = lr_st_find(f, "y");
    ck_assert_ptr_eq(x->t.data, buf + 8 + hlen);
    ck_assert_ptr_eq(y->t.data, buf + 8 + hlen + 8);
    ck_assert(lr_tensor_get(&x->t, 0) == 1.5 && lr_tensor_get(&x->t, 1) == -2.0);
    ck_assert(lr_tensor_get(&y->t, 0) == 1.0 && lr_tensor_get(&y->t, 1) == -5.0);
    ck_assert_str_eq(lr_st_metadata(f, "format"), "pt");
    lr_st_close(f);
    free(buf);
}
END_TEST

/* ---- writer ------------------------------------------------------------------------------- */

START_TEST(writer_no_overwrite) {
    char *dir = tu_tmpdir("st-overwrite");
    char *path = tu_path(dir, "t.safetensors");
    lr_st_writer *w = make_writer(0);
    TU_ASSERT_OK(lr_st_writer_write(w, path, false));
    lr_st_writer_free(w);
    size_t len0;
    unsigned char *before = tu_read_file(path, &len0);

    w = make_writer(1);
    TU_ASSERT_STATUS(lr_st_writer_write(w, path, false), LR_E_IO);
    TU_ASSERT_ERROR_HAS(path, "exists");
    size_t len1;
    unsigned char *after = tu_read_file(path, &len1);
    ck_assert_msg(len0 == len1 && memcmp(before, after, len0) == 0, "refused write changed the file");
    free(after);
    ck_assert_uint_eq(tu_dir_count(dir, ".tmp"), 0);
    ck_assert_uint_eq(tu_dir_count(dir, ""), 1);

    /* Asked to, it replaces the file. */
    TU_ASSERT_OK(lr_st_writer_write(w, path, true));
    lr_st_writer_free(w);
    lr_st_file *f;
    TU_ASSERT_OK(lr_st_open(path, &f));
    check_contents(f, 1);
    lr_st_close(f);
    ck_assert_uint_eq(tu_dir_count(dir, ".tmp"), 0);
    ck_assert_uint_eq(tu_dir_count(dir, ""), 1);

    free(before);
    free(path);
    tu_tmpdir_free(dir);
}
END_TEST

START_TEST(writer_errors) {
    char *dir = tu_tmpdir("st-writer");
    lr_st_writer *w;
    TU_ASSERT_OK(lr_st_writer_create(&w));
    float v[2] = {1, 2};
    lr_tensor t = {.dtype = LR_F32, .ndim = 1, .shape = {2}, .data = v};
    TU_ASSERT_OK(lr_st_writer_add(w, "w", &t));
    TU_ASSERT_STATUS(lr_st_writer_add(w, "w", &t), LR_E_INVAL);
    TU_ASSERT_ERROR_HAS("\"w\"");
    TU_ASSERT_STATUS(lr_st_writer_add(w, "__metadata__", &t), LR_E_INVAL);
    TU_ASSERT_ERROR_HAS("__metadata__");
    TU_ASSERT_STATUS(lr_st_writer_set_metadata(w, "bad", "\xff\xfe"), LR_E_INVAL);
    TU_ASSERT_ERROR_HAS("bad");

    /* A folder that does not exist: nothing is created anywhere. */
    char *sub = tu_path(dir, "absent");
    char *path = tu_path(sub, "t.safetensors");
    TU_ASSERT_STATUS(lr_st_writer_write(w, path, false), LR_E_IO);
    TU_ASSERT_ERROR_HAS(path);
    ck_assert_uint_eq(tu_dir_count(dir, ""), 0);
    lr_st_writer_free(w);
    lr_st_writer_free(NULL);
    free(path);
    free(sub);

    /* No tensors at all is a valid file. */
    TU_ASSERT_OK(lr_st_writer_create(&w));
    path = tu_path(dir, "empty.safetensors");
    TU_ASSERT_OK(lr_st_writer_write(w, path, false));
    lr_st_writer_free(w);
    lr_st_file *f;
    TU_ASSERT_OK(lr_st_open(path, &f));
    ck_assert_uint_eq(lr_st_count(f), 0);
    ck_assert_ptr_null(lr_st_at(f, 0));
    ck_assert_ptr_null(lr_st_find(f, "w"));
    ck_assert_ptr_null(lr_st_metadata(f, "format"));
    lr_st_close(f);
    lr_st_close(NULL);
    ck_assert_uint_eq(tu_dir_count(dir, ""), 1);
    free(path);
    tu_tmpdir_free(dir);
}
END_TEST

START_TEST(open_errors) {
    char *dir = tu_tmpdir("st-io");
    char *path = tu_path(dir, "absent.safetensors");
    lr_st_file *f = NULL;
    TU_ASSERT_STATUS(lr_st_open(path, &f), LR_E_IO);
    TU_ASSERT_ERROR_HAS(path);
    TU_ASSERT_STATUS(lr_st_open(dir, &f), LR_E_IO);
    TU_ASSERT_ERROR_HAS(dir);
    ck_assert_ptr_null(f);
    free(path);
    tu_tmpdir_free(dir);
}
END_TEST

/* ---- crafted bad files ----------------------------------------------------------------- */

#define NO_CUT ((size_t)-1)

typedef struct {
    const char *what;   /* also the file name */
    const char *header; /* the JSON header text */
    bool set_hlen;      /* declare hlen instead of the header's real length */
    uint64_t hlen;
    size_t data_len;    /* bytes after the header */
    size_t cut;         /* keep only this many bytes of the file, or NO_CUT */
    int status;
    const char *tensor;  /* what the message must name besides the file ("\"w\""), or NULL */
    const char *tensor2; /* and more, or NULL */
} crafted;

#define F32x2(off0, off1) "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[" #off0 "," #off1 "]}"
static const char HDR_OK[] = "{\"w\":" F32x2(0, 8) "}";

static const crafted bad_files[] = {
    {"empty", HDR_OK, false, 0, 8, 0, LR_E_TRUNCATED, NULL, NULL},
    {"five-bytes", HDR_OK, false, 0, 8, 5, LR_E_TRUNCATED, NULL, NULL},
    {"seven-bytes", HDR_OK, false, 0, 8, 7, LR_E_TRUNCATED, NULL, NULL},
    {"hlen-past-end", "{}", true, 1000, 0, NO_CUT, LR_E_TRUNCATED, NULL, NULL},
    {"hlen-one-past-end", HDR_OK, true, sizeof HDR_OK, 0, NO_CUT, LR_E_TRUNCATED, NULL, NULL},
    {"header-cut", HDR_OK, false, 0, 0, 20, LR_E_TRUNCATED, NULL, NULL},
    {"hlen-over-100MB", HDR_OK, true, 100000001, 8, NO_CUT, LR_E_HEADER, NULL, NULL},
    {"hlen-2^63", HDR_OK, true, (uint64_t)1 << 63, 8, NO_CUT, LR_E_HEADER, NULL, NULL},
    {"hlen-2^64-8", HDR_OK, true, UINT64_MAX - 7, 8, NO_CUT, LR_E_HEADER, NULL, NULL},
    {"hlen-2^64-1", HDR_OK, true, UINT64_MAX, 8, NO_CUT, LR_E_HEADER, NULL, NULL},
    {"hlen-zero", HDR_OK, true, 0, 8, NO_CUT, LR_E_HEADER, NULL, NULL},
    {"not-an-object", "[{\"w\":1}]", false, 0, 0, NO_CUT, LR_E_HEADER, NULL, NULL},
    {"leading-space", " {}", false, 0, 0, NO_CUT, LR_E_HEADER, NULL, NULL},
    {"broken-json", "{\"w\":{\"dtype\":\"F32\",", false, 0, 8, NO_CUT, LR_E_JSON, NULL, NULL},
    {"trailing-garbage", "{}{}", false, 0, 0, NO_CUT, LR_E_JSON, NULL, NULL},
    {"duplicate-key", "{\"w\":" F32x2(0, 8) ",\"w\":" F32x2(8, 16) "}", false, 0, 16, NO_CUT, LR_E_JSON, "\"w\"", NULL},
    {"too-big-offset", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,18446744073709551615]}}",
     false, 0, 8, NO_CUT, LR_E_JSON, NULL, NULL},
    {"unknown-dtype", "{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}", false, 0, 2,
     NO_CUT, LR_E_DTYPE, "\"w\"", "F8_E4M3"},
    {"lowercase-dtype", "{\"ok\":" F32x2(0, 8) ",\"w\":{\"dtype\":\"float32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
     false, 0, 16, NO_CUT, LR_E_DTYPE, "\"w\"", "float32"},
    {"span-short", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", false, 0, 24,
     NO_CUT, LR_E_SPAN, "\"w\"", NULL},
    {"span-long", "{\"w\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,8]}}", false, 0, 8, NO_CUT,
     LR_E_SPAN, "\"w\"", NULL},
    {"span-scalar", "{\"w\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[0,0]}}", false, 0, 8, NO_CUT,
     LR_E_SPAN, "\"w\"", NULL},
    {"numel-overflow", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,2],\"data_offsets\":[0,8]}}",
     false, 0, 8, NO_CUT, LR_E_SPAN, "\"w\"", NULL},
    {"bytes-overflow", "{\"w\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,8]}}",
     false, 0, 8, NO_CUT, LR_E_SPAN, "\"w\"", NULL},
    {"offset-past-end", "{\"w\":" F32x2(0, 8) "}", false, 0, 4, NO_CUT, LR_E_OFFSET, "\"w\"", NULL},
    {"second-past-end", "{\"a\":" F32x2(0, 8) ",\"b\":" F32x2(8, 16) "}", false, 0, 12, NO_CUT, LR_E_OFFSET, "\"b\"", NULL},
    {"offset-far", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[9223372036854775800,9223372036854775807]}}",
     false, 0, 8, NO_CUT, LR_E_SPAN, "\"w\"", NULL},
    {"offset-far-exact", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[9223372036854775799,9223372036854775807]}}",
     false, 0, 8, NO_CUT, LR_E_OFFSET, "\"w\"", NULL},
    {"offsets-reversed", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", false, 0, 8, NO_CUT,
     LR_E_OFFSET, "\"w\"", NULL},
    {"offset-negative", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-4,4]}}", false, 0, 8, NO_CUT,
     LR_E_OFFSET, "\"w\"", NULL},
    {"overlap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
     false, 0, 24, NO_CUT, LR_E_OVERLAP, "\"a\"", "\"b\""},
    {"overlap-same", "{\"a\":" F32x2(0, 8) ",\"b\":" F32x2(0, 8) "}", false, 0, 8, NO_CUT, LR_E_OVERLAP, "\"a\"", "\"b\""},
    {"overlap-inside", "{\"b\":" F32x2(8, 16) ",\"a\":{\"dtype\":\"F32\",\"shape\":[6],\"data_offsets\":[0,24]}}",
     false, 0, 24, NO_CUT, LR_E_OVERLAP, "\"a\"", "\"b\""},
    {"overlap-one-byte", "{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]},"
                         "\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[3,7]}}",
     false, 0, 8, NO_CUT, LR_E_OVERLAP, "\"a\"", "\"b\""},
    {"entry-not-object", "{\"w\":5}", false, 0, 0, NO_CUT, LR_E_HEADER, "\"w\"", NULL},
    {"dtype-missing", "{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", false, 0, 8, NO_CUT, LR_E_HEADER, "\"w\"", NULL},
    {"shape-missing", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", false, 0, 8, NO_CUT, LR_E_HEADER, "\"w\"", NULL},
    {"shape-negative", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", false, 0, 8, NO_CUT,
     LR_E_HEADER, "\"w\"", NULL},
    {"shape-5d", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,2],\"data_offsets\":[0,8]}}", false, 0, 8, NO_CUT,
     LR_E_HEADER, "\"w\"", NULL},
    {"offsets-malformed", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", false, 0, 8, NO_CUT,
     LR_E_HEADER, "\"w\"", NULL},
    {"metadata-not-string", "{\"__metadata__\":{\"format\":1},\"w\":" F32x2(0, 8) "}", false, 0, 8, NO_CUT,
     LR_E_HEADER, "__metadata__.format", NULL},
    {"metadata-not-object", "{\"__metadata__\":[],\"w\":" F32x2(0, 8) "}", false, 0, 8, NO_CUT,
     LR_E_HEADER, "__metadata__", NULL},
};

/* The bytes of a crafted file. */
static unsigned char *craft(const crafted *c, size_t *len) {
    size_t hl = strlen(c->header), n = 8 + hl + c->data_len;
    unsigned char *b = malloc(n);
    ck_assert_ptr_nonnull(b);
    uint64_t declared = c->set_hlen ? c->hlen : (uint64_t)hl;
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(declared >> (8 * i));
    memcpy(b + 8, c->header, hl);
    for (size_t i = 0; i < c->data_len; i++) b[8 + hl + i] = (unsigned char)i;
    *len = c->cut == NO_CUT ? n : c->cut;
    ck_assert_uint_le(*len, n);
    return b;
}

static void assert_names(const crafted *c, const char *file) {
    TU_ASSERT_ERROR_HAS(file);
    if (c->tensor) TU_ASSERT_ERROR_HAS(c->tensor);
    if (c->tensor2) TU_ASSERT_ERROR_HAS(c->tensor2);
}

START_TEST(bad_file) {
    const crafted *c = &bad_files[_i];
    char *dir = tu_tmpdir("st-bad");
    char name[96];
    snprintf(name, sizeof name, "%s.safetensors", c->what);
    char *path = tu_path(dir, name);
    size_t len;
    unsigned char *bytes = craft(c, &len);
    tu_write_file(path, bytes, len);

    lr_st_file *f = NULL;
    int rc = lr_st_open(path, &f);
    ck_assert_msg(rc == c->status, "%s: lr_st_open returned %s, expected %s: %s", c->what,
                  lr_status_name(rc), lr_status_name(c->status), lr_last_error());
    ck_assert_ptr_null(f);
    assert_names(c, path);

    /* From memory: the same verdict, the label in place of the path. */
    rc = lr_st_parse(bytes, len, "memory-label", &f);
    ck_assert_msg(rc == c->status, "%s: lr_st_parse returned %s, expected %s: %s", c->what,
                  lr_status_name(rc), lr_status_name(c->status), lr_last_error());
    ck_assert_ptr_null(f);
    assert_names(c, "memory-label");

    free(bytes);
    free(path);
    tu_tmpdir_free(dir);
}
END_TEST

/* Edge cases the format allows. */
static const crafted good_files[] = {
    {"zero-size-shared-offset", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
                                "\"b\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[0,0]},"
                                "\"c\":" F32x2(0, 8) "}", false, 0, 8, NO_CUT, LR_OK, NULL, NULL},
    {"zero-size-at-end", "{\"c\":" F32x2(0, 8) ",\"z\":{\"dtype\":\"BF16\",\"shape\":[4,0],\"data_offsets\":[8,8]}}",
     false, 0, 8, NO_CUT, LR_OK, NULL, NULL},
    {"out-of-order", "{\"b\":" F32x2(8, 16) ",\"a\":" F32x2(0, 8) "}", false, 0, 16, NO_CUT, LR_OK, NULL, NULL},
    {"adjacent", "{\"a\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,2]},"
                 "\"b\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[2,4]}}", false, 0, 4, NO_CUT, LR_OK, NULL, NULL},
    {"padded-header", "{\"a\":" F32x2(0, 8) "}      ", false, 0, 8, NO_CUT, LR_OK, NULL, NULL},
    {"no-tensors", "{}", false, 0, 0, NO_CUT, LR_OK, NULL, NULL},
    {"scalar", "{\"s\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]}}", false, 0, 8, NO_CUT, LR_OK, NULL, NULL},
};

START_TEST(good_file) {
    const crafted *c = &good_files[_i];
    char *dir = tu_tmpdir("st-good");
    char *path = tu_path(dir, "good.safetensors");
    size_t len;
    unsigned char *bytes = craft(c, &len);
    tu_write_file(path, bytes, len);
    lr_st_file *f;
    TU_ASSERT_OK(lr_st_open(path, &f));
    size_t hl = strlen(c->header);
    for (size_t i = 0; i < lr_st_count(f); i++) {
        const lr_st_entry *e = lr_st_at(f, i);
        ck_assert_uint_eq(e->nbytes, (uint64_t)lr_tensor_numel(&e->t) * lr_dtype_size(e->t.dtype));
        if (e->nbytes)
            ck_assert_msg(memcmp(e->t.data, bytes + 8 + hl + e->offset, e->nbytes) == 0, "%s", e->name);
    }
    lr_st_close(f);
    TU_ASSERT_OK(lr_st_parse(bytes, len, "mem", &f));
    lr_st_close(f);
    free(bytes);
    free(path);
    tu_tmpdir_free(dir);
}
END_TEST

/* ---- dtypes and 16-bit floats ----------------------------------------------------------- */

START_TEST(dtype_names) {
    static const struct {
        lr_dtype dt;
        const char *name;
        size_t size;
    } dts[] = {{LR_F64, "F64", 8}, {LR_F32, "F32", 4}, {LR_F16, "F16", 2},
               {LR_BF16, "BF16", 2}, {LR_I64, "I64", 8}, {LR_I32, "I32", 4}};
    for (size_t i = 0; i < N_ELEMS(dts); i++) {
        ck_assert_str_eq(lr_dtype_name(dts[i].dt), dts[i].name);
        ck_assert_uint_eq(lr_dtype_size(dts[i].dt), dts[i].size);
        lr_dtype got;
        TU_ASSERT_OK(lr_dtype_parse(dts[i].name, &got));
        ck_assert_int_eq(got, dts[i].dt);
    }
    lr_dtype got;
    ck_assert_int_eq(lr_dtype_parse("f32", &got), LR_E_DTYPE);
    ck_assert_int_eq(lr_dtype_parse("U8", &got), LR_E_DTYPE);
    ck_assert_int_eq(lr_dtype_parse("", &got), LR_E_DTYPE);
    ck_assert_str_eq(lr_status_name(LR_E_SPAN), "LR_E_SPAN");
    ck_assert_str_eq(lr_strerror(LR_E_SPAN), "tensor byte span does not match its shape");
}
END_TEST

START_TEST(f16_encoding) {
    static const struct {
        float x;
        uint16_t h;
    } known[] = {
        {0.0f, 0x0000},      {-0.0f, 0x8000},        {1.0f, 0x3c00},        {-2.0f, 0xc000},
        {65504.0f, 0x7bff},  {65519.0f, 0x7bff},     {65520.0f, 0x7c00},    {1e6f, 0x7c00},
        {0.1f, 0x2e66},      {0x1p-14f, 0x0400},     {0x1p-24f, 0x0001},    {0x1p-25f, 0x0000},
        {0x1.8p-25f, 0x0001}, {0x1.ffcp-15f, 0x0400}, {0x1.002p0f, 0x3c00}, {0x1.006p0f, 0x3c02},
        {INFINITY, 0x7c00},  {-INFINITY, 0xfc00},
    };
    for (size_t i = 0; i < N_ELEMS(known); i++)
        ck_assert_msg(tu_f16_from_float(known[i].x) == known[i].h, "f16(%a) = %04x, want %04x",
                      (double)known[i].x, tu_f16_from_float(known[i].x), known[i].h);
    static const struct {
        float x;
        uint16_t h;
    } bknown[] = {{1.0f, 0x3f80}, {-2.0f, 0xc000}, {0x1.008p0f, 0x3f80}, {0x1.018p0f, 0x3f81},
                  {0x1.01p0f, 0x3f80}, {0x1.03p0f, 0x3f82}, {INFINITY, 0x7f80}};
    for (size_t i = 0; i < N_ELEMS(bknown); i++)
        ck_assert_msg(tu_bf16_from_float(bknown[i].x) == bknown[i].h, "bf16(%a) = %04x, want %04x",
                      (double)bknown[i].x, tu_bf16_from_float(bknown[i].x), bknown[i].h);
    ck_assert(isnan(tu_f16_to_double(tu_f16_from_float(NAN))));
    ck_assert(isnan(tu_bf16_to_double(tu_bf16_from_float(NAN))));
}
END_TEST

/* Every 16-bit pattern: the library decodes as the helpers do, exactly, and the
 * helpers' encoders invert their decoders. */
START_TEST(half_decoding_all_patterns) {
    for (uint32_t b = 0; b <= 0xffff; b++) {
        uint16_t h = (uint16_t)b;
        lr_tensor f16 = {.dtype = LR_F16, .ndim = 1, .shape = {1}, .data = &h};
        lr_tensor bf16 = {.dtype = LR_BF16, .ndim = 1, .shape = {1}, .data = &h};
        double a = lr_tensor_get(&f16, 0), e = tu_f16_to_double(h);
        double ab = lr_tensor_get(&bf16, 0), eb = tu_bf16_to_double(h);
        if (isnan(e)) {
            TU_CHECK(isnan(a), "F16 %04x", h);
        } else {
            TU_CHECK(a == e && signbit(a) == signbit(e), "F16 %04x: %a != %a", h, a, e);
            TU_CHECK(tu_f16_from_float((float)e) == h, "F16 %04x does not round-trip", h);
        }
        if (isnan(eb)) {
            TU_CHECK(isnan(ab), "BF16 %04x", h);
        } else {
            TU_CHECK(ab == eb && signbit(ab) == signbit(eb), "BF16 %04x: %a != %a", h, ab, eb);
            TU_CHECK(tu_bf16_from_float((float)eb) == h, "BF16 %04x does not round-trip", h);
        }
        float f32;
        double f64;
        lr_convert(&f32, LR_F32, &h, LR_F16, 1);
        lr_convert(&f64, LR_F64, &h, LR_BF16, 1);
        if (!isnan(e)) TU_CHECK(f32 == e, "F16 %04x to F32", h);
        if (!isnan(eb)) TU_CHECK(f64 == eb, "BF16 %04x to F64", h);
    }
}
END_TEST

static Suite *safetensors_suite(void) {
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("round trip");
    tcase_add_test(tc, round_trip);
    tcase_add_test(tc, parse_memory);
    tcase_add_test(tc, writer_no_overwrite);
    tcase_add_test(tc, writer_errors);
    suite_add_tcase(s, tc);

    tc = tcase_create("bad input");
    tcase_add_test(tc, open_errors);
    tcase_add_loop_test(tc, bad_file, 0, (int)N_ELEMS(bad_files));
    tcase_add_loop_test(tc, good_file, 0, (int)N_ELEMS(good_files));
    suite_add_tcase(s, tc);

    tc = tcase_create("dtypes");
    tcase_add_test(tc, dtype_names);
    tcase_add_test(tc, f16_encoding);
    tcase_add_test(tc, half_decoding_all_patterns);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(safetensors_suite()); }
