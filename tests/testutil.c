/* testutil.c: the helpers of testutil.h: scratch files, 16-bit float encoding and
 * synthetic Hugging Face checkpoints written through lr_st_writer. */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *tu_first_missing(const char *haystack, const char *const *needles) {
    for (size_t i = 0; needles[i]; i++)
        if (!strstr(haystack, needles[i])) return needles[i];
    return NULL;
}

/* ---- Scratch directories and files ------------------------------------------------- */

char *tu_tmpdir(const char *tag) {
    const char *base = getenv("LR_TMPDIR");
    if (!base || !*base) base = "/tmp";
    size_t n = strlen(base) + strlen(tag) + 16;
    char *p = malloc(n);
    ck_assert_ptr_nonnull(p);
    snprintf(p, n, "%s/%s-XXXXXX", base, tag);
    ck_assert_msg(mkdtemp(p) != NULL, "mkdtemp %s: %s", p, strerror(errno));
    return p;
}

static void rmtree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (d) {
            struct dirent *e;
            while ((e = readdir(d))) {
                if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
                char *sub = tu_path(path, e->d_name);
                rmtree(sub);
                free(sub);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

void tu_tmpdir_free(char *dir) {
    if (!dir) return;
    rmtree(dir);
    free(dir);
}

char *tu_path(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    ck_assert_ptr_nonnull(p);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

void tu_write_file(const char *path, const void *data, size_t len) {
    FILE *fp = fopen(path, "wb");
    ck_assert_msg(fp != NULL, "cannot create %s: %s", path, strerror(errno));
    size_t put = len ? fwrite(data, 1, len, fp) : 0;
    int closed = fclose(fp);
    ck_assert_msg(put == len && closed == 0, "cannot write %s", path);
}

void tu_write_text(const char *path, const char *text) { tu_write_file(path, text, strlen(text)); }

void tu_write_json(const char *path, const json_t *j) {
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    ck_assert_ptr_nonnull(s);
    tu_write_text(path, s);
    free(s);
}

void *tu_read_file(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    ck_assert_msg(fp != NULL, "cannot open %s: %s", path, strerror(errno));
    ck_assert_int_eq(fseek(fp, 0, SEEK_END), 0);
    long size = ftell(fp);
    ck_assert_int_ge(size, 0);
    rewind(fp);
    char *buf = malloc((size_t)size + 1);
    ck_assert_ptr_nonnull(buf);
    size_t got = fread(buf, 1, (size_t)size, fp);
    fclose(fp);
    ck_assert_msg(got == (size_t)size, "short read of %s", path);
    buf[size] = '\0';
    *len = (size_t)size;
    return buf;
}

size_t tu_dir_count(const char *dir, const char *substr) {
    DIR *d = opendir(dir);
    ck_assert_msg(d != NULL, "cannot list %s: %s", dir, strerror(errno));
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (strstr(e->d_name, substr)) n++;
    }
    closedir(d);
    return n;
}

/* ---- 16-bit floats ----------------------------------------------------------------- */

uint16_t tu_f16_from_float(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00u; /* NaN */
    if (a >= 0x477ff000u) return sign | 0x7c00u; /* >= 65520 rounds to infinity */
    if (a < 0x38800000u) {
        /* Below 2^-14: a half subnormal, a multiple of 2^-24. Scaling by 2^24 is exact
         * in double; nearbyint rounds half to even (the default rounding mode). A
         * result of 1024 is the smallest normal, whose encoding is the same number. */
        float f;
        memcpy(&f, &a, sizeof f);
        return sign | (uint16_t)nearbyint((double)f * 16777216.0);
    }
    uint32_t exp = (a >> 23) - 127 + 15, man = a & 0x7fffffu;
    uint32_t h = (exp << 10) | (man >> 13), rest = man & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++; /* a carry bumps the exponent */
    return sign | (uint16_t)h;
}

uint16_t tu_bf16_from_float(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

double tu_f16_to_double(uint16_t h) {
    double sign = (h & 0x8000u) ? -1.0 : 1.0;
    unsigned e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0x1f) return m ? NAN : sign * INFINITY;
    if (e == 0) return sign * (double)m / 16777216.0; /* m * 2^-24 */
    return sign * (1.0 + (double)m / 1024.0) * pow(2.0, (double)e - 15.0);
}

double tu_bf16_to_double(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return (double)f;
}

/* ---- Deterministic values -------------------------------------------------------- */

static uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

double tu_uniform(uint64_t seed, const char *key, uint64_t i) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) h = (h ^ *p) * 0x100000001b3ull;
    uint64_t x = splitmix64(splitmix64(h ^ splitmix64(seed)) + i);
    return ((double)(x >> 40) - 8388608.0) / 8388608.0;
}

/* ---- Synthetic checkpoints ----------------------------------------------------------- */

void tu_config_small(lr_config *c) {
    memset(c, 0, sizeof *c);
    c->vocab_size = 70;
    c->hidden_size = 32;
    c->intermediate_size = 48;
    c->num_hidden_layers = 2;
    c->num_attention_heads = 4;
    c->num_key_value_heads = 2;
    c->head_dim = 8;
    c->max_position_embeddings = 128;
    c->rms_norm_eps = 1e-5;
    c->rope_type = LR_ROPE_DEFAULT;
    c->rope_theta = 10000.0;
    c->rope_factor = 1.0;
    c->config_style = 4;
}

/* The rope object (rope_scaling in 4.x, rope_parameters in 5.x), or NULL for a 4.x
 * config with default RoPE. */
static json_t *rope_json(const lr_config *c, int style) {
    if (style == 4 && c->rope_type == LR_ROPE_DEFAULT) return NULL;
    json_t *r = json_object();
    json_object_set_new(r, "rope_type", json_string(lr_rope_type_name(c->rope_type)));
    if (style == 5) json_object_set_new(r, "rope_theta", json_real(c->rope_theta));
    if (c->rope_type != LR_ROPE_DEFAULT) json_object_set_new(r, "factor", json_real(c->rope_factor));
    if (c->rope_type == LR_ROPE_LLAMA3) {
        json_object_set_new(r, "low_freq_factor", json_real(c->rope_low_freq_factor));
        json_object_set_new(r, "high_freq_factor", json_real(c->rope_high_freq_factor));
        json_object_set_new(r, "original_max_position_embeddings",
                            json_integer(c->rope_original_max_position_embeddings));
    }
    return r;
}

json_t *tu_config_to_json(const lr_config *c) {
    int style = c->config_style == 5 ? 5 : 4;
    json_t *j = json_object();
    json_object_set_new(j, "architectures", json_pack("[s]", "LlamaForCausalLM"));
    json_object_set_new(j, "model_type", json_string("llama"));
    json_object_set_new(j, "hidden_act", json_string("silu"));
    json_object_set_new(j, "vocab_size", json_integer(c->vocab_size));
    json_object_set_new(j, "hidden_size", json_integer(c->hidden_size));
    json_object_set_new(j, "intermediate_size", json_integer(c->intermediate_size));
    json_object_set_new(j, "num_hidden_layers", json_integer(c->num_hidden_layers));
    json_object_set_new(j, "num_attention_heads", json_integer(c->num_attention_heads));
    json_object_set_new(j, "num_key_value_heads", json_integer(c->num_key_value_heads));
    json_object_set_new(j, "head_dim", json_integer(c->head_dim));
    json_object_set_new(j, "max_position_embeddings", json_integer(c->max_position_embeddings));
    json_object_set_new(j, "rms_norm_eps", json_real(c->rms_norm_eps));
    json_object_set_new(j, "attention_bias", json_boolean(c->attention_bias));
    json_object_set_new(j, "mlp_bias", json_boolean(c->mlp_bias));
    json_object_set_new(j, "tie_word_embeddings", json_boolean(c->tie_word_embeddings));
    json_object_set_new(j, "bos_token_id", json_integer(1));
    json_object_set_new(j, "eos_token_id", json_integer(2));
    if (style == 5) {
        json_object_set_new(j, "rope_parameters", rope_json(c, 5));
        json_object_set_new(j, "dtype", json_string("float32"));
        json_object_set_new(j, "transformers_version", json_string("5.0.0"));
    } else {
        json_object_set_new(j, "rope_theta", json_real(c->rope_theta));
        json_t *r = rope_json(c, 4);
        json_object_set_new(j, "rope_scaling", r ? r : json_null());
        json_object_set_new(j, "torch_dtype", json_string("float32"));
        json_object_set_new(j, "transformers_version", json_string("4.46.0"));
    }
    return j;
}

void tu_write_config(const char *dir, const lr_config *c) {
    json_t *j = tu_config_to_json(c);
    char *path = tu_path(dir, "config.json");
    tu_write_json(path, j);
    free(path);
    json_decref(j);
}

/* How a tensor's values are scaled, from its name and shape. */
static double value_of(const tu_tensor *t, uint64_t seed, uint64_t i) {
    double u = tu_uniform(seed, t->name, i);
    const char *n = t->name;
    size_t len = strlen(n);
    bool bias = len > 5 && strcmp(n + len - 5, ".bias") == 0;
    if (strstr(n, "norm")) return 1.0 + u / 4.0;
    if (bias) return u / 8.0;
    if (strstr(n, "embed_tokens") || t->ndim == 1) return u;
    return u / sqrt((double)t->shape[1]);
}

/* Rounds v to what the storage dtype holds, as a double. */
static double stored(lr_dtype dt, double v) {
    switch (dt) {
    case LR_F64: return v;
    case LR_F32: return (double)(float)v;
    case LR_F16: return tu_f16_to_double(tu_f16_from_float((float)v));
    case LR_BF16: return tu_bf16_to_double(tu_bf16_from_float((float)v));
    case LR_I32:
    case LR_I64: return nearbyint(v * 100.0);
    default: ck_abort_msg("unsupported dtype %d", (int)dt);
    }
    return 0;
}

static void fill(tu_tensor *t, lr_dtype dt, uint64_t seed) {
    size_t n = (size_t)(t->shape[0] * t->shape[1]);
    free(t->data);
    t->data = malloc((n ? n : 1) * sizeof *t->data);
    ck_assert_ptr_nonnull(t->data);
    t->dtype = dt;
    for (size_t i = 0; i < n; i++) t->data[i] = stored(dt, value_of(t, seed, i));
}

tu_tensor *tu_model_put(tu_model *m, const char *name, int ndim, int64_t d0, int64_t d1) {
    ck_assert(ndim == 1 || ndim == 2);
    tu_tensor *t = NULL;
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->t[i].name, name) == 0) t = &m->t[i];
    if (!t) {
        if (m->n == m->cap) {
            m->cap = m->cap ? 2 * m->cap : 64;
            m->t = realloc(m->t, m->cap * sizeof *m->t);
            ck_assert_ptr_nonnull(m->t);
        }
        t = &m->t[m->n++];
        memset(t, 0, sizeof *t);
        t->name = strdup(name);
        ck_assert_ptr_nonnull(t->name);
    }
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = ndim == 2 ? d1 : 1;
    fill(t, m->dtype, m->seed);
    return t;
}

void tu_model_drop(tu_model *m, const char *name) {
    for (size_t i = 0; i < m->n; i++) {
        if (strcmp(m->t[i].name, name) != 0) continue;
        free(m->t[i].name);
        free(m->t[i].data);
        memmove(&m->t[i], &m->t[i + 1], (m->n - i - 1) * sizeof *m->t);
        m->n--;
        return;
    }
}

const tu_tensor *tu_model_find(const tu_model *m, const char *name) {
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->t[i].name, name) == 0) return &m->t[i];
    return NULL;
}

tu_model *tu_model_create(const lr_config *c, lr_dtype dtype, uint64_t seed) {
    tu_model *m = calloc(1, sizeof *m);
    ck_assert_ptr_nonnull(m);
    m->cfg = *c;
    m->dtype = dtype;
    m->seed = seed;
    int64_t H = c->hidden_size, I = c->intermediate_size, V = c->vocab_size;
    int64_t q = c->num_attention_heads * c->head_dim, kv = c->num_key_value_heads * c->head_dim;
    char n[160];
#define PUT(nd, a, b, ...)                                                                 \
    do {                                                                                   \
        snprintf(n, sizeof n, __VA_ARGS__);                                                \
        tu_model_put(m, n, nd, a, b);                                                      \
    } while (0)
    PUT(2, V, H, "model.embed_tokens.weight");
    for (long long l = 0; l < (long long)c->num_hidden_layers; l++) {
        PUT(1, H, 1, "model.layers.%lld.input_layernorm.weight", l);
        PUT(2, q, H, "model.layers.%lld.self_attn.q_proj.weight", l);
        PUT(2, kv, H, "model.layers.%lld.self_attn.k_proj.weight", l);
        PUT(2, kv, H, "model.layers.%lld.self_attn.v_proj.weight", l);
        PUT(2, H, q, "model.layers.%lld.self_attn.o_proj.weight", l);
        if (c->attention_bias) {
            PUT(1, q, 1, "model.layers.%lld.self_attn.q_proj.bias", l);
            PUT(1, kv, 1, "model.layers.%lld.self_attn.k_proj.bias", l);
            PUT(1, kv, 1, "model.layers.%lld.self_attn.v_proj.bias", l);
            PUT(1, H, 1, "model.layers.%lld.self_attn.o_proj.bias", l);
        }
        PUT(1, H, 1, "model.layers.%lld.post_attention_layernorm.weight", l);
        PUT(2, I, H, "model.layers.%lld.mlp.gate_proj.weight", l);
        PUT(2, I, H, "model.layers.%lld.mlp.up_proj.weight", l);
        PUT(2, H, I, "model.layers.%lld.mlp.down_proj.weight", l);
        if (c->mlp_bias) {
            PUT(1, I, 1, "model.layers.%lld.mlp.gate_proj.bias", l);
            PUT(1, I, 1, "model.layers.%lld.mlp.up_proj.bias", l);
            PUT(1, H, 1, "model.layers.%lld.mlp.down_proj.bias", l);
        }
    }
    PUT(1, H, 1, "model.norm.weight");
    if (!c->tie_word_embeddings) PUT(2, V, H, "lm_head.weight");
#undef PUT
    return m;
}

void tu_model_free(tu_model *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n; i++) {
        free(m->t[i].name);
        free(m->t[i].data);
    }
    free(m->t);
    free(m);
}

/* Adds t to w, encoded in its storage dtype; returns its size in bytes. */
static size_t add_encoded(lr_st_writer *w, const tu_tensor *t) {
    size_t n = (size_t)(t->shape[0] * t->shape[1]), es = lr_dtype_size(t->dtype);
    unsigned char *buf = malloc((n ? n : 1) * es);
    ck_assert_ptr_nonnull(buf);
    for (size_t i = 0; i < n; i++) {
        double v = t->data[i];
        unsigned char *p = buf + i * es;
        switch (t->dtype) {
        case LR_F64: memcpy(p, &v, 8); break;
        case LR_F32: { float f = (float)v; memcpy(p, &f, 4); break; }
        case LR_F16: { uint16_t h = tu_f16_from_float((float)v); memcpy(p, &h, 2); break; }
        case LR_BF16: { uint16_t h = tu_bf16_from_float((float)v); memcpy(p, &h, 2); break; }
        case LR_I64: { int64_t k = (int64_t)v; memcpy(p, &k, 8); break; }
        case LR_I32: { int32_t k = (int32_t)v; memcpy(p, &k, 4); break; }
        default: ck_abort_msg("unsupported dtype");
        }
    }
    lr_tensor lt = {.dtype = t->dtype, .ndim = t->ndim, .shape = {t->shape[0], t->shape[1]}, .data = buf};
    TU_ASSERT_OK(lr_st_writer_add(w, t->name, &lt));
    free(buf);
    return n * es;
}

static void write_st(const tu_model *m, size_t from, size_t to, const char *path) {
    lr_st_writer *w;
    TU_ASSERT_OK(lr_st_writer_create(&w));
    TU_ASSERT_OK(lr_st_writer_set_metadata(w, "format", "pt"));
    for (size_t i = from; i < to; i++) add_encoded(w, &m->t[i]);
    TU_ASSERT_OK(lr_st_writer_write(w, path, true));
    lr_st_writer_free(w);
}

void tu_model_write(const tu_model *m, const char *dir, tu_layout layout) {
    tu_write_config(dir, &m->cfg);
    if (layout == TU_SINGLE) {
        char *path = tu_path(dir, "model.safetensors");
        write_st(m, 0, m->n, path);
        free(path);
        return;
    }
    /* The first half of the tensors (in HF order) in shard 1, the rest in shard 2. */
    size_t half = (m->n + 1) / 2;
    char *p1 = tu_path(dir, TU_SHARD1), *p2 = tu_path(dir, TU_SHARD2);
    write_st(m, 0, half, p1);
    write_st(m, half, m->n, p2);
    free(p1);
    free(p2);
    json_t *map = json_object();
    json_int_t total = 0;
    for (size_t i = 0; i < m->n; i++) {
        json_object_set_new(map, m->t[i].name, json_string(i < half ? TU_SHARD1 : TU_SHARD2));
        total += (json_int_t)((size_t)(m->t[i].shape[0] * m->t[i].shape[1]) * lr_dtype_size(m->t[i].dtype));
    }
    json_t *index = json_pack("{s:{s:I}, s:o}", "metadata", "total_size", total, "weight_map", map);
    ck_assert_ptr_nonnull(index);
    char *ip = tu_path(dir, "model.safetensors.index.json");
    tu_write_json(ip, index);
    free(ip);
    json_decref(index);
}

tu_model *tu_write_checkpoint(const char *dir, const lr_config *cfg, lr_dtype dtype,
                              tu_layout layout, uint64_t seed) {
    tu_model *m = tu_model_create(cfg, dtype, seed);
    tu_model_write(m, dir, layout);
    return m;
}

int tu_run_suite(Suite *s) {
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
