/* test_gguf.c: the GGUF reader and loader. Hostile files built here byte by byte (bad
 * magic and versions, truncations at every byte of the header, counts and string lengths
 * near 2^64, bad value types, nested arrays, duplicates, misaligned, overlapping and
 * out-of-file tensors, zero and overflowing dims, missing or wrong llama metadata,
 * shapes the config contradicts), each with its exact status and a message naming the
 * file and the key or tensor. Dequantization against the committed files of
 * tools/make-test-gguf.py (the gguf package's own dequantization, hashed; crafted blocks
 * of every K-quant with the package's values, bit for bit) and hand-made blocks; and the proof of the q/k unpermute: the F32 GGUF of gqa-f32 loads bit for bit
 * equal to its safetensors, and a planted GGUF that skips the permutation does not. */
#include "testutil.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* ---- a GGUF builder ------------------------------------------------------------------ */

enum { T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STRING, T_ARRAY, T_U64, T_I64, T_F64 };

typedef struct {
    unsigned char *b;
    size_t n, cap;
} buf;

static void put(buf *o, const void *p, size_t n) {
    if (o->n + n > o->cap) {
        o->cap = (o->n + n) * 2 + 64;
        o->b = realloc(o->b, o->cap);
        ck_assert_ptr_nonnull(o->b);
    }
    if (n) memcpy(o->b + o->n, p, n);
    o->n += n;
}
static void put_u32(buf *o, uint32_t v) {
    unsigned char x[4];
    for (int i = 0; i < 4; i++)
        x[i] = (unsigned char)(v >> (8 * i));
    put(o, x, 4);
}
static void put_u64(buf *o, uint64_t v) {
    unsigned char x[8];
    for (int i = 0; i < 8; i++)
        x[i] = (unsigned char)(v >> (8 * i));
    put(o, x, 8);
}
static void put_str(buf *o, const char *s) {
    put_u64(o, strlen(s));
    put(o, s, strlen(s));
}
static void put_f32(buf *o, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    put_u32(o, u);
}

typedef struct {
    char key[96];
    uint32_t type;
    buf val; /* the value's bytes after the type */
} kv_t;

typedef struct {
    char name[96];
    uint32_t ndim;
    uint64_t ne[4];
    uint32_t type;
    int64_t offset; /* -1: placed after the previous tensor, aligned */
    buf data;
} tinfo;

typedef struct {
    char magic[5];
    uint32_t version;
    uint64_t align; /* layout alignment (general.alignment is a separate kv) */
    kv_t kv[64];
    int nkv;
    tinfo t[64];
    int nt;
} gfile;

static kv_t *kv_add(gfile *g, const char *key, uint32_t type) {
    ck_assert_int_lt(g->nkv, 64);
    kv_t *k = &g->kv[g->nkv++];
    memset(k, 0, sizeof *k);
    snprintf(k->key, sizeof k->key, "%s", key);
    k->type = type;
    return k;
}
static void kv_u32(gfile *g, const char *key, uint32_t v) { put_u32(&kv_add(g, key, T_U32)->val, v); }
static void kv_f32(gfile *g, const char *key, float v) { put_f32(&kv_add(g, key, T_F32)->val, v); }
static void kv_str(gfile *g, const char *key, const char *s) { put_str(&kv_add(g, key, T_STRING)->val, s); }
static kv_t *kv_find(gfile *g, const char *key) {
    for (int i = 0; i < g->nkv; i++)
        if (strcmp(g->kv[i].key, key) == 0) return &g->kv[i];
    return NULL;
}
static void kv_del(gfile *g, const char *key) {
    kv_t *k = kv_find(g, key);
    ck_assert_ptr_nonnull(k);
    free(k->val.b);
    memmove(k, k + 1, (size_t)(g->kv + g->nkv - k - 1) * sizeof *k);
    g->nkv--;
}
static tinfo *t_find(gfile *g, const char *name) {
    for (int i = 0; i < g->nt; i++)
        if (strcmp(g->t[i].name, name) == 0) return &g->t[i];
    return NULL;
}
static void t_del(gfile *g, const char *name) {
    tinfo *t = t_find(g, name);
    ck_assert_ptr_nonnull(t);
    free(t->data.b);
    memmove(t, t + 1, (size_t)(g->t + g->nt - t - 1) * sizeof *t);
    g->nt--;
}

/* A tensor of ggml type F32 with deterministic values; ne in ggml order. */
static tinfo *t_add(gfile *g, const char *name, uint32_t ndim, uint64_t ne0, uint64_t ne1) {
    ck_assert_int_lt(g->nt, 64);
    tinfo *t = &g->t[g->nt++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    t->ne[0] = ne0;
    t->ne[1] = ne1;
    t->offset = -1;
    uint64_t n = ndim == 1 ? ne0 : ne0 * ne1;
    for (uint64_t i = 0; i < n; i++)
        put_f32(&t->data, (float)tu_uniform(7, name, i));
    return t;
}

/* The small model of every test: vocab 70, hidden 32, intermediate 64, 2 layers, 4
 * heads, 2 KV heads (head size 8), untied, every tensor F32. */
#define M_VOCAB 70
#define M_HIDDEN 32
#define M_INTER 64
#define M_HEADS 4
#define M_KV 2
#define M_HD 8

static void g_init(gfile *g) {
    memset(g, 0, sizeof *g);
    memcpy(g->magic, "GGUF", 5);
    g->version = 3;
    g->align = 32;
    kv_str(g, "general.architecture", "llama");
    kv_str(g, "general.name", "test model");
    kv_u32(g, "llama.block_count", 2);
    kv_u32(g, "llama.context_length", 256);
    kv_u32(g, "llama.embedding_length", M_HIDDEN);
    kv_u32(g, "llama.feed_forward_length", M_INTER);
    kv_u32(g, "llama.attention.head_count", M_HEADS);
    kv_u32(g, "llama.attention.head_count_kv", M_KV);
    kv_f32(g, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    kv_f32(g, "llama.rope.freq_base", 10000.0f);
    kv_u32(g, "llama.rope.dimension_count", M_HD);
    kv_u32(g, "llama.vocab_size", M_VOCAB);
    t_add(g, "token_embd.weight", 2, M_HIDDEN, M_VOCAB);
    for (int l = 0; l < 2; l++) {
        char n[64];
#define T(suffix, nd, a, b)                                                                                  \
    snprintf(n, sizeof n, "blk.%d.%s", l, suffix);                                                           \
    t_add(g, n, nd, a, b)
        T("attn_norm.weight", 1, M_HIDDEN, 0);
        T("attn_q.weight", 2, M_HIDDEN, M_HEADS * M_HD);
        T("attn_k.weight", 2, M_HIDDEN, M_KV * M_HD);
        T("attn_v.weight", 2, M_HIDDEN, M_KV * M_HD);
        T("attn_output.weight", 2, M_HEADS * M_HD, M_HIDDEN);
        T("ffn_norm.weight", 1, M_HIDDEN, 0);
        T("ffn_gate.weight", 2, M_HIDDEN, M_INTER);
        T("ffn_up.weight", 2, M_HIDDEN, M_INTER);
        T("ffn_down.weight", 2, M_INTER, M_HIDDEN);
#undef T
    }
    t_add(g, "output_norm.weight", 1, M_HIDDEN, 0);
    t_add(g, "output.weight", 2, M_HIDDEN, M_VOCAB);
}

static void g_free(gfile *g) {
    for (int i = 0; i < g->nkv; i++)
        free(g->kv[i].val.b);
    for (int i = 0; i < g->nt; i++)
        free(g->t[i].data.b);
}

/* Offsets of the data of each tensor (explicit, or placed in order, aligned). */
static buf serialize(const gfile *g) {
    buf o = {0};
    put(&o, g->magic, 4);
    put_u32(&o, g->version);
    put_u64(&o, (uint64_t)g->nt);
    put_u64(&o, (uint64_t)g->nkv);
    for (int i = 0; i < g->nkv; i++) {
        put_str(&o, g->kv[i].key);
        put_u32(&o, g->kv[i].type);
        put(&o, g->kv[i].val.b, g->kv[i].val.n);
    }
    uint64_t next = 0, offs[64];
    for (int i = 0; i < g->nt; i++) {
        const tinfo *t = &g->t[i];
        offs[i] = t->offset >= 0 ? (uint64_t)t->offset : next;
        next = offs[i] + t->data.n;
        next = (next + g->align - 1) / g->align * g->align;
        put_str(&o, t->name);
        put_u32(&o, t->ndim);
        for (uint32_t d = 0; d < t->ndim && d < 4; d++)
            put_u64(&o, t->ne[d]);
        put_u32(&o, t->type);
        put_u64(&o, offs[i]);
    }
    while (o.n % g->align)
        put(&o, "", 1);
    size_t base = o.n;
    for (int i = 0; i < g->nt; i++) {
        if (g->t[i].data.n == 0) continue;
        size_t end = base + offs[i] + g->t[i].data.n;
        if (end > o.n) {
            size_t grow = end - o.n;
            unsigned char *z = calloc(1, grow);
            put(&o, z, grow);
            free(z);
        }
        memcpy(o.b + base + offs[i], g->t[i].data.b, g->t[i].data.n);
    }
    return o;
}

/* Replaces the first occurrence of pattern (n bytes) in o by repl (n bytes). */
static void patch(buf *o, const void *pattern, const void *repl, size_t n) {
    for (size_t i = 0; i + n <= o->n; i++) {
        if (memcmp(o->b + i, pattern, n) == 0) {
            memcpy(o->b + i, repl, n);
            return;
        }
    }
    ck_abort_msg("patch: pattern not found");
}

static size_t find(const buf *o, const void *pattern, size_t n) {
    for (size_t i = 0; i + n <= o->n; i++)
        if (memcmp(o->b + i, pattern, n) == 0) return i;
    ck_abort_msg("find: pattern not found");
    return 0;
}

static void set_u64_at(buf *o, size_t at, uint64_t v) {
    for (int i = 0; i < 8; i++)
        o->b[at + (size_t)i] = (unsigned char)(v >> (8 * i));
}

/* ---- hostile files: the parser ---------------------------------------------------------- */

typedef struct {
    const char *what;
    void (*make)(gfile *g, buf *o); /* alters the model before (g) and after (o) serializing */
    int status;
    const char *needle; /* the message names it, besides the file */
} bad_case;

#define MK(fn) static void fn(gfile *g, buf *o)
#define SER() (*o = serialize(g))

MK(empty_file) { (void)g, (void)o; }
MK(three_bytes) {
    (void)g;
    put(o, "GGU", 3);
}
MK(bad_magic) {
    memcpy(g->magic, "GGML", 4);
    SER();
}
MK(version_1) {
    g->version = 1;
    SER();
}
MK(version_4) {
    g->version = 4;
    SER();
}
MK(version_big_endian) {
    g->version = 0x03000000u;
    SER();
}
MK(cut_after_version) {
    SER();
    o->n = 8;
}
MK(huge_tensor_count) {
    SER();
    set_u64_at(o, 8, (uint64_t)1 << 62);
}
MK(huge_kv_count) {
    SER();
    set_u64_at(o, 16, UINT64_MAX);
}
MK(key_length_2_64) {
    SER();
    set_u64_at(o, 24, UINT64_MAX - 3);
}
MK(key_length_0) {
    SER();
    set_u64_at(o, 24, 0);
}
MK(key_nul) {
    SER();
    patch(o, "general.name", "gene\0al.name", 12);
}
MK(value_type_13) {
    kv_add(g, "x.bad", 13);
    SER();
}
MK(string_length_2_64) {
    buf *v = &kv_add(g, "x.str", T_STRING)->val;
    put_u64(v, UINT64_MAX - 8);
    put(v, "abc", 3);
    SER();
}
MK(array_elem_type_bad) {
    buf *v = &kv_add(g, "x.arr", T_ARRAY)->val;
    put_u32(v, 99);
    put_u64(v, 1);
    SER();
}
MK(array_count_huge) {
    buf *v = &kv_add(g, "x.arr", T_ARRAY)->val;
    put_u32(v, T_U32);
    put_u64(v, (uint64_t)1 << 61);
    SER();
}
MK(array_of_strings_huge) {
    buf *v = &kv_add(g, "x.arr", T_ARRAY)->val;
    put_u32(v, T_STRING);
    put_u64(v, 2);
    put_str(v, "ok");
    put_u64(v, (uint64_t)1 << 40);
    SER();
}
MK(arrays_nested_deep) {
    buf *v = &kv_add(g, "x.nest", T_ARRAY)->val;
    for (int i = 0; i < 12; i++) {
        put_u32(v, T_ARRAY);
        put_u64(v, 1);
    }
    put_u32(v, T_U8);
    put_u64(v, 0);
    SER();
}
MK(bool_2) {
    put(&kv_add(g, "x.flag", T_BOOL)->val, "\x02", 1);
    SER();
}
MK(duplicate_key) {
    kv_u32(g, "llama.block_count", 2);
    SER();
}
MK(alignment_48) {
    kv_u32(g, "general.alignment", 48);
    SER();
}
MK(alignment_0) {
    kv_u32(g, "general.alignment", 0);
    SER();
}
MK(alignment_string) {
    kv_str(g, "general.alignment", "32");
    SER();
}
MK(name_length_0) {
    snprintf(g->t[3].name, sizeof g->t[3].name, "%s", "");
    SER();
}
MK(name_length_65) {
    memset(g->t[3].name, 'a', 65);
    g->t[3].name[65] = '\0';
    SER();
}
MK(n_dims_0) {
    g->t[2].ndim = 0;
    SER();
}
MK(n_dims_5) {
    g->t[2].ndim = 5;
    SER();
}
MK(dim_zero) {
    g->t[2].ne[1] = 0;
    SER();
}
MK(dims_overflow) {
    g->t[2].ne[0] = (uint64_t)1 << 32;
    g->t[2].ne[1] = (uint64_t)1 << 32;
    SER();
}
MK(dims_overflow_bytes) {
    g->t[2].ne[0] = (uint64_t)1 << 62;
    g->t[2].ne[1] = 1;
    SER();
}
MK(type_unknown) {
    g->t[2].type = 31;
    SER();
}
MK(block_not_divisible) {
    g->t[2].type = 8; /* Q8_0, ne[0] = 32 x 1 ... */
    g->t[2].ne[0] = 33;
    SER();
}
MK(offset_misaligned) {
    g->t[1].offset = 4;
    SER();
}
MK(offset_past_end) {
    g->t[g->nt - 1].offset = (int64_t)1 << 40;
    g->t[g->nt - 1].data.n = 0; /* the bytes are not there */
    SER();
}
MK(offset_wraps) {
    SER();
    /* the last tensor's offset field: the 8 bytes before the padding of the infos */
    size_t at = find(o, "\x0d\0\0\0\0\0\0\0output.weight", 21) + 21 + 4 + 16 + 4;
    set_u64_at(o, at, UINT64_MAX - 31);
}
MK(overlap) {
    g->t[2].offset = 0; /* the embedding's bytes */
    SER();
}
MK(duplicate_tensor) {
    snprintf(g->t[2].name, sizeof g->t[2].name, "%s", "token_embd.weight");
    SER();
}
MK(data_cut) {
    SER();
    o->n -= 100;
}

static const bad_case bad_cases[] = {
    {"empty file", empty_file, LR_E_TRUNCATED, "magic"},
    {"three bytes", three_bytes, LR_E_TRUNCATED, "magic"},
    {"bad magic", bad_magic, LR_E_GGUF, "magic"},
    {"version 1", version_1, LR_E_GGUF, "version: 1"},
    {"version 4", version_4, LR_E_GGUF, "version: 4"},
    {"big-endian version", version_big_endian, LR_E_GGUF, "big-endian"},
    {"cut after the version", cut_after_version, LR_E_TRUNCATED, "tensor_count"},
    {"tensor_count 2^62", huge_tensor_count, LR_E_TRUNCATED, "tensor_count"},
    {"metadata_kv_count 2^64-1", huge_kv_count, LR_E_TRUNCATED, "metadata_kv_count"},
    {"key length near 2^64", key_length_2_64, LR_E_TRUNCATED, "metadata key 0"},
    {"key length 0", key_length_0, LR_E_GGUF, "metadata key 0"},
    {"NUL in a key", key_nul, LR_E_GGUF, "NUL"},
    {"value type 13", value_type_13, LR_E_GGUF, "\"x.bad\""},
    {"string length near 2^64", string_length_2_64, LR_E_TRUNCATED, "\"x.str\""},
    {"array element type 99", array_elem_type_bad, LR_E_GGUF, "\"x.arr\""},
    {"array of 2^61 uint32", array_count_huge, LR_E_TRUNCATED, "\"x.arr\""},
    {"array of strings, one 2^40 long", array_of_strings_huge, LR_E_TRUNCATED, "\"x.arr\""},
    {"arrays nested 12 deep", arrays_nested_deep, LR_E_GGUF, "nested"},
    {"bool 2", bool_2, LR_E_GGUF, "\"x.flag\""},
    {"duplicate key", duplicate_key, LR_E_GGUF, "\"llama.block_count\": key appears more than once"},
    {"general.alignment 48", alignment_48, LR_E_GGUF, "general.alignment"},
    {"general.alignment 0", alignment_0, LR_E_GGUF, "general.alignment"},
    {"general.alignment a string", alignment_string, LR_E_GGUF, "general.alignment"},
    {"tensor name length 0", name_length_0, LR_E_GGUF, "tensor info 3"},
    {"tensor name length 65", name_length_65, LR_E_GGUF, "tensor info 3"},
    {"n_dims 0", n_dims_0, LR_E_GGUF, "\"blk.0.attn_q.weight\": n_dims 0"},
    {"n_dims 5", n_dims_5, LR_E_GGUF, "\"blk.0.attn_q.weight\": n_dims 5"},
    {"a zero dim", dim_zero, LR_E_SPAN, "\"blk.0.attn_q.weight\": ne[1] is 0"},
    {"element count overflows", dims_overflow, LR_E_SPAN, "\"blk.0.attn_q.weight\": element count overflows"},
    {"byte count overflows", dims_overflow_bytes, LR_E_SPAN, "\"blk.0.attn_q.weight\": byte size overflows"},
    {"type 31", type_unknown, LR_E_DTYPE, "\"blk.0.attn_q.weight\": type 31"},
    {"Q8_0 row of 33", block_not_divisible, LR_E_SPAN, "\"blk.0.attn_q.weight\": ne[0] 33"},
    {"misaligned offset", offset_misaligned, LR_E_OFFSET, "\"blk.0.attn_norm.weight\": offset 4"},
    {"offset past the end", offset_past_end, LR_E_OFFSET, "\"output.weight\""},
    {"offset + size wraps", offset_wraps, LR_E_OFFSET, "\"output.weight\""},
    {"tensors overlap", overlap, LR_E_OVERLAP, "overlaps"},
    {"duplicate tensor name", duplicate_tensor, LR_E_GGUF,
     "\"token_embd.weight\": name appears more than once"},
    {"data cut short", data_cut, LR_E_OFFSET, "\"output.weight\""},
};

START_TEST(bad_file) {
    const bad_case *c = &bad_cases[_i];
    gfile g;
    g_init(&g);
    buf o = {0};
    c->make(&g, &o);
    lr_gguf_file *f = NULL;
    /* An exact-size copy, so a read past the end is a read past the allocation. */
    unsigned char *exact = malloc(o.n ? o.n : 1);
    if (o.n) memcpy(exact, o.b, o.n);
    int rc = lr_gguf_parse(exact, o.n, "bad.gguf", &f);
    ck_assert_msg(rc == c->status, "%s: %s, expected %s (%s)", c->what, lr_status_name(rc),
                  lr_status_name(c->status), lr_last_error());
    ck_assert_ptr_null(f);
    TU_ASSERT_ERROR_HAS("bad.gguf: ", c->needle);
    ck_assert_msg(strncmp(lr_last_error(), "bad.gguf: ", 10) == 0, "%s", lr_last_error());
    /* The same through a file and the checkpoint loader. */
    char *dir = tu_tmpdir("gguf-bad");
    char *path = tu_path(dir, "bad.gguf");
    tu_write_file(path, o.b, o.n);
    lr_checkpoint *ck = NULL;
    rc = lr_checkpoint_open(path, &ck);
    if (c->make == empty_file || c->make == three_bytes || c->make == bad_magic) {
        TU_ASSERT_STATUS(rc, LR_E_IO); /* not a GGUF file at all */
    } else {
        ck_assert_msg(rc == c->status, "%s via the checkpoint: %s (%s)", c->what, lr_status_name(rc),
                      lr_last_error());
    }
    TU_ASSERT_ERROR_HAS(path);
    ck_assert_ptr_null(ck);
    free(path);
    tu_tmpdir_free(dir);
    free(exact);
    free(o.b);
    g_free(&g);
}
END_TEST

/* Every prefix of a valid file fails cleanly: each length through the header and the
 * first tensor's bytes, then every 509th (a cut in the data section fails the same
 * way wherever it falls). */
START_TEST(every_truncation) {
    gfile g;
    g_init(&g);
    kv_t *arr = kv_add(&g, "tokenizer.ggml.scores", T_ARRAY);
    put_u32(&arr->val, T_F32);
    put_u64(&arr->val, 3);
    for (int i = 0; i < 3; i++)
        put_f32(&arr->val, (float)i);
    buf o = serialize(&g);
    lr_gguf_file *f;
    TU_ASSERT_OK(lr_gguf_parse(o.b, o.n, "full.gguf", &f));
    size_t data = o.n - 1;
    for (size_t i = 0; i < lr_gguf_tensor_count(f); i++) {
        const lr_gguf_tensor *t = lr_gguf_tensor_at(f, i);
        size_t at = (size_t)((const unsigned char *)t->data - o.b);
        data = at < data ? at : data;
    }
    lr_gguf_close(f);
    for (size_t n = 0; n < o.n; n += n < data + 64 ? 1 : 509) {
        unsigned char *exact = malloc(n ? n : 1);
        memcpy(exact, o.b, n);
        f = NULL;
        int rc = lr_gguf_parse(exact, n, "cut.gguf", &f);
        ck_assert_msg(rc == LR_E_TRUNCATED || rc == LR_E_OFFSET, "cut at %zu: %s (%s)", n, lr_status_name(rc),
                      lr_last_error());
        ck_assert_msg(strncmp(lr_last_error(), "cut.gguf: ", 10) == 0, "%s", lr_last_error());
        ck_assert_ptr_null(f);
        if (n < data)
            TU_CHECK(rc == LR_E_TRUNCATED || n >= data, "cut at %zu in the header: %s", n, lr_last_error());
        free(exact);
    }
    free(o.b);
    g_free(&g);
}
END_TEST

/* What a valid file reads as. */
START_TEST(valid_file) {
    gfile g;
    g_init(&g);
    g.version = 2;
    kv_t *arr = kv_add(&g, "x.nested", T_ARRAY); /* arrays of arrays of strings are legal */
    put_u32(&arr->val, T_ARRAY);
    put_u64(&arr->val, 2);
    for (int i = 0; i < 2; i++) {
        put_u32(&arr->val, T_STRING);
        put_u64(&arr->val, 1);
        put_str(&arr->val, "s");
    }
    put(&kv_add(&g, "x.flag", T_BOOL)->val, "\x01", 1);
    kv_u32(&g, "general.alignment", 64);
    g.align = 64;
    buf o = serialize(&g);
    lr_gguf_file *f;
    TU_ASSERT_OK(lr_gguf_parse(o.b, o.n, "ok.gguf", &f));
    ck_assert_uint_eq(lr_gguf_version(f), 2);
    ck_assert_uint_eq(lr_gguf_alignment(f), 64);
    ck_assert_uint_eq(lr_gguf_kv_count(f), (size_t)g.nkv);
    ck_assert_str_eq(lr_gguf_kv_key(f, 0), "general.architecture");
    ck_assert_ptr_null(lr_gguf_kv_key(f, (size_t)g.nkv));
    char s[32];
    TU_ASSERT_OK(lr_gguf_string(f, "general.name", s, sizeof s));
    ck_assert_str_eq(s, "test model");
    TU_ASSERT_STATUS(lr_gguf_string(f, "general.nope", s, sizeof s), LR_E_MISSING);
    TU_ASSERT_STATUS(lr_gguf_string(f, "llama.block_count", s, sizeof s), LR_E_GGUF);
    ck_assert_uint_eq(lr_gguf_tensor_count(f), (size_t)g.nt);
    for (int i = 0; i < g.nt; i++) {
        const lr_gguf_tensor *t = lr_gguf_tensor_at(f, (size_t)i);
        ck_assert_str_eq(t->name, g.t[i].name);
        ck_assert_ptr_eq(lr_gguf_find_tensor(f, t->name), t);
        ck_assert_uint_eq(t->type, LR_GGML_F32);
        ck_assert_int_eq(t->ndim, (int)g.t[i].ndim);
        ck_assert_uint_eq(t->nbytes, g.t[i].data.n);
        ck_assert_uint_eq(t->offset % 64, 0);
        ck_assert_int_eq(memcmp(t->data, g.t[i].data.b, g.t[i].data.n), 0);
    }
    ck_assert_ptr_null(lr_gguf_find_tensor(f, "nope"));
    ck_assert_str_eq(lr_ggml_type_name(LR_GGML_Q4_1), "Q4_1");
    ck_assert_str_eq(lr_ggml_type_name(14), "Q6_K");
    ck_assert_ptr_null(lr_ggml_type_name(31));
    ck_assert_ptr_null(lr_ggml_type_name(1u << 31));
    lr_gguf_close(f);
    lr_gguf_close(NULL);
    free(o.b);
    g_free(&g);
}
END_TEST

/* ---- hostile files: the metadata and the checkpoint ------------------------------------ */

typedef struct {
    const char *what;
    void (*make)(gfile *g);
    int status;
    const char *needle;
} ck_case;

#define MKG(fn) static void fn(gfile *g)
MKG(no_arch) { kv_del(g, "general.architecture"); }
MKG(arch_gpt2) {
    kv_del(g, "general.architecture");
    kv_str(g, "general.architecture", "gpt2");
}
MKG(arch_not_string) {
    kv_del(g, "general.architecture");
    kv_u32(g, "general.architecture", 1);
}
MKG(no_block_count) { kv_del(g, "llama.block_count"); }
MKG(no_embedding_length) { kv_del(g, "llama.embedding_length"); }
MKG(heads_string) {
    kv_del(g, "llama.attention.head_count");
    kv_str(g, "llama.attention.head_count", "4");
}
MKG(heads_zero) {
    kv_del(g, "llama.attention.head_count");
    kv_u32(g, "llama.attention.head_count", 0);
}
MKG(kv_heads_3) {
    kv_del(g, "llama.attention.head_count_kv");
    kv_u32(g, "llama.attention.head_count_kv", 3);
}
MKG(eps_negative) {
    kv_del(g, "llama.attention.layer_norm_rms_epsilon");
    kv_f32(g, "llama.attention.layer_norm_rms_epsilon", -1.0f);
}
MKG(eps_int) {
    kv_del(g, "llama.attention.layer_norm_rms_epsilon");
    kv_u32(g, "llama.attention.layer_norm_rms_epsilon", 1);
}
MKG(rot_differs) { kv_u32(g, "llama.attention.key_length", 16); }
MKG(rope_yarn) { kv_str(g, "llama.rope.scaling.type", "yarn"); }
MKG(rope_linear_no_factor) { kv_str(g, "llama.rope.scaling.type", "linear"); }
MKG(rope_freqs) { t_add(g, "rope_freqs.weight", 1, M_HD / 2, 0); }
MKG(no_vocab) { kv_del(g, "llama.vocab_size"); }
MKG(block_count_huge) {
    kv_del(g, "llama.block_count");
    put_u64(&kv_add(g, "llama.block_count", T_U64)->val, UINT64_MAX);
}
MKG(q_wrong_shape) {
    tinfo *t = t_find(g, "blk.1.attn_q.weight");
    t->ne[1] = 24;
    t->data.n = 24 * M_HIDDEN * 4;
}
MKG(embd_transposed) {
    tinfo *t = t_find(g, "token_embd.weight");
    t->ne[0] = M_VOCAB;
    t->ne[1] = M_HIDDEN;
}
MKG(extra_layer) { t_add(g, "blk.2.attn_norm.weight", 1, M_HIDDEN, 0); }
MKG(missing_tensor) { t_del(g, "blk.1.ffn_up.weight"); }
MKG(unknown_tensor) { t_add(g, "foo.weight", 1, M_HIDDEN, 0); }
MKG(leading_zero_layer) { snprintf(g->t[1].name, sizeof g->t[1].name, "%s", "blk.00.attn_norm.weight"); }
MKG(iq4_xs) {
    /* a valid IQ4_XS span (256 per 136-byte block) that the loader cannot dequantize */
    tinfo *t = t_find(g, "blk.0.ffn_down.weight");
    t->type = 23;
    t->ne[0] = 256;
    t->ne[1] = 8;
    t->data.n = 8 * 136;
}
MKG(q6_k_wrong_shape) {
    /* a valid Q6_K span (256 per 210-byte block), loadable, but not the shape the
     * metadata implies */
    tinfo *t = t_find(g, "blk.0.ffn_down.weight");
    t->type = LR_GGML_Q6_K;
    t->ne[0] = 256;
    t->ne[1] = 8;
    t->data.n = 8 * 210;
}
MKG(q4_k_short_rows) {
    /* Q4_K rows must hold whole super-blocks of 256: ffn_down's 64 do not */
    tinfo *t = t_find(g, "blk.0.ffn_down.weight");
    t->type = LR_GGML_Q4_K;
    t->data.n = 144;
}
MKG(bias_only_layer_1) { t_add(g, "blk.1.attn_q.bias", 1, M_HEADS * M_HD, 0); }

static const ck_case ck_cases[] = {
    {"no general.architecture", no_arch, LR_E_CONFIG, "\"general.architecture\": required"},
    {"architecture gpt2", arch_gpt2, LR_E_CONFIG, "\"gpt2\" is not supported"},
    {"architecture a number", arch_not_string, LR_E_CONFIG, "\"general.architecture\": uint32"},
    {"no llama.block_count", no_block_count, LR_E_CONFIG, "\"llama.block_count\": required"},
    {"no llama.embedding_length", no_embedding_length, LR_E_CONFIG, "\"llama.embedding_length\""},
    {"head_count a string", heads_string, LR_E_CONFIG, "\"llama.attention.head_count\": string"},
    {"head_count 0", heads_zero, LR_E_CONFIG, "\"llama.attention.head_count\": 0"},
    {"head_count_kv 3 of 4", kv_heads_3, LR_E_CONFIG, "num_key_value_heads: 3 does not divide"},
    {"rms epsilon -1", eps_negative, LR_E_CONFIG, "layer_norm_rms_epsilon"},
    {"rms epsilon an integer", eps_int, LR_E_CONFIG, "layer_norm_rms_epsilon\": uint32"},
    {"rope dimension != key_length", rot_differs, LR_E_CONFIG, "llama.rope.dimension_count"},
    {"rope scaling yarn", rope_yarn, LR_E_CONFIG, "\"yarn\" is not supported"},
    {"linear scaling, no factor", rope_linear_no_factor, LR_E_CONFIG, "llama.rope.scaling.factor"},
    {"rope_freqs.weight", rope_freqs, LR_E_CONFIG, "rope_freqs.weight"},
    {"no vocab_size, no token list", no_vocab, LR_E_CONFIG, "llama.vocab_size"},
    {"block_count 2^64-1", block_count_huge, LR_E_CONFIG, "\"llama.block_count\""},
    {"q weight of 24 rows", q_wrong_shape, LR_E_SHAPE,
     "\"blk.1.attn_q.weight\" (model.layers.1.self_attn.q_proj.weight): shape [24, 32] but the llama.* "
     "metadata implies [32, 32]"},
    {"embedding transposed", embd_transposed, LR_E_SHAPE, "\"token_embd.weight\""},
    {"a third layer", extra_layer, LR_E_UNEXPECTED, "\"blk.2.attn_norm.weight\""},
    {"a tensor missing", missing_tensor, LR_E_MISSING, "model.layers.1.mlp.up_proj.weight"},
    {"an unknown tensor", unknown_tensor, LR_E_UNEXPECTED, "\"foo.weight\": not a tensor of a llama model"},
    {"layer number 00", leading_zero_layer, LR_E_UNEXPECTED, "\"blk.00.attn_norm.weight\""},
    {"an IQ4_XS tensor", iq4_xs, LR_E_DTYPE,
     "\"blk.0.ffn_down.weight\": type IQ4_XS cannot be dequantized (supported: F32, F16, BF16, Q8_0, Q4_0, "
     "Q4_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K)"},
    {"a Q6_K tensor of the wrong shape", q6_k_wrong_shape, LR_E_SHAPE,
     "\"blk.0.ffn_down.weight\" (model.layers.0.mlp.down_proj.weight): shape [8, 256] but the llama.* "
     "metadata implies [32, 64]"},
    {"a Q4_K tensor of 64 columns", q4_k_short_rows, LR_E_SPAN,
     "\"blk.0.ffn_down.weight\": ne[0] 64 is not a multiple of the Q4_K block size 256"},
    {"a q bias in layer 1 only", bias_only_layer_1, LR_E_UNEXPECTED, "\"blk.1.attn_q.bias\""},
};

START_TEST(bad_checkpoint) {
    const ck_case *c = &ck_cases[_i];
    gfile g;
    g_init(&g);
    c->make(&g);
    buf o = serialize(&g);
    char *dir = tu_tmpdir("gguf-ck");
    char *path = tu_path(dir, "model.gguf");
    tu_write_file(path, o.b, o.n);
    lr_checkpoint *ck = NULL;
    int rc = lr_checkpoint_open(path, &ck);
    ck_assert_msg(rc == c->status, "%s: %s, expected %s (%s)", c->what, lr_status_name(rc),
                  lr_status_name(c->status), lr_last_error());
    ck_assert_ptr_null(ck);
    TU_ASSERT_ERROR_HAS(path, c->needle);
    free(path);
    tu_tmpdir_free(dir);
    free(o.b);
    g_free(&g);
}
END_TEST

/* A path that does not exist is reported as missing, not as a config.json missing
 * inside it (a .gguf name or a directory name alike). */
START_TEST(missing_path) {
    char *dir = tu_tmpdir("gguf-missing");
    const char *names[] = {"model.gguf", "checkpoint"};
    for (size_t i = 0; i < N_ELEMS(names); i++) {
        char *path = tu_path(dir, names[i]);
        lr_checkpoint *ck = NULL;
        int rc = lr_checkpoint_open(path, &ck);
        ck_assert_int_eq(rc, LR_E_IO);
        ck_assert_ptr_null(ck);
        TU_ASSERT_ERROR_HAS(path, "No such file or directory");
        ck_assert_msg(!strstr(lr_last_error(), "config.json"), "%s", lr_last_error());
        free(path);
    }
    tu_tmpdir_free(dir);
}
END_TEST

/* Writes g to a fresh file and opens it as a checkpoint. */
static lr_checkpoint *open_built(gfile *g, char **dir_out) {
    buf o = serialize(g);
    char *dir = tu_tmpdir("gguf-ok");
    char *path = tu_path(dir, "model.gguf");
    tu_write_file(path, o.b, o.n);
    lr_checkpoint *ck = NULL;
    TU_ASSERT_OK(lr_checkpoint_open(path, &ck));
    free(path);
    free(o.b);
    *dir_out = dir;
    return ck;
}

/* The metadata as a config, and the tensors as F32 in HF layout. */
START_TEST(config_and_tensors) {
    gfile g;
    g_init(&g);
    char *dir;
    lr_checkpoint *ck = open_built(&g, &dir);
    const lr_config *c = lr_checkpoint_config(ck);
    ck_assert_int_eq(c->vocab_size, M_VOCAB);
    ck_assert_int_eq(c->hidden_size, M_HIDDEN);
    ck_assert_int_eq(c->intermediate_size, M_INTER);
    ck_assert_int_eq(c->num_hidden_layers, 2);
    ck_assert_int_eq(c->num_attention_heads, M_HEADS);
    ck_assert_int_eq(c->num_key_value_heads, M_KV);
    ck_assert_int_eq(c->head_dim, M_HD);
    ck_assert_int_eq(c->max_position_embeddings, 256);
    ck_assert(c->rms_norm_eps == (double)1e-5f);
    ck_assert(c->rope_theta == 10000.0);
    ck_assert_int_eq(c->rope_type, LR_ROPE_DEFAULT);
    ck_assert(!c->tie_word_embeddings && !c->attention_bias && !c->mlp_bias);
    /* Every tensor: F32, dims reversed, the values as written (v, o, mlp, norms are not
     * permuted). */
    const lr_st_entry *e = lr_checkpoint_find(ck, "model.layers.1.mlp.down_proj.weight");
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(e->t.dtype, LR_F32);
    ck_assert_int_eq(e->t.ndim, 2);
    ck_assert_int_eq(e->t.shape[0], M_HIDDEN);
    ck_assert_int_eq(e->t.shape[1], M_INTER);
    const float *w = e->t.data;
    for (int64_t i = 0; i < M_HIDDEN * M_INTER; i++)
        TU_CHECK(w[i] == (float)tu_uniform(7, "blk.1.ffn_down.weight", (uint64_t)i), "down_proj[%lld]",
                 (long long)i);
    e = lr_checkpoint_find(ck, "lm_head.weight");
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(e->t.shape[0], M_VOCAB);
    e = lr_checkpoint_find(ck, "model.norm.weight");
    ck_assert_int_eq(e->t.ndim, 1);
    ck_assert_int_eq(e->t.shape[0], M_HIDDEN);
    ck_assert_str_eq(lr_checkpoint_file_of(ck, "model.norm.weight"), lr_checkpoint_dir(ck));
    ck_assert_ptr_null(lr_checkpoint_find(ck, "output.weight"));
    lr_checkpoint_close(ck);
    tu_tmpdir_free(dir);
    g_free(&g);
}
END_TEST

/* Optional metadata: tied embeddings, vocabulary from the token list, head size from
 * hidden / heads, linear RoPE scaling, biases (unpermuted like their weights). */
START_TEST(config_variants) {
    gfile g;
    g_init(&g);
    t_del(&g, "output.weight");
    kv_del(&g, "llama.vocab_size");
    kv_t *tok = kv_add(&g, "tokenizer.ggml.tokens", T_ARRAY);
    put_u32(&tok->val, T_STRING);
    put_u64(&tok->val, M_VOCAB);
    for (int i = 0; i < M_VOCAB; i++)
        put_str(&tok->val, "t");
    kv_del(&g, "llama.rope.dimension_count");
    kv_str(&g, "llama.rope.scaling.type", "linear");
    kv_f32(&g, "llama.rope.scaling.factor", 4.0f);
    for (int l = 0; l < 2; l++) {
        static const char *b[] = {"attn_q", "attn_k", "attn_v", "attn_output"};
        static const int rows[] = {M_HEADS * M_HD, M_KV * M_HD, M_KV * M_HD, M_HIDDEN};
        for (int k = 0; k < 4; k++) {
            char n[64];
            snprintf(n, sizeof n, "blk.%d.%s.bias", l, b[k]);
            t_add(&g, n, 1, (uint64_t)rows[k], 0);
        }
    }
    char *dir;
    lr_checkpoint *ck = open_built(&g, &dir);
    const lr_config *c = lr_checkpoint_config(ck);
    ck_assert(c->tie_word_embeddings);
    ck_assert(c->attention_bias && !c->mlp_bias);
    ck_assert_int_eq(c->vocab_size, M_VOCAB);
    ck_assert_int_eq(c->head_dim, M_HIDDEN / M_HEADS);
    ck_assert_int_eq(c->rope_type, LR_ROPE_LINEAR);
    ck_assert(c->rope_factor == 4.0);
    ck_assert_ptr_null(lr_checkpoint_find(ck, "lm_head.weight"));
    /* The k bias: GGUF element 2i+s of head h is HF element h*8 + s*4 + i. */
    const lr_st_entry *e = lr_checkpoint_find(ck, "model.layers.1.self_attn.k_proj.bias");
    ck_assert_ptr_nonnull(e);
    const float *kb = e->t.data;
    for (int h = 0; h < M_KV; h++)
        for (int s = 0; s < 2; s++)
            for (int i = 0; i < M_HD / 2; i++)
                ck_assert(kb[h * M_HD + s * (M_HD / 2) + i] ==
                          (float)tu_uniform(7, "blk.1.attn_k.bias", (uint64_t)(h * M_HD + 2 * i + s)));
    /* v is not permuted. */
    e = lr_checkpoint_find(ck, "model.layers.0.self_attn.v_proj.bias");
    for (int i = 0; i < M_KV * M_HD; i++)
        ck_assert(((const float *)e->t.data)[i] == (float)tu_uniform(7, "blk.0.attn_v.bias", (uint64_t)i));
    lr_checkpoint_close(ck);
    tu_tmpdir_free(dir);
    g_free(&g);
}
END_TEST

/* A file that is not GGUF, a missing path, and HF names. */
START_TEST(names_and_paths) {
    char *dir = tu_tmpdir("gguf-paths");
    char *junk = tu_path(dir, "junk.bin");
    tu_write_text(junk, "not a model at all");
    lr_checkpoint *ck = NULL;
    TU_ASSERT_STATUS(lr_checkpoint_open(junk, &ck), LR_E_IO);
    TU_ASSERT_ERROR_HAS(junk, "not a GGUF file");
    lr_gguf_file *f = NULL;
    TU_ASSERT_STATUS(lr_gguf_open(junk, &f), LR_E_GGUF);
    TU_ASSERT_STATUS(lr_gguf_open(dir, &f), LR_E_IO);
    char *missing = tu_path(dir, "missing.gguf");
    TU_ASSERT_STATUS(lr_gguf_open(missing, &f), LR_E_IO);
    TU_ASSERT_ERROR_HAS(missing);
    ck_assert_ptr_null(f);
    static const char *const pairs[][2] = {
        {"token_embd.weight", "model.embed_tokens.weight"},
        {"output_norm.weight", "model.norm.weight"},
        {"output.weight", "lm_head.weight"},
        {"blk.0.attn_norm.weight", "model.layers.0.input_layernorm.weight"},
        {"blk.12.ffn_norm.weight", "model.layers.12.post_attention_layernorm.weight"},
        {"blk.3.attn_q.weight", "model.layers.3.self_attn.q_proj.weight"},
        {"blk.3.attn_k.bias", "model.layers.3.self_attn.k_proj.bias"},
        {"blk.3.attn_v.weight", "model.layers.3.self_attn.v_proj.weight"},
        {"blk.3.attn_output.bias", "model.layers.3.self_attn.o_proj.bias"},
        {"blk.29.ffn_gate.weight", "model.layers.29.mlp.gate_proj.weight"},
        {"blk.29.ffn_up.bias", "model.layers.29.mlp.up_proj.bias"},
        {"blk.29.ffn_down.weight", "model.layers.29.mlp.down_proj.weight"},
    };
    char hf[160];
    for (size_t i = 0; i < N_ELEMS(pairs); i++) {
        TU_ASSERT_OK(lr_gguf_hf_name(pairs[i][0], hf, sizeof hf));
        ck_assert_str_eq(hf, pairs[i][1]);
    }
    static const char *const bad[] = {"blk.x.attn_q.weight",
                                      "blk..attn_q.weight",
                                      "blk.01.attn_q.weight",
                                      "blk.-1.attn_q.weight",
                                      "blk.1.attn_qq.weight",
                                      "blk.1",
                                      "token_embd",
                                      "rope_freqs.weight",
                                      "blk.1234567890.attn_q.weight",
                                      ""};
    for (size_t i = 0; i < N_ELEMS(bad); i++)
        ck_assert_msg(lr_gguf_hf_name(bad[i], hf, sizeof hf) == LR_E_UNEXPECTED, "%s", bad[i]);
    free(junk);
    free(missing);
    tu_tmpdir_free(dir);
}
END_TEST

/* ---- dequantization ------------------------------------------------------------------- */

static uint64_t fnv1a64(const void *p, size_t n) {
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static char *fixture_path(const char *rel) {
    const char *root = getenv("LR_FIXTURES");
    ck_assert_msg(root != NULL, "LR_FIXTURES is not set (run through make check)");
    return tu_path(root, rel);
}

/* Every tensor of every committed GGUF against what the gguf package computed. */
START_TEST(dequantize_like_gguf_package) {
    char *ej = fixture_path("gguf/expected.json");
    json_error_t err;
    json_t *doc = json_load_file(ej, 0, &err);
    ck_assert_msg(doc != NULL, "%s: %s", ej, err.text);
    json_t *files = json_object_get(doc, "files");
    ck_assert_int_eq(json_object_size(files), 3);
    const char *file;
    json_t *tensors;
    int types_seen[64] = {0};
    json_object_foreach(files, file, tensors) {
        char rel[128];
        snprintf(rel, sizeof rel, "gguf/%s", file);
        char *path = fixture_path(rel);
        lr_checkpoint *ck;
        TU_ASSERT_OK(lr_checkpoint_open(path, &ck));
        lr_gguf_file *g;
        TU_ASSERT_OK(lr_gguf_open(path, &g));
        const char *name;
        json_t *want;
        size_t n = 0;
        json_object_foreach(tensors, name, want) {
            const lr_st_entry *e = lr_checkpoint_find(ck, name);
            ck_assert_msg(e != NULL, "%s: %s missing", file, name);
            const lr_gguf_tensor *gt =
                lr_gguf_find_tensor(g, json_string_value(json_object_get(want, "gguf")));
            ck_assert_ptr_nonnull(gt);
            ck_assert_str_eq(lr_ggml_type_name(gt->type), json_string_value(json_object_get(want, "type")));
            types_seen[gt->type] = 1;
            json_t *shape = json_object_get(want, "shape");
            ck_assert_int_eq(e->t.ndim, (int)json_array_size(shape));
            for (int d = 0; d < e->t.ndim; d++)
                ck_assert_int_eq(e->t.shape[d], json_integer_value(json_array_get(shape, (size_t)d)));
            char hash[17];
            snprintf(hash, sizeof hash, "%016llx", (unsigned long long)fnv1a64(e->t.data, e->nbytes));
            ck_assert_msg(strcmp(hash, json_string_value(json_object_get(want, "fnv1a64"))) == 0,
                          "%s: %s (%s): hash %s, the gguf package's is %s; first value %.9g, expected %.9g",
                          file, name, lr_ggml_type_name(gt->type), hash,
                          json_string_value(json_object_get(want, "fnv1a64")), ((const float *)e->t.data)[0],
                          json_real_value(json_array_get(json_object_get(want, "first"), 0)));
            n++;
        }
        ck_assert_uint_eq(n, lr_gguf_tensor_count(g)); /* every tensor of the file */
        ck_assert_uint_eq(n, strcmp(file, "kquant-mixed.gguf") == 0 ? 1 + 9 + 2 : 1 + 9 * 3 + 2);
        lr_gguf_close(g);
        lr_checkpoint_close(ck);
        free(path);
    }
    static const uint32_t all[] = {LR_GGML_F32,  LR_GGML_F16,  LR_GGML_BF16, LR_GGML_Q8_0,
                                   LR_GGML_Q4_0, LR_GGML_Q4_1, LR_GGML_Q2_K, LR_GGML_Q3_K,
                                   LR_GGML_Q4_K, LR_GGML_Q5_K, LR_GGML_Q6_K, LR_GGML_Q8_K};
    for (size_t i = 0; i < N_ELEMS(all); i++)
        ck_assert_msg(types_seen[all[i]], "type %s not covered", lr_ggml_type_name(all[i]));
    json_decref(doc);
    free(ej);
}
END_TEST

/* Hand-made blocks, against the formulas computed here. Also a finding: a fused
 * multiply-add cannot change Q4_1 (x = q*d + m), because q*d is exact in float32 (an
 * 11-bit float16 mantissa times a 4-bit q; 8-bit for Q8_0), checked here for every
 * float16 d and every q; only the add rounds, once, fused or not. */
START_TEST(dequantize_blocks) {
    unsigned char blk[20];
    float y[32];
    lr_gguf_tensor t = {.name = "blk", .ndim = 1, .ne = {32}, .data = blk};
    for (uint32_t v = 0; v < 65536; v++) {
        double d = tu_f16_to_double((uint16_t)v);
        if (!isfinite(d)) continue;
        for (int q = -128; q < 128; q++)
            TU_CHECK((double)(float)(q * d) == q * d, "q %d * d %04x inexact", q, v);
    }

    /* Q8_0: d = 0.5, q = -128..127 spread. */
    unsigned char q8[34] = {0x00, 0x38};
    for (int j = 0; j < 32; j++)
        q8[2 + j] = (unsigned char)(int8_t)(j * 8 - 128);
    t.type = LR_GGML_Q8_0;
    t.data = q8;
    TU_ASSERT_OK(lr_gguf_dequantize(&t, y));
    for (int j = 0; j < 32; j++)
        ck_assert(y[j] == (float)(j * 8 - 128) * 0.5f);

    /* Q4_0: d = -1.5 (0xbe00); low nibbles first, then high; minus 8. */
    unsigned char q40[18] = {0x00, 0xbe};
    for (int j = 0; j < 16; j++)
        q40[2 + j] = (unsigned char)(j | ((15 - j) << 4));
    t.type = LR_GGML_Q4_0;
    t.data = q40;
    TU_ASSERT_OK(lr_gguf_dequantize(&t, y));
    for (int j = 0; j < 16; j++) {
        ck_assert(y[j] == (float)(j - 8) * -1.5f);
        ck_assert(y[j + 16] == (float)(15 - j - 8) * -1.5f);
    }

    /* Q4_1: d = 0x3555 (a full mantissa), m = -0.0999 (0xae66); x = q * d + m. */
    blk[0] = 0x55, blk[1] = 0x35, blk[2] = 0x66, blk[3] = 0xae;
    for (int j = 0; j < 16; j++)
        blk[4 + j] = (unsigned char)(j | ((15 - j) << 4));
    t.type = LR_GGML_Q4_1;
    t.data = blk;
    TU_ASSERT_OK(lr_gguf_dequantize(&t, y));
    double d = tu_f16_to_double(0x3555), m = tu_f16_to_double(0xae66);
    for (int j = 0; j < 16; j++) {
        ck_assert_msg(y[j] == (float)(j * d + m), "Q4_1 %d: %.9g, expected %.9g", j, y[j],
                      (float)(j * d + m));
        ck_assert(y[j + 16] == (float)((15 - j) * d + m));
    }

    /* F16 and BF16: every bit pattern against the test's own decoding. */
    uint16_t h[1];
    t.ne[0] = 1;
    t.data = h;
    for (uint32_t v = 0; v < 65536; v++) {
        h[0] = (uint16_t)v;
        t.type = LR_GGML_F16;
        TU_ASSERT_OK(lr_gguf_dequantize(&t, y));
        double want = tu_f16_to_double(h[0]);
        TU_CHECK(isnan(want) ? isnan(y[0]) : y[0] == (float)want && !signbit(y[0]) == !signbit(want),
                 "F16 %04x", v);
        t.type = LR_GGML_BF16;
        TU_ASSERT_OK(lr_gguf_dequantize(&t, y));
        want = tu_bf16_to_double(h[0]);
        TU_CHECK(isnan(want) ? isnan(y[0]) : y[0] == (float)want && !signbit(y[0]) == !signbit(want),
                 "BF16 %04x", v);
    }
    t.type = 6; /* Q5_0 */
    TU_ASSERT_STATUS(lr_gguf_dequantize(&t, y), LR_E_DTYPE);
    TU_ASSERT_ERROR_HAS("Q5_0", "Q6_K");
}
END_TEST

/* The K-quants' products are exact in float32, so the order of (d * scale) * q and any
 * contraction are immaterial (see gguf.c): an 11-bit float16 significand times an
 * integer of magnitude below 2^12 (Q6_K's |scale * (q - 32)| <= 128 * 32) has at most 23
 * significant bits. Checked for every significand and every such integer, and for every
 * finite float16 (subnormals and the largest included) at the extreme integers. */
START_TEST(kquant_products_exact) {
    for (uint32_t m = 0; m < 1024; m++) {
        double d = tu_f16_to_double((uint16_t)(0x3c00 | m));
        for (int k = -4096; k <= 4096; k++)
            TU_CHECK((double)(float)(k * d) == k * d, "k %d * d %04x inexact", k, 0x3c00 | m);
    }
    static const int extreme[] = {4095, -4095, 128 * 32, -128 * 31, 63 * 31, 15 * 3};
    for (uint32_t v = 0; v < 65536; v++) {
        double d = tu_f16_to_double((uint16_t)v);
        if (!isfinite(d)) continue;
        for (size_t i = 0; i < N_ELEMS(extreme); i++)
            TU_CHECK((double)(float)(extreme[i] * d) == extreme[i] * d, "k %d * d %04x inexact", extreme[i],
                     v);
    }
}
END_TEST

static uint32_t rd32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Crafted blocks of every K-quant (random bytes; d and dmin over the float16 edge cases
 * and random finite values) against the gguf package's own dequantization, bit for bit:
 * tests/data/kquant-blocks.bin, written by tools/make-test-gguf.py (its format is there;
 * tests/test_gguf_kquant.sh regenerates it live when the package is installed). The
 * output buffer is fenced by sentinels, so a write past the last block shows. */
START_TEST(dequantize_kquant_blocks) {
    static const struct {
        uint32_t type, size;
    } kq[] = {{LR_GGML_Q2_K, 84},  {LR_GGML_Q3_K, 110}, {LR_GGML_Q4_K, 144},
              {LR_GGML_Q5_K, 176}, {LR_GGML_Q6_K, 210}, {LR_GGML_Q8_K, 292}};
    char *path = fixture_path("../tests/data/kquant-blocks.bin");
    size_t len;
    unsigned char *b = tu_read_file(path, &len);
    ck_assert_msg(b != NULL, "%s: cannot read", path);
    ck_assert_msg(len >= 12 && memcmp(b, "LRKQ", 4) == 0 && rd32(b + 4) == 1, "%s: not an LRKQ v1 file",
                  path);
    uint32_t entries = rd32(b + 8);
    ck_assert_uint_eq(entries, N_ELEMS(kq));
    size_t pos = 12;
    int seen[N_ELEMS(kq)] = {0};
    for (uint32_t e = 0; e < entries; e++) {
        ck_assert_msg(pos + 12 <= len, "%s: entry %u truncated", path, e);
        uint32_t type = rd32(b + pos), nb = rd32(b + pos + 4), size = rd32(b + pos + 8);
        pos += 12;
        size_t k = 0;
        while (k < N_ELEMS(kq) && kq[k].type != type)
            k++;
        ck_assert_msg(k < N_ELEMS(kq), "%s: entry %u: type %u is not a K-quant", path, e, type);
        ck_assert_uint_eq(size, kq[k].size);
        ck_assert_uint_ge(nb, 2);
        seen[k]++;
        ck_assert_msg(pos + (size_t)nb * (size + 256 * 4) <= len, "%s: entry %u truncated", path, e);
        const unsigned char *blocks = b + pos, *want = b + pos + (size_t)nb * size;
        pos += (size_t)nb * (size + 256 * 4);
        size_t n = (size_t)nb * 256;
        float *y = malloc((n + 8) * sizeof *y);
        ck_assert_ptr_nonnull(y);
        const uint32_t sentinel = 0x7fc0dead;
        for (size_t i = n; i < n + 8; i++)
            memcpy(&y[i], &sentinel, 4);
        /* As a 2-D tensor of two rows, as a file holds it. */
        lr_gguf_tensor t = {.name = "kq", .type = type, .ndim = 2, .ne = {(int64_t)n / 2, 2}, .data = blocks};
        if (nb % 2) t.ndim = 1, t.ne[0] = (int64_t)n, t.ne[1] = 0;
        TU_ASSERT_OK(lr_gguf_dequantize(&t, y));
        size_t bad = 0;
        for (size_t i = 0; i < n; i++) {
            uint32_t got, exp = rd32(want + 4 * i);
            memcpy(&got, &y[i], 4);
            if (got != exp && bad++ < 5) {
                float fe;
                memcpy(&fe, &exp, 4);
                printf("%s block %zu element %zu: %.9g (%08x), the gguf package's %.9g (%08x)\n",
                       lr_ggml_type_name(type), i / 256, i % 256, y[i], got, fe, exp);
            }
        }
        ck_assert_msg(bad == 0, "%s: %zu of %zu values differ from the gguf package's",
                      lr_ggml_type_name(type), bad, n);
        for (size_t i = n; i < n + 8; i++)
            ck_assert_msg(memcmp(&y[i], &sentinel, 4) == 0, "%s: wrote past the end",
                          lr_ggml_type_name(type));
        free(y);
    }
    ck_assert_uint_eq(pos, len);
    for (size_t k = 0; k < N_ELEMS(kq); k++)
        ck_assert_msg(seen[k] == 1, "%s appears %d times", lr_ggml_type_name(kq[k].type), seen[k]);
    free(b);
    free(path);
}
END_TEST

/* ---- the q/k permutation ---------------------------------------------------------------- */

/* The converter's permutation, by index: for n_head heads of D rows, GGUF row
 * h*D + 2*i + s holds HF row h*D + s*(D/2) + i. */
START_TEST(unpermute_by_index) {
    const int64_t heads = 3, D = 6, cols = 2, rows = heads * D;
    float w[36];
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            w[r * cols + c] = (float)(r * 10 + c); /* GGUF row r */
    TU_ASSERT_OK(lr_gguf_unpermute(w, rows, cols, heads));
    for (int64_t h = 0; h < heads; h++)
        for (int64_t s = 0; s < 2; s++)
            for (int64_t i = 0; i < D / 2; i++)
                for (int64_t c = 0; c < cols; c++)
                    ck_assert(w[(h * D + s * (D / 2) + i) * cols + c] ==
                              (float)((h * D + 2 * i + s) * 10 + c));
    TU_ASSERT_STATUS(lr_gguf_unpermute(w, 18, 2, 4), LR_E_SHAPE);
    TU_ASSERT_STATUS(lr_gguf_unpermute(w, 18, 2, 6), LR_E_SHAPE); /* heads of 3 rows: odd */
}
END_TEST

/* The proof: the F32 GGUF that tools/make-test-gguf.py made from gqa-f32 (q and k
 * permuted by the script's own code) loads bit for bit equal to the safetensors; a copy
 * whose q and k are stored unpermuted (HF order) does not, and every other tensor still
 * does. */
START_TEST(unpermute_proof) {
    char *model = fixture_path("models/gqa-f32"), *gpath = fixture_path("gguf/gqa-f32.gguf");
    lr_checkpoint *hf, *gg;
    TU_ASSERT_OK(lr_checkpoint_open(model, &hf));
    TU_ASSERT_OK(lr_checkpoint_open(gpath, &gg));
    const lr_config *a = lr_checkpoint_config(hf), *b = lr_checkpoint_config(gg);
    ck_assert_int_eq(a->num_key_value_heads, b->num_key_value_heads);
    ck_assert_int_eq(a->num_attention_heads, b->num_attention_heads);
    ck_assert_int_eq(a->head_dim, b->head_dim);
    ck_assert(a->rope_theta == b->rope_theta && a->tie_word_embeddings == b->tie_word_embeddings);

    /* The planted file: the GGUF bytes with q and k overwritten in HF order. */
    size_t len;
    unsigned char *bytes = tu_read_file(gpath, &len);
    lr_gguf_file *g;
    TU_ASSERT_OK(lr_gguf_parse(bytes, len, "gqa", &g));
    unsigned char *planted = malloc(len);
    memcpy(planted, bytes, len);
    size_t n_qk = 0;
    for (size_t i = 0; i < lr_gguf_tensor_count(g); i++) {
        const lr_gguf_tensor *t = lr_gguf_tensor_at(g, i);
        char hfname[160];
        TU_ASSERT_OK(lr_gguf_hf_name(t->name, hfname, sizeof hfname));
        if (!strstr(hfname, "q_proj") && !strstr(hfname, "k_proj")) continue;
        const lr_st_entry *e = lr_checkpoint_find(hf, hfname);
        ck_assert_uint_eq(e->nbytes, t->nbytes);
        memcpy(planted + ((const unsigned char *)t->data - bytes), e->t.data, t->nbytes);
        n_qk++;
    }
    ck_assert_uint_eq(n_qk, 2 * 3);
    lr_gguf_close(g);
    char *dir = tu_tmpdir("gguf-planted");
    char *ppath = tu_path(dir, "planted.gguf");
    tu_write_file(ppath, planted, len);
    lr_checkpoint *pl;
    TU_ASSERT_OK(lr_checkpoint_open(ppath, &pl));

    size_t compared = 0, differ = 0;
    lr_gguf_file *gf;
    TU_ASSERT_OK(lr_gguf_open(gpath, &gf));
    for (size_t i = 0; i < lr_gguf_tensor_count(gf); i++) {
        char hfname[160];
        TU_ASSERT_OK(lr_gguf_hf_name(lr_gguf_tensor_at(gf, i)->name, hfname, sizeof hfname));
        const lr_st_entry *x = lr_checkpoint_find(hf, hfname), *y = lr_checkpoint_find(gg, hfname),
                          *z = lr_checkpoint_find(pl, hfname);
        ck_assert_ptr_nonnull(x);
        ck_assert_ptr_nonnull(y);
        ck_assert_int_eq(x->t.ndim, y->t.ndim);
        for (int d = 0; d < x->t.ndim; d++)
            ck_assert_int_eq(x->t.shape[d], y->t.shape[d]);
        ck_assert_uint_eq(x->nbytes, y->nbytes);
        ck_assert_msg(memcmp(x->t.data, y->t.data, x->nbytes) == 0, "%s: GGUF differs from safetensors",
                      hfname);
        bool qk = strstr(hfname, "q_proj") || strstr(hfname, "k_proj");
        bool same = memcmp(x->t.data, z->t.data, x->nbytes) == 0;
        ck_assert_msg(same != qk, "%s: planted file %s", hfname, same ? "agrees" : "differs");
        differ += !same;
        compared++;
    }
    ck_assert_uint_eq(compared, 30);
    ck_assert_uint_eq(differ, 6);
    lr_gguf_close(gf);
    lr_checkpoint_close(pl);
    lr_checkpoint_close(gg);
    lr_checkpoint_close(hf);
    free(planted);
    free(bytes);
    free(ppath);
    tu_tmpdir_free(dir);
    free(model);
    free(gpath);
}
END_TEST

/* ---- writing a Hugging Face checkpoint --------------------------------------------------- */

START_TEST(save_round_trip) {
    char *gpath = fixture_path("gguf/gqa-mixed.gguf");
    lr_checkpoint *gg, *back;
    TU_ASSERT_OK(lr_checkpoint_open(gpath, &gg));
    char *dir = tu_tmpdir("gguf-save");
    char *out = tu_path(dir, "hf");
    TU_ASSERT_OK(lr_checkpoint_save(gg, out, false));
    ck_assert_uint_eq(tu_dir_count(out, ".tmp."), 0);
    TU_ASSERT_OK(lr_checkpoint_open(out, &back));
    const lr_config *a = lr_checkpoint_config(gg), *b = lr_checkpoint_config(back);
    ck_assert(memcmp(a, b, offsetof(lr_config, config_style)) == 0);
    size_t n = 0;
    lr_st_file *st;
    char *stp = tu_path(out, "model.safetensors");
    TU_ASSERT_OK(lr_st_open(stp, &st));
    ck_assert_str_eq(lr_st_metadata(st, "format"), "pt");
    for (size_t i = 0; i < lr_st_count(st); i++) {
        const lr_st_entry *x = lr_st_at(st, i), *y = lr_checkpoint_find(gg, x->name);
        ck_assert_ptr_nonnull(y);
        ck_assert_int_eq(x->t.dtype, LR_F32);
        ck_assert_uint_eq(x->nbytes, y->nbytes);
        ck_assert(memcmp(x->t.data, y->t.data, x->nbytes) == 0);
        n++;
    }
    ck_assert_uint_eq(n, 30);
    lr_st_close(st);
    /* No overwriting without the flag; never the input. */
    TU_ASSERT_STATUS(lr_checkpoint_save(gg, out, false), LR_E_IO);
    TU_ASSERT_ERROR_HAS("model.safetensors", "already exists");
    TU_ASSERT_OK(lr_checkpoint_save(gg, out, true));
    TU_ASSERT_STATUS(lr_checkpoint_save(back, out, true), LR_E_INVAL);
    TU_ASSERT_ERROR_HAS("is the input");
    char *file = tu_path(dir, "a-file");
    tu_write_text(file, "x");
    TU_ASSERT_STATUS(lr_checkpoint_save(gg, file, false), LR_E_IO);
    TU_ASSERT_ERROR_HAS(file, "not a directory");
    lr_checkpoint_close(back);
    lr_checkpoint_close(gg);
    free(file);
    free(stp);
    free(out);
    tu_tmpdir_free(dir);
    free(gpath);
}
END_TEST

static Suite *gguf_suite(void) {
    Suite *s = suite_create("gguf");
    TCase *tc = tcase_create("parser");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, bad_file, 0, (int)N_ELEMS(bad_cases));
    tcase_add_test(tc, every_truncation);
    tcase_add_test(tc, valid_file);
    suite_add_tcase(s, tc);

    tc = tcase_create("checkpoint");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, bad_checkpoint, 0, (int)N_ELEMS(ck_cases));
    tcase_add_test(tc, missing_path);
    tcase_add_test(tc, config_and_tensors);
    tcase_add_test(tc, config_variants);
    tcase_add_test(tc, names_and_paths);
    tcase_add_test(tc, save_round_trip);
    suite_add_tcase(s, tc);

    tc = tcase_create("dequantization and permutation");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, dequantize_like_gguf_package);
    tcase_add_test(tc, dequantize_blocks);
    tcase_add_test(tc, kquant_products_exact);
    tcase_add_test(tc, dequantize_kquant_blocks);
    tcase_add_test(tc, unpermute_by_index);
    tcase_add_test(tc, unpermute_proof);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(gguf_suite()); }
