/* checkpoint.c: a Hugging Face Llama checkpoint directory: config.json plus
 * model.safetensors or the shards of model.safetensors.index.json, checked against
 * the config tensor by tensor. */
#include "internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define INDEX_MAX_BYTES (64u << 20)
#define MAX_SHARDS 4096

struct lr_checkpoint {
    char *dir;
    lr_config cfg;
    lr_st_file **files;
    size_t nfiles;
};

/* Calls fn for every tensor the config implies, with its HF name and shape. */
typedef int (*expect_fn)(void *user, const char *name, int ndim, int64_t d0, int64_t d1);

static int for_each_expected(const lr_config *c, expect_fn fn, void *user) {
    int64_t H = c->hidden_size, I = c->intermediate_size, V = c->vocab_size;
    int64_t q = c->num_attention_heads * c->head_dim, kv = c->num_key_value_heads * c->head_dim;
    char n[160];
    int rc;
#define EXPECT(nd, a, b, ...)                                                              \
    do {                                                                                   \
        snprintf(n, sizeof n, __VA_ARGS__);                                                \
        if ((rc = fn(user, n, nd, a, b))) return rc;                                       \
    } while (0)
    EXPECT(2, V, H, "model.embed_tokens.weight");
    for (int64_t l = 0; l < c->num_hidden_layers; l++) {
        const char *p = "model.layers";
        long long i = (long long)l;
        EXPECT(1, H, 0, "%s.%lld.input_layernorm.weight", p, i);
        EXPECT(2, q, H, "%s.%lld.self_attn.q_proj.weight", p, i);
        EXPECT(2, kv, H, "%s.%lld.self_attn.k_proj.weight", p, i);
        EXPECT(2, kv, H, "%s.%lld.self_attn.v_proj.weight", p, i);
        EXPECT(2, H, q, "%s.%lld.self_attn.o_proj.weight", p, i);
        if (c->attention_bias) {
            EXPECT(1, q, 0, "%s.%lld.self_attn.q_proj.bias", p, i);
            EXPECT(1, kv, 0, "%s.%lld.self_attn.k_proj.bias", p, i);
            EXPECT(1, kv, 0, "%s.%lld.self_attn.v_proj.bias", p, i);
            EXPECT(1, H, 0, "%s.%lld.self_attn.o_proj.bias", p, i);
        }
        EXPECT(1, H, 0, "%s.%lld.post_attention_layernorm.weight", p, i);
        EXPECT(2, I, H, "%s.%lld.mlp.gate_proj.weight", p, i);
        EXPECT(2, I, H, "%s.%lld.mlp.up_proj.weight", p, i);
        EXPECT(2, H, I, "%s.%lld.mlp.down_proj.weight", p, i);
        if (c->mlp_bias) {
            EXPECT(1, I, 0, "%s.%lld.mlp.gate_proj.bias", p, i);
            EXPECT(1, I, 0, "%s.%lld.mlp.up_proj.bias", p, i);
            EXPECT(1, H, 0, "%s.%lld.mlp.down_proj.bias", p, i);
        }
    }
    EXPECT(1, H, 0, "model.norm.weight");
    if (!c->tie_word_embeddings) EXPECT(2, V, H, "lm_head.weight");
#undef EXPECT
    return LR_OK;
}

struct check_ctx {
    lr_checkpoint *ck;
    size_t found;
};

static int check_one(void *user, const char *name, int ndim, int64_t d0, int64_t d1) {
    struct check_ctx *x = user;
    const lr_st_entry *e = lr_checkpoint_find(x->ck, name);
    const char *cfgpath = "config.json";
    if (!e)
        return lr_fail(LR_E_MISSING, "%s: tensor \"%s\": missing (the config implies it)",
                       x->ck->dir, name);
    const char *file = lr_checkpoint_file_of(x->ck, name);
    if (e->t.dtype != LR_F32 && e->t.dtype != LR_F16 && e->t.dtype != LR_BF16 &&
        e->t.dtype != LR_F64)
        return lr_fail(LR_E_DTYPE, "%s: tensor \"%s\": dtype %s is not a float type", file, name,
                       lr_dtype_name(e->t.dtype));
    bool ok = e->t.ndim == ndim && e->t.shape[0] == d0 && (ndim == 1 || e->t.shape[1] == d1);
    if (!ok) {
        char got[96] = "", want[64];
        for (int i = 0; i < e->t.ndim; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? ", " : "",
                     (long long)e->t.shape[i]);
        if (ndim == 1)
            snprintf(want, sizeof want, "%lld", (long long)d0);
        else
            snprintf(want, sizeof want, "%lld, %lld", (long long)d0, (long long)d1);
        return lr_fail(LR_E_SHAPE, "%s: tensor \"%s\": shape [%s] but %s implies [%s]", file, name,
                       got, cfgpath, want);
    }
    x->found++;
    return LR_OK;
}

static int match_name(void *user, const char *name, int ndim, int64_t d0, int64_t d1) {
    (void)ndim, (void)d0, (void)d1;
    return strcmp(user, name) == 0 ? 1 : LR_OK; /* 1 stops the walk: found */
}

static bool is_expected(const lr_config *c, const char *name) {
    return for_each_expected(c, match_name, (void *)name) == 1;
}

/* Names every checkpoint may carry that the model does not use. */
static bool ignorable(const lr_config *c, const char *name) {
    size_t n = strlen(name), s = strlen(".rotary_emb.inv_freq");
    if (n > s && strcmp(name + n - s, ".rotary_emb.inv_freq") == 0) return true;
    return c->tie_word_embeddings && strcmp(name, "lm_head.weight") == 0;
}

/* ---- The shard index (model.safetensors.index.json) ------------------------------ */

struct lr_index {
    json_t *root;
    json_t *map;          /* weight_map: tensor name -> file name */
    const char **tensors; /* map keys in file order (point into root) */
    size_t *file_of;      /* tensors[i] is assigned to files[file_of[i]] */
    size_t n;
    const char **files;   /* distinct file names in order of first use (point into root) */
    size_t nfiles;
};

int lr_index_parse(const char *json, size_t len, const char *name, lr_index **out) {
    lr_index *ix = calloc(1, sizeof *ix);
    if (!ix) return lr_fail(LR_E_NOMEM, "%s: out of memory", name);
    json_error_t err;
    int rc = LR_OK;
    ix->root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &err);
    if (!ix->root) {
        rc = lr_fail(LR_E_JSON, "%s: line %d column %d: %s", name, err.line, err.column, err.text);
        goto out;
    }
    ix->map = json_object_get(ix->root, "weight_map");
    if (!json_is_object(ix->map)) {
        rc = lr_fail(LR_E_JSON, "%s: weight_map: missing or not an object", name);
        goto out;
    }
    size_t cap = json_object_size(ix->map) ? json_object_size(ix->map) : 1;
    ix->tensors = calloc(cap, sizeof *ix->tensors);
    ix->file_of = calloc(cap, sizeof *ix->file_of);
    ix->files = calloc(cap < MAX_SHARDS ? cap : MAX_SHARDS, sizeof *ix->files);
    if (!ix->tensors || !ix->file_of || !ix->files) {
        rc = lr_fail(LR_E_NOMEM, "%s: out of memory", name);
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(ix->map, key, v) {
        if (!json_is_string(v)) {
            rc = lr_fail(LR_E_JSON, "%s: weight_map.%s: expected a file name", name, key);
            goto out;
        }
        const char *fn = json_string_value(v);
        if (strchr(fn, '/') || strcmp(fn, "..") == 0 || strcmp(fn, ".") == 0 || !*fn) {
            rc = lr_fail(LR_E_JSON, "%s: weight_map.%s: \"%s\" is not a file in the directory",
                         name, key, fn);
            goto out;
        }
        size_t k = 0;
        while (k < ix->nfiles && strcmp(ix->files[k], fn) != 0) k++;
        if (k == ix->nfiles) {
            if (ix->nfiles == MAX_SHARDS) {
                rc = lr_fail(LR_E_JSON, "%s: weight_map: more than %d shard files", name, MAX_SHARDS);
                goto out;
            }
            ix->files[ix->nfiles++] = fn;
        }
        ix->tensors[ix->n] = key;
        ix->file_of[ix->n] = k;
        ix->n++;
    }
out:
    if (rc) {
        lr_index_free(ix);
        return rc;
    }
    *out = ix;
    return LR_OK;
}

void lr_index_free(lr_index *ix) {
    if (!ix) return;
    free(ix->tensors);
    free(ix->file_of);
    free(ix->files);
    json_decref(ix->root);
    free(ix);
}

size_t lr_index_count(const lr_index *ix) { return ix->n; }

const char *lr_index_at(const lr_index *ix, size_t i, size_t *file) {
    if (i >= ix->n) return NULL;
    if (file) *file = ix->file_of[i];
    return ix->tensors[i];
}

size_t lr_index_file_count(const lr_index *ix) { return ix->nfiles; }
const char *lr_index_file(const lr_index *ix, size_t k) { return k < ix->nfiles ? ix->files[k] : NULL; }

const char *lr_index_file_of(const lr_index *ix, const char *tensor) {
    return json_string_value(json_object_get(ix->map, tensor));
}

static int open_sharded(lr_checkpoint *ck, const char *index_path) {
    char *buf;
    size_t len;
    int rc = lr_read_file(index_path, INDEX_MAX_BYTES, &buf, &len);
    if (rc) return rc;
    lr_index *ix;
    rc = lr_index_parse(buf, len, index_path, &ix);
    free(buf);
    if (rc) return rc;
    ck->files = calloc(ix->nfiles ? ix->nfiles : 1, sizeof *ck->files);
    if (!ck->files) {
        rc = lr_fail(LR_E_NOMEM, "%s: out of memory", index_path);
        goto out;
    }
    /* Open each distinct shard once (in order of first use), then check both
     * directions of the map. */
    for (size_t i = 0; i < ix->n; i++) {
        size_t k = ix->file_of[i];
        if (k == ck->nfiles) {
            char *path = lr_path_join(ck->dir, ix->files[k]);
            if (!path) {
                rc = lr_fail(LR_E_NOMEM, "%s: out of memory", index_path);
                goto out;
            }
            rc = lr_st_open(path, &ck->files[k]);
            free(path);
            if (rc) goto out;
            ck->nfiles++;
        }
        if (!lr_st_find(ck->files[k], ix->tensors[i])) {
            rc = lr_fail(LR_E_MISSING, "%s: weight_map.%s: tensor not found in %s", index_path,
                         ix->tensors[i], lr_st_path(ck->files[k]));
            goto out;
        }
    }
    for (size_t k = 0; k < ck->nfiles; k++) {
        for (size_t i = 0; i < lr_st_count(ck->files[k]); i++) {
            const char *tn = lr_st_at(ck->files[k], i)->name;
            const char *mapped = lr_index_file_of(ix, tn);
            if (!mapped || strcmp(mapped, ix->files[k]) != 0) {
                rc = lr_fail(LR_E_UNEXPECTED, "%s: tensor \"%s\": not assigned to this file by %s",
                             lr_st_path(ck->files[k]), tn, index_path);
                goto out;
            }
        }
    }
out:
    lr_index_free(ix);
    return rc;
}

int lr_checkpoint_open(const char *dir, lr_checkpoint **out) {
    lr_checkpoint *ck = calloc(1, sizeof *ck);
    if (!ck || !(ck->dir = strdup(dir))) {
        free(ck);
        return lr_fail(LR_E_NOMEM, "%s: out of memory", dir);
    }
    int rc;
    char *cfg = lr_path_join(dir, "config.json");
    char *single = lr_path_join(dir, "model.safetensors");
    char *index = lr_path_join(dir, "model.safetensors.index.json");
    if (!cfg || !single || !index) {
        rc = lr_fail(LR_E_NOMEM, "%s: out of memory", dir);
        goto out;
    }
    if ((rc = lr_config_load(cfg, &ck->cfg))) goto out;
    if (access(single, F_OK) == 0) {
        ck->files = calloc(1, sizeof *ck->files);
        if (!ck->files) {
            rc = lr_fail(LR_E_NOMEM, "%s: out of memory", dir);
            goto out;
        }
        if ((rc = lr_st_open(single, &ck->files[0]))) goto out;
        ck->nfiles = 1;
    } else if (access(index, F_OK) == 0) {
        if ((rc = open_sharded(ck, index))) goto out;
    } else {
        rc = lr_fail(LR_E_MISSING, "%s: neither model.safetensors nor model.safetensors.index.json",
                     dir);
        goto out;
    }

    /* Every tensor the config implies, with its shape; then nothing else. */
    struct check_ctx x = {ck, 0};
    if ((rc = for_each_expected(&ck->cfg, check_one, &x))) goto out;
    size_t total = 0;
    for (size_t k = 0; k < ck->nfiles; k++) {
        for (size_t i = 0; i < lr_st_count(ck->files[k]); i++) {
            const char *tn = lr_st_at(ck->files[k], i)->name;
            if (ignorable(&ck->cfg, tn)) continue;
            total++;
            if (lr_checkpoint_find(ck, tn) != lr_st_at(ck->files[k], i)) {
                rc = lr_fail(LR_E_UNEXPECTED, "%s: tensor \"%s\": appears in more than one shard",
                             lr_st_path(ck->files[k]), tn);
                goto out;
            }
        }
    }
    if (total != x.found) {
        /* Name the first tensor the config does not account for. */
        for (size_t k = 0; k < ck->nfiles; k++) {
            for (size_t i = 0; i < lr_st_count(ck->files[k]); i++) {
                const char *tn = lr_st_at(ck->files[k], i)->name;
                if (ignorable(&ck->cfg, tn)) continue;
                if (!is_expected(&ck->cfg, tn)) {
                    rc = lr_fail(LR_E_UNEXPECTED,
                                 "%s: tensor \"%s\": not part of a model with this config.json "
                                 "(num_hidden_layers %lld)",
                                 lr_st_path(ck->files[k]), tn, (long long)ck->cfg.num_hidden_layers);
                    goto out;
                }
            }
        }
    }
out:
    free(cfg);
    free(single);
    free(index);
    if (rc) {
        lr_checkpoint_close(ck);
        return rc;
    }
    *out = ck;
    return LR_OK;
}

void lr_checkpoint_close(lr_checkpoint *ck) {
    if (!ck) return;
    for (size_t k = 0; k < ck->nfiles; k++) lr_st_close(ck->files[k]);
    free(ck->files);
    free(ck->dir);
    free(ck);
}

const lr_config *lr_checkpoint_config(const lr_checkpoint *ck) { return &ck->cfg; }
const char *lr_checkpoint_dir(const lr_checkpoint *ck) { return ck->dir; }

const lr_st_entry *lr_checkpoint_find(const lr_checkpoint *ck, const char *name) {
    for (size_t k = 0; k < ck->nfiles; k++) {
        const lr_st_entry *e = lr_st_find(ck->files[k], name);
        if (e) return e;
    }
    return NULL;
}

void lr_checkpoint_release(const lr_checkpoint *ck, const char *name) {
    for (size_t k = 0; k < ck->nfiles; k++) {
        const lr_st_entry *e = lr_st_find(ck->files[k], name);
        if (e) {
            lr_st_release(ck->files[k], e);
            return;
        }
    }
}

const char *lr_checkpoint_file_of(const lr_checkpoint *ck, const char *name) {
    for (size_t k = 0; k < ck->nfiles; k++)
        if (lr_st_find(ck->files[k], name)) return lr_st_path(ck->files[k]);
    return ck->dir;
}
