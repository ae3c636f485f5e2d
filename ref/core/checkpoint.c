/* checkpoint.c: a Hugging Face Llama checkpoint directory (config.json plus
 * model.safetensors or the shards of model.safetensors.index.json) or a GGUF file (its
 * metadata as the config, its tensors renamed, dequantized to F32 and unpermuted one at
 * a time, when first read), checked against the config tensor by tensor; and writing
 * one back out as a Hugging Face directory. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define INDEX_MAX_BYTES (64u << 20)
#define MAX_SHARDS 4096

struct lr_checkpoint {
    char *dir; /* the directory, or the GGUF file */
    lr_config cfg;
    lr_st_file **files;
    size_t nfiles;
    /* A GGUF checkpoint holds its tensors itself, as F32 in HF layout: each dequantized
     * when first read (lr_checkpoint_find), freed once released and another is read. */
    bool is_gguf;
    lr_gguf_file *gguf;     /* kept open (mapped) while the checkpoint lives */
    bool unpermute;         /* undo the q/k permutation (LLAMAREF_GGUF_NO_UNPERMUTE unset) */
    json_t *gguf_config;    /* the config.json the metadata implies */
    lr_st_entry *owned;     /* GGUF file order; t.data NULL until read */
    bool *released;         /* (nowned): read, then released: freed at the next read */
    lr_st_entry **by_name;  /* sorted by HF name */
    char **gguf_names;      /* parallel to owned */
    size_t nowned;
};

static const lr_st_entry *lookup(const lr_checkpoint *ck, const char *name);

/* Every tensor of the checkpoint, in file order, with the file holding it. */
static size_t n_entries(const lr_checkpoint *ck) {
    size_t n = ck->nowned;
    for (size_t k = 0; k < ck->nfiles; k++) n += lr_st_count(ck->files[k]);
    return n;
}

static const lr_st_entry *entry_at(const lr_checkpoint *ck, size_t i, const char **file) {
    if (ck->is_gguf) {
        *file = ck->dir;
        return &ck->owned[i];
    }
    for (size_t k = 0; k < ck->nfiles; k++) {
        if (i < lr_st_count(ck->files[k])) {
            *file = lr_st_path(ck->files[k]);
            return lr_st_at(ck->files[k], i);
        }
        i -= lr_st_count(ck->files[k]);
    }
    return NULL;
}

/* The GGUF name of a tensor, for messages ("" for a directory checkpoint). */
static const char *source_name(const lr_checkpoint *ck, const lr_st_entry *e) {
    return ck->is_gguf ? ck->gguf_names[e - ck->owned] : "";
}

/* Calls fn for every tensor the config implies, with its HF name and shape. */
typedef int (*expect_fn)(void *user, const char *name, int ndim, int64_t d0, int64_t d1);

static int for_each_expected(const lr_config *c, expect_fn fn, void *user) {
    enum { COLS_NONE = -1, COLS_HIDDEN = LR_WIDTH_HIDDEN, COLS_Q = LR_WIDTH_Q, COLS_KV = LR_WIDTH_KV,
           COLS_INTERMEDIATE = LR_WIDTH_INTERMEDIATE };
    enum { WHEN_ALWAYS, WHEN_ATTENTION_BIAS, WHEN_MLP_BIAS };
    static const struct {
        lr_stage_width_unit rows;
        int cols; /* an lr_stage_width_unit, or COLS_NONE: 1-D */
        int when;
    } layer[] = {
#define LR_HW_ROW(id, suffix, r, k, w) {LR_WIDTH_##r, COLS_##k, WHEN_##w},
        LR_HF_LAYER_WEIGHT_MAP(LR_HW_ROW)
#undef LR_HW_ROW
    };
    int64_t H = c->hidden_size, V = c->vocab_size;
    char n[160];
    int rc;
    if ((rc = fn(user, "model.embed_tokens.weight", 2, V, H))) return rc;
    for (int64_t l = 0; l < c->num_hidden_layers; l++) {
        for (int k = 0; k < LR_HF_LAYER_WEIGHT_COUNT; k++) {
            if ((layer[k].when == WHEN_ATTENTION_BIAS && !c->attention_bias) || (layer[k].when == WHEN_MLP_BIAS && !c->mlp_bias))
                continue;
            bool matrix = layer[k].cols >= 0;
            int64_t d0 = lr_width_of(c, layer[k].rows), d1 = matrix ? lr_width_of(c, (lr_stage_width_unit)layer[k].cols) : 0;
            if ((rc = fn(user, lr_hf_layer_weight_name(n, sizeof n, l, (lr_hf_layer_weight)k), matrix ? 2 : 1, d0, d1)))
                return rc;
        }
    }
    if ((rc = fn(user, "model.norm.weight", 1, H, 0))) return rc;
    if (!c->tie_word_embeddings && (rc = fn(user, "lm_head.weight", 2, V, H))) return rc;
    return LR_OK;
}

struct check_ctx {
    lr_checkpoint *ck;
    size_t found;
};

static int check_one(void *user, const char *name, int ndim, int64_t d0, int64_t d1) {
    struct check_ctx *x = user;
    const lr_st_entry *e = lookup(x->ck, name);
    const char *cfgpath = x->ck->is_gguf ? "the llama.* metadata" : "config.json";
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
        if (x->ck->is_gguf)
            return lr_fail(LR_E_SHAPE, "%s: tensor \"%s\" (%s): shape [%s] but %s implies [%s]", file,
                           source_name(x->ck, e), name, got, cfgpath, want);
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

static int open_dir(lr_checkpoint *ck) {
    const char *dir = ck->dir;
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
        rc = open_sharded(ck, index);
    } else {
        rc = lr_fail(LR_E_MISSING, "%s: neither model.safetensors nor model.safetensors.index.json", dir);
    }
out:
    free(cfg);
    free(single);
    free(index);
    return rc;
}

/* ---- GGUF ----------------------------------------------------------------------------- */

static int cmp_entry_name(const void *a, const void *b) {
    return strcmp((*(lr_st_entry *const *)a)->name, (*(lr_st_entry *const *)b)->name);
}

/* A regular file starting with the GGUF magic. */
static bool is_gguf_file(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return false;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    char magic[4];
    bool yes = read(fd, magic, 4) == 4 && memcmp(magic, "GGUF", 4) == 0;
    close(fd);
    return yes;
}

/* The metadata as the config; every tensor given its HF name and shape (dims
 * reversed), not yet read: the checks against the config come before any dequantizing. */
static int open_gguf(lr_checkpoint *ck, const lr_gguf_file *g) {
    const char *path = ck->dir;
    int rc;
    if ((rc = lr_gguf_config_json(g, &ck->gguf_config)) || (rc = lr_gguf_config(g, &ck->cfg))) return rc;
    size_t n = lr_gguf_tensor_count(g);
    ck->owned = calloc(n ? n : 1, sizeof *ck->owned);
    ck->by_name = calloc(n ? n : 1, sizeof *ck->by_name);
    ck->gguf_names = calloc(n ? n : 1, sizeof *ck->gguf_names);
    ck->released = calloc(n ? n : 1, sizeof *ck->released);
    if (!ck->owned || !ck->by_name || !ck->gguf_names || !ck->released)
        return lr_fail(LR_E_NOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++) {
        const lr_gguf_tensor *t = lr_gguf_tensor_at(g, i);
        char hf[160];
        if (lr_gguf_hf_name(t->name, hf, sizeof hf) != LR_OK)
            return lr_fail(LR_E_UNEXPECTED, "%s: tensor \"%s\": not a tensor of a llama model", path, t->name);
        if (!lr_ggml_type_supported(t->type))
            return lr_fail(LR_E_DTYPE, "%s: tensor \"%s\": type %s cannot be dequantized (supported: %s)",
                           path, t->name, lr_ggml_type_name(t->type), LR_GGML_SUPPORTED);
        lr_st_entry *e = &ck->owned[i];
        if (!(ck->gguf_names[i] = strdup(t->name)) || !(e->name = strdup(hf)))
            return lr_fail(LR_E_NOMEM, "%s: out of memory", path);
        ck->nowned = i + 1;
        e->t.dtype = LR_F32;
        e->t.ndim = t->ndim;
        for (int d = 0; d < t->ndim; d++) e->t.shape[d] = t->ne[t->ndim - 1 - d];
        e->nbytes = (uint64_t)lr_gguf_numel(t) * 4;
        ck->by_name[i] = e;
    }
    qsort(ck->by_name, n, sizeof *ck->by_name, cmp_entry_name);
    return LR_OK;
}

/* Dequantizes GGUF tensor i to F32 and undoes the q/k permutation, if not yet held.
 * Tensors released since the last read are freed first, so that a reader going tensor
 * by tensor (lr_weights_build, the CPU backend's weight cache, the CUDA loader's chunks)
 * holds about one dequantized tensor at a time, not the file's worth. The environment
 * variable LLAMAREF_GGUF_NO_UNPERMUTE=1 skips the undo: a test hook that shows the undo
 * is what makes a GGUF model agree with its fixture (tests/test_gguf_cli.sh). */
static int gguf_materialize(lr_checkpoint *ck, size_t i) {
    lr_st_entry *e = &ck->owned[i];
    for (size_t k = 0; k < ck->nowned; k++)
        if (ck->released[k] && k != i) {
            free((void *)ck->owned[k].t.data);
            ck->owned[k].t.data = NULL;
            ck->released[k] = false;
        }
    ck->released[i] = false;
    if (e->t.data) return LR_OK;
    const lr_gguf_tensor *t = lr_gguf_tensor_at(ck->gguf, i);
    int64_t numel = lr_gguf_numel(t);
    float *w = malloc(numel ? (size_t)numel * sizeof *w : 1);
    if (!w)
        return lr_fail(LR_E_NOMEM, "%s: tensor \"%s\": cannot allocate %lld floats", ck->dir, t->name,
                       (long long)numel);
    int rc = lr_gguf_dequantize(t, w); /* types were checked by open_gguf */
    bool q = strstr(e->name, ".self_attn.q_proj.") != NULL, k = strstr(e->name, ".self_attn.k_proj.") != NULL;
    if (rc == LR_OK && ck->unpermute && (q || k)) {
        int64_t rows = e->t.shape[0], cols = e->t.ndim == 2 ? e->t.shape[1] : 1;
        rc = lr_gguf_unpermute(w, rows, cols, q ? ck->cfg.num_attention_heads : ck->cfg.num_key_value_heads);
        if (rc) rc = lr_fail(rc, "%s: tensor \"%s\": cannot undo the q/k permutation", ck->dir, t->name);
    }
    if (rc) {
        free(w);
        return rc;
    }
    e->t.data = w;
    return LR_OK;
}

/* The q/k permutation can be undone for every q and k tensor (their shapes alone say),
 * checked at open so that a later read fails only for want of memory. */
static int check_gguf_unpermute(lr_checkpoint *ck) {
    const char *skip = getenv("LLAMAREF_GGUF_NO_UNPERMUTE");
    ck->unpermute = !(skip && *skip && strcmp(skip, "0") != 0);
    if (!ck->unpermute) return LR_OK;
    for (size_t i = 0; i < ck->nowned; i++) {
        const lr_st_entry *e = &ck->owned[i];
        bool q = strstr(e->name, ".self_attn.q_proj.") != NULL, k = strstr(e->name, ".self_attn.k_proj.") != NULL;
        if (!q && !k) continue;
        int64_t rows = e->t.shape[0], heads = q ? ck->cfg.num_attention_heads : ck->cfg.num_key_value_heads;
        if (heads < 1 || rows % (2 * heads))
            return lr_fail(LR_E_SHAPE, "%s: tensor \"%s\": cannot undo the q/k permutation", ck->dir,
                           ck->gguf_names[i]);
    }
    return LR_OK;
}

/* Every tensor the config implies, with its shape; then nothing else. */
static int check_tensors(lr_checkpoint *ck) {
    struct check_ctx x = {ck, 0};
    int rc;
    if ((rc = for_each_expected(&ck->cfg, check_one, &x))) return rc;
    size_t total = 0, n = n_entries(ck);
    for (size_t i = 0; i < n; i++) {
        const char *file;
        const lr_st_entry *e = entry_at(ck, i, &file);
        if (ignorable(&ck->cfg, e->name)) continue;
        total++;
        if (lookup(ck, e->name) != e)
            return lr_fail(LR_E_UNEXPECTED, "%s: tensor \"%s\": appears in more than one shard", file, e->name);
    }
    if (total == x.found) return LR_OK;
    /* Name the first tensor the config does not account for. */
    for (size_t i = 0; i < n; i++) {
        const char *file;
        const lr_st_entry *e = entry_at(ck, i, &file);
        if (ignorable(&ck->cfg, e->name) || is_expected(&ck->cfg, e->name)) continue;
        if (ck->is_gguf)
            return lr_fail(LR_E_UNEXPECTED,
                           "%s: tensor \"%s\" (%s): not part of a model with this metadata (block_count %lld)", file,
                           source_name(ck, e), e->name, (long long)ck->cfg.num_hidden_layers);
        return lr_fail(LR_E_UNEXPECTED,
                       "%s: tensor \"%s\": not part of a model with this config.json (num_hidden_layers %lld)", file,
                       e->name, (long long)ck->cfg.num_hidden_layers);
    }
    return LR_OK;
}

int lr_checkpoint_open(const char *path, lr_checkpoint **out) {
    lr_checkpoint *ck = calloc(1, sizeof *ck);
    if (!ck || !(ck->dir = strdup(path))) {
        free(ck);
        return lr_fail(LR_E_NOMEM, "%s: out of memory", path);
    }
    int rc;
    struct stat st;
    if (stat(path, &st) != 0) {
        /* Said as it is: a missing path, not a config.json missing inside it. */
        rc = lr_fail(LR_E_IO, "%s: %s (expected a checkpoint directory or a .gguf file)", path, strerror(errno));
    } else if (S_ISREG(st.st_mode)) {
        if (!is_gguf_file(path)) {
            rc = lr_fail(LR_E_IO, "%s: a file, but not a GGUF file (expected a checkpoint directory or a .gguf file)",
                         path);
        } else {
            ck->is_gguf = true;
            if ((rc = lr_gguf_open(path, &ck->gguf)) == LR_OK && (rc = open_gguf(ck, ck->gguf)) == LR_OK &&
                (rc = check_tensors(ck)) == LR_OK)
                rc = check_gguf_unpermute(ck);
        }
    } else if ((rc = open_dir(ck)) == LR_OK) {
        rc = check_tensors(ck);
    }
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
    for (size_t i = 0; i < ck->nowned; i++) {
        free((char *)ck->owned[i].name);
        free((void *)ck->owned[i].t.data);
        free(ck->gguf_names[i]);
    }
    free(ck->owned);
    free(ck->released);
    lr_gguf_close(ck->gguf);
    free(ck->by_name);
    free(ck->gguf_names);
    json_decref(ck->gguf_config);
    free(ck->files);
    free(ck->dir);
    free(ck);
}

const lr_config *lr_checkpoint_config(const lr_checkpoint *ck) { return &ck->cfg; }
const char *lr_checkpoint_dir(const lr_checkpoint *ck) { return ck->dir; }

/* The entry by HF name without reading it (a GGUF tensor's data may still be NULL). */
static const lr_st_entry *lookup(const lr_checkpoint *ck, const char *name) {
    if (ck->is_gguf) {
        size_t lo = 0, hi = ck->nowned;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            int c = strcmp(name, ck->by_name[mid]->name);
            if (c == 0) return ck->by_name[mid];
            if (c < 0)
                hi = mid;
            else
                lo = mid + 1;
        }
        return NULL;
    }
    for (size_t k = 0; k < ck->nfiles; k++) {
        const lr_st_entry *e = lr_st_find(ck->files[k], name);
        if (e) return e;
    }
    return NULL;
}

int lr_checkpoint_tensor(const lr_checkpoint *ck, const char *name, const lr_st_entry **out) {
    const lr_st_entry *e = lookup(ck, name);
    *out = NULL;
    if (!e) return lr_fail(LR_E_MISSING, "%s: tensor \"%s\": missing", ck->dir, name);
    /* The checkpoint is logically const: reading a GGUF tensor fills its cache. */
    int rc = ck->is_gguf ? gguf_materialize((lr_checkpoint *)(uintptr_t)ck, (size_t)(e - ck->owned)) : LR_OK;
    if (rc == LR_OK) *out = e;
    return rc;
}

const lr_st_entry *lr_checkpoint_peek(const lr_checkpoint *ck, const char *name) { return lookup(ck, name); }

const lr_st_entry *lr_checkpoint_find(const lr_checkpoint *ck, const char *name) {
    const lr_st_entry *e;
    return lr_checkpoint_tensor(ck, name, &e) == LR_OK ? e : NULL;
}

void lr_checkpoint_release(const lr_checkpoint *ck, const char *name) {
    if (ck->is_gguf) {
        const lr_st_entry *e = lookup(ck, name);
        if (e && e->t.data) ck->released[e - ck->owned] = true;
        return;
    }
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

/* ---- Writing a checkpoint out ------------------------------------------------------- */

/* config.json's text, for lr_write_file_atomic. */
typedef struct {
    const char *text;
    size_t len;
} text_image;

static int write_text(FILE *f, void *user) {
    const text_image *t = user;
    return fwrite(t->text, 1, t->len, f) == t->len ? 0 : -1;
}

static int write_text_atomic(const char *path, const char *text, size_t len, bool overwrite) {
    text_image t = {text, len};
    return lr_write_file_atomic(path, overwrite, write_text, &t);
}

struct save_ctx {
    const lr_checkpoint *ck;
    lr_st_writer *w;
    float **conv; /* F32 copies of non-F32 tensors, freed after the write */
    size_t nconv;
};

static int save_one(void *user, const char *name, int ndim, int64_t d0, int64_t d1) {
    (void)ndim, (void)d0, (void)d1;
    struct save_ctx *x = user;
    const lr_st_entry *e = lr_checkpoint_find(x->ck, name);
    lr_tensor t = e->t;
    if (t.dtype != LR_F32) {
        int64_t n = lr_tensor_numel(&t);
        float *f = malloc(n ? (size_t)n * sizeof *f : 1);
        if (!f) return lr_fail(LR_E_NOMEM, "%s: out of memory", name);
        lr_convert(f, LR_F32, t.data, t.dtype, (size_t)n);
        x->conv[x->nconv++] = f;
        t.dtype = LR_F32;
        t.data = f;
    }
    return lr_st_writer_add_ref(x->w, name, &t);
}

/* Refuses an output that is one of the checkpoint's own files, whatever overwrite says. */
static int not_an_input(const lr_checkpoint *ck, const char *out) {
    struct stat so, si;
    if (stat(out, &so) != 0) return LR_OK;
    char *cfg = ck->is_gguf ? NULL : lr_path_join(ck->dir, "config.json");
    const char *inputs[2] = {ck->is_gguf ? ck->dir : cfg, NULL};
    int rc = LR_OK;
    for (size_t k = 0; k <= ck->nfiles && !rc; k++) {
        const char *in = k == 0 ? inputs[0] : lr_st_path(ck->files[k - 1]);
        if (in && stat(in, &si) == 0 && si.st_dev == so.st_dev && si.st_ino == so.st_ino)
            rc = lr_fail(LR_E_INVAL, "%s: is the input %s (refusing to overwrite it)", out, in);
    }
    free(cfg);
    return rc;
}

int lr_checkpoint_save(const lr_checkpoint *ck, const char *dir, bool overwrite) {
    struct stat st;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) return lr_fail(LR_E_IO, "%s: cannot create: %s", dir, strerror(errno));
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return lr_fail(LR_E_IO, "%s: not a directory", dir);
    char *cfg_path = lr_path_join(dir, "config.json"), *st_path = lr_path_join(dir, "model.safetensors");
    char *text = NULL;
    size_t text_len = 0;
    struct save_ctx x = {ck, NULL, NULL, 0};
    int rc = LR_OK;
    if (!cfg_path || !st_path || !(x.conv = calloc(n_entries(ck) + 1, sizeof *x.conv))) {
        rc = lr_fail(LR_E_NOMEM, "%s: out of memory", dir);
        goto out;
    }
    const char *outs[2] = {st_path, cfg_path};
    for (int i = 0; i < 2 && !rc; i++) {
        if ((rc = not_an_input(ck, outs[i]))) break;
        if (!overwrite && access(outs[i], F_OK) == 0)
            rc = lr_fail(LR_E_IO, "%s: already exists (refusing to overwrite)", outs[i]);
    }
    if (rc) goto out;
    if (ck->is_gguf) {
        if (!(text = json_dumps(ck->gguf_config, JSON_INDENT(2)))) {
            rc = lr_fail(LR_E_NOMEM, "%s: out of memory", dir);
            goto out;
        }
        text_len = strlen(text);
    } else {
        char *in = lr_path_join(ck->dir, "config.json");
        rc = in ? lr_read_file(in, 16u << 20, &text, &text_len) : lr_fail(LR_E_NOMEM, "%s: out of memory", dir);
        free(in);
        if (rc) goto out;
    }
    if ((rc = lr_st_writer_create(&x.w)) || (rc = lr_st_writer_set_metadata(x.w, "format", "pt")) ||
        (rc = for_each_expected(&ck->cfg, save_one, &x)) || (rc = lr_st_writer_write(x.w, st_path, overwrite)))
        goto out;
    if (ck->is_gguf) {
        /* A trailing newline, as save_pretrained writes. */
        char *nl = realloc(text, text_len + 2);
        if (!nl) {
            rc = lr_fail(LR_E_NOMEM, "%s: out of memory", dir);
            goto out;
        }
        text = nl;
        text[text_len++] = '\n';
        text[text_len] = '\0';
    }
    rc = write_text_atomic(cfg_path, text, text_len, overwrite);
out:
    lr_st_writer_free(x.w);
    for (size_t i = 0; i < x.nconv; i++) free(x.conv[i]);
    free(x.conv);
    free(text);
    free(cfg_path);
    free(st_path);
    return rc;
}
