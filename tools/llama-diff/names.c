/* names.c: compare's dump under test under Hugging Face stage names. An engine's dump
 * names stages its own way: vLLM by module path, with packed qkv_proj and gate_up_proj
 * outputs and, under tensor parallelism, one file per rank holding that rank's columns;
 * llama.cpp by the names its eval callback prints, with q and k in GGUF's row order for
 * its RoPE. Each map here turns such a dump into the stages a golden holds, splitting
 * and gathering by the plan's own sizes (lr_tp_layout_make), so the comparison after it
 * is the one an HF-named dump gets. The tables are docs/llama-diff.md's. */
#include "diff.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How an engine tensor's columns become an HF stage (the composer's gather rules,
 * ref/core/layer.c): a replicated tensor as it is (rank 0's), or each rank's block of a
 * packed, column-parallel output placed where the whole tensor holds it. */
typedef enum { G_AS_IS, G_Q, G_K, G_V, G_CTX, G_GATE, G_UP, G_INTER, G_ROPE_ROWS } gather;

typedef struct {
    const char *engine; /* suffix after "model.layers.N." (vLLM) or before "-N" (llama.cpp) */
    lr_layer_stage stage[3];
    gather how[3];
    int n;
} layer_map;

#define ONE(e, s, g)                                                                                         \
    { e, {LR_LS_##s}, {g}, 1 }
#define TWO(e, s1, g1, s2, g2)                                                                               \
    { e, {LR_LS_##s1, LR_LS_##s2}, {g1, g2}, 2 }

/* vLLM's LlamaDecoderLayer modules (vllm/model_executor/models/llama.py). mlp.act_fn is
 * SiluAndMul: silu(gate) * up, HF's down_proj input. o_proj and down_proj are the
 * attention's and the MLP's whole output, as HF's self_attn and mlp are: they stand for
 * those too unless the dump holds the self_attn and mlp modules' own outputs. */
static const layer_map vllm_layer[] = {
    ONE("input_layernorm", INPUT_LAYERNORM, G_AS_IS),
    {"self_attn.qkv_proj", {LR_LS_Q_PROJ, LR_LS_K_PROJ, LR_LS_V_PROJ}, {G_Q, G_K, G_V}, 3},
    ONE("self_attn.attn", O_PROJ_INPUT, G_CTX),
    TWO("self_attn.o_proj", O_PROJ, G_AS_IS, SELF_ATTN, G_AS_IS),
    ONE("post_attention_layernorm", POST_ATTENTION_LAYERNORM, G_AS_IS),
    TWO("mlp.gate_up_proj", GATE_PROJ, G_GATE, UP_PROJ, G_UP),
    ONE("mlp.act_fn", DOWN_PROJ_INPUT, G_INTER),
    TWO("mlp.down_proj", DOWN_PROJ, G_AS_IS, MLP, G_AS_IS),
    ONE("self_attn", SELF_ATTN, G_AS_IS),
    ONE("mlp", MLP, G_AS_IS),
};

/* llama.cpp's llama graph (src/models/llama.cpp, src/llama-graph.cpp): the first tensor
 * computed under each name. Qcur and Kcur in GGUF's row order (G_ROPE_ROWS). */
static const layer_map llamacpp_layer[] = {
    ONE("attn_norm", INPUT_LAYERNORM, G_AS_IS),
    ONE("Qcur", Q_PROJ, G_ROPE_ROWS),
    ONE("Kcur", K_PROJ, G_ROPE_ROWS),
    ONE("Vcur", V_PROJ, G_AS_IS),
    ONE("kqv_out", O_PROJ_INPUT, G_AS_IS),
    TWO("attn_out", O_PROJ, G_AS_IS, SELF_ATTN, G_AS_IS),
    ONE("ffn_norm", POST_ATTENTION_LAYERNORM, G_AS_IS),
    ONE("ffn_gate", GATE_PROJ, G_AS_IS),
    ONE("ffn_up", UP_PROJ, G_AS_IS),
    ONE("ffn_gate_b", GATE_PROJ, G_AS_IS), /* after the bias, in a model with MLP biases */
    ONE("ffn_up_b", UP_PROJ, G_AS_IS),
    ONE("ffn_silu", ACT_FN, G_AS_IS),
    ONE("ffn_swiglu", DOWN_PROJ_INPUT, G_AS_IS),
    ONE("ffn_gate_par", DOWN_PROJ_INPUT, G_AS_IS),
    TWO("ffn_out", DOWN_PROJ, G_AS_IS, MLP, G_AS_IS),
    ONE("l_out", LAYER, G_AS_IS),
};

#undef ONE
#undef TWO

/* Names llama.cpp prints that equal no HF stage, and why they are skipped. */
static const struct {
    const char *engine, *reason;
} llamacpp_skip[] = {
    {"ffn_inp", "the residual stream after attention: Hugging Face reports no stage there"},
    {"norm", "rms_norm before its weight multiplies: the HF norm stages include the weight"},
    {"kq", "attention scores per head: Hugging Face reports attention's merged output (kqv_out)"},
    {"kq_soft_max",
     "attention probabilities per head: Hugging Face reports attention's merged output (kqv_out)"},
    {"kqv", "attention output per head, before the heads are merged (kqv_out)"},
    {"v_cont", "V transposed for the attention product"},
    {"ffn_down", "down_proj before its bias (printed only for a model with one); ffn_out is after it"},
};

/* Golden stages an engine's names may not hold, and why: missing, they are listed,
 * not required. */
static const char *not_produced(const char *names, lr_layer_stage s) {
    if (s != LR_LS_ACT_FN) return NULL;
    if (strcmp(names, "vllm") == 0)
        return "vLLM's mlp.act_fn (SiluAndMul) computes silu(gate) * up in one op: no module outputs "
               "silu(gate) alone";
    if (strcmp(names, "llama.cpp") == 0)
        return "llama.cpp fuses silu(gate) * up (ffn_swiglu); only builds that print ffn_silu hold "
               "silu(gate) alone";
    return NULL;
}

const char *dump_not_produced(const mapped_dump *d, const char *stage) {
    int64_t l = lr_stage_layer(stage);
    if (l < 0) return NULL;
    for (int s = 0; s < LR_LAYER_STAGE_COUNT; s++) {
        char name[96];
        if (strcmp(lr_layer_stage_name(name, sizeof name, l, (lr_layer_stage)s), stage) == 0)
            return not_produced(d->names, (lr_layer_stage)s);
    }
    return NULL;
}

const ld_stage *dump_find(const mapped_dump *d, const char *name) {
    for (size_t i = 0; i < d->n; i++)
        if (strcmp(d->s[i].name, name) == 0) return &d->s[i];
    return NULL;
}

/* Adds stage name (copied) with tensor t; owns: the stage frees t's data. A second
 * tensor under one HF name is an error naming both engine names. */
static int add(mapped_dump *d, const char *name, const char *from, const lr_tensor *t, bool owns) {
    const ld_stage *dup = dump_find(d, name);
    if (dup) {
        if (owns) free((void *)t->data);
        return bad("%s: tensors \"%s\" and \"%s\" both map to %s (--names %s)", d->path[0], dup->from, from,
                   name, d->names);
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 64;
        ld_stage *s = realloc(d->s, cap * sizeof *s);
        if (!s) {
            if (owns) free((void *)t->data);
            return bad("out of memory");
        }
        d->s = s;
        d->cap = cap;
    }
    char *copy = strdup(name), *src = strdup(from);
    if (!copy || !src) {
        free(copy);
        free(src);
        if (owns) free((void *)t->data);
        return bad("out of memory");
    }
    d->s[d->n++] = (ld_stage){.name = copy, .from = src, .t = *t, .owns_data = owns};
    return 0;
}

static int skip(mapped_dump *d, const char *name, const char *reason) {
    json_array_append_new(d->skipped, json_pack("{s:s, s:s}", "name", name, "reason", reason));
    return 0;
}

/* Rank r's (T, cols) block at column src of its packed output, where the whole stage
 * (T, width) holds it: the composer's block_of for this gather. */
static void block_of(const lr_config *c, const lr_tp_layout *L, int r, gather g, int64_t *src, int64_t *cols,
                     int64_t *dst, int64_t *ld) {
    int64_t hd = c->head_dim;
    *src = 0;
    switch (g) {
    case G_Q:
        *ld = L->q_size + 2 * L->kv_size, *cols = L->q_size, *dst = r * L->q_size;
        break;
    case G_K:
        *ld = L->q_size + 2 * L->kv_size, *src = L->q_size, *cols = L->kv_size, *dst = L->kv_head_start * hd;
        break;
    case G_V:
        *ld = L->q_size + 2 * L->kv_size, *src = L->q_size + L->kv_size, *cols = L->kv_size;
        *dst = L->kv_head_start * hd;
        break;
    case G_CTX:
        *ld = L->q_size, *cols = L->q_size, *dst = r * L->q_size;
        break;
    case G_GATE:
        *ld = 2 * L->intermediate, *cols = L->intermediate, *dst = r * L->intermediate;
        break;
    case G_UP:
        *ld = 2 * L->intermediate, *src = L->intermediate, *cols = L->intermediate,
        *dst = r * L->intermediate;
        break;
    default:
        *ld = L->intermediate, *cols = L->intermediate, *dst = r * L->intermediate;
        break;
    }
}

static int64_t gathered_width(const lr_config *c, gather g) {
    switch (g) {
    case G_Q:
    case G_CTX:
        return c->num_attention_heads * c->head_dim;
    case G_K:
    case G_V:
        return c->num_key_value_heads * c->head_dim;
    default:
        return c->intermediate_size;
    }
}

/* vLLM: the whole stage from every rank's block of engine tensor `from`. */
static int gather_ranks(mapped_dump *d, const lr_config *c, const char *name, const char *from, gather g) {
    int64_t T = lr_fixture_batch(d->fx[0])->num_tokens, W = gathered_width(c, g);
    const lr_st_entry *e0 = lr_fixture_stage(d->fx[0], from);
    size_t es = lr_dtype_size(e0->t.dtype);
    char *out = calloc((size_t)(T * W), es);
    if (!out) return bad("out of memory");
    for (int r = 0; r < d->nfx; r++) {
        const lr_st_entry *e = lr_fixture_stage(d->fx[r], from);
        lr_tp_layout L;
        int rc = lr_tp_layout_make(c, d->nfx, r, &L);
        if (rc) {
            free(out);
            return lib_fail(rc);
        }
        int64_t src, cols, dst, ld;
        block_of(c, &L, r, g, &src, &cols, &dst, &ld);
        const char *why = !e                          ? "missing"
                          : e->t.dtype != e0->t.dtype ? "dtype differs from rank 0's"
                          : e->t.shape[1] != ld       ? "width"
                                                      : NULL;
        if (why) {
            free(out);
            if (strcmp(why, "width") == 0)
                return bad(
                    "%s: tensor \"%s\": %lld features; rank %d of %d holds %lld (its packed block, by the "
                    "plan of --model)",
                    d->path[r], from, (long long)e->t.shape[1], r, d->nfx, (long long)ld);
            return bad("%s: tensor \"%s\": %s (rank %d of %d: every rank's dump holds its block)", d->path[r],
                       from, why, r, d->nfx);
        }
        const char *in = e->t.data;
        for (int64_t t = 0; t < T; t++)
            memcpy(out + (size_t)(t * W + dst) * es, in + (size_t)(t * ld + src) * es, (size_t)cols * es);
    }
    lr_tensor t = {.dtype = e0->t.dtype, .ndim = 2, .shape = {T, W}, .data = out};
    return add(d, name, from, &t, true);
}

/* llama.cpp's Qcur/Kcur: GGUF stores q and k rows of each head interleaved for ggml's
 * RoPE (row 2i + j of a head is HF row j * head_dim / 2 + i), so their outputs' columns
 * are too; HF order is restored here, as the GGUF reader does for the weights. */
static int unpermute(mapped_dump *d, const lr_config *c, const char *name, const lr_st_entry *e) {
    int64_t T = e->t.shape[0], W = e->t.shape[1], hd = c->head_dim;
    if (hd % 2 || W % hd)
        return bad("%s: tensor \"%s\": %lld features are not whole heads of head_dim %lld", d->path[0],
                   e->name, (long long)W, (long long)hd);
    size_t es = lr_dtype_size(e->t.dtype);
    char *out = malloc((size_t)(T * W) * es);
    if (!out) return bad("out of memory");
    const char *in = e->t.data;
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < W / hd; h++)
            for (int64_t i = 0; i < hd / 2; i++)
                for (int j = 0; j < 2; j++)
                    memcpy(out + (size_t)(t * W + h * hd + j * hd / 2 + i) * es,
                           in + (size_t)(t * W + h * hd + 2 * i + j) * es, es);
    lr_tensor t = e->t;
    t.data = out;
    return add(d, name, e->name, &t, true);
}

/* The layer number of "PREFIX.N" or "NAME-N" after prefix p; -1 if the rest is not one. */
static int64_t layer_after(const char *s, int64_t layers) {
    char *end;
    if (*s < '0' || *s > '9') return -1;
    long long l = strtoll(s, &end, 10);
    return *end == '\0' && l < layers ? l : -1;
}

static int map_one(mapped_dump *d, const lr_config *c, const lr_st_entry *e, const layer_map *m, int64_t l) {
    char name[96];
    for (int k = 0; k < m->n; k++) {
        lr_layer_stage s = m->stage[k];
        gather g = m->how[k];
        lr_layer_stage_name(name, sizeof name, l, s);
        /* A vLLM module named as the HF stage (self_attn, mlp) speaks for itself. */
        if (k > 0 && strcmp(d->names, "vllm") == 0 && lr_fixture_stage(d->fx[0], name)) continue;
        int status = g == G_AS_IS       ? add(d, name, e->name, &e->t, false)
                     : g == G_ROPE_ROWS ? unpermute(d, c, name, e)
                                        : gather_ranks(d, c, name, e->name, g);
        if (status) return status;
    }
    return 0;
}

/* The name under this map nearest to an unmapped one (a typo's likely intent), or NULL. */
static json_t *nearest_engine(const mapped_dump *d, const lr_config *c, const char *name) {
    bool vllm = strcmp(d->names, "vllm") == 0;
    static const char *const vllm_top[] = {"model.embed_tokens", "model.norm", "logits"};
    static const char *const cpp_top[] = {"inp_embd", "result_norm", "result_output"};
    const layer_map *table = vllm ? vllm_layer : llamacpp_layer;
    size_t ntable =
        vllm ? sizeof vllm_layer / sizeof vllm_layer[0] : sizeof llamacpp_layer / sizeof llamacpp_layer[0];
    char best[160] = "", cand[160];
    size_t bd = (size_t)-1;
    for (size_t i = 0; i < 3; i++) {
        size_t dd = edit_distance(name, vllm ? vllm_top[i] : cpp_top[i]);
        if (dd < bd) bd = dd, snprintf(best, sizeof best, "%s", vllm ? vllm_top[i] : cpp_top[i]);
    }
    for (int64_t l = 0; l < c->num_hidden_layers; l++)
        for (size_t i = 0; i <= ntable; i++) {
            if (i == ntable && !vllm) break;
            if (i == ntable) /* the layer's own output */
                snprintf(cand, sizeof cand, "model.layers.%lld", (long long)l);
            else if (vllm)
                snprintf(cand, sizeof cand, "model.layers.%lld.%s", (long long)l, table[i].engine);
            else
                snprintf(cand, sizeof cand, "%s-%lld", table[i].engine, (long long)l);
            size_t dd = edit_distance(name, cand);
            if (dd < bd) bd = dd, memcpy(best, cand, sizeof best);
        }
    return *best ? json_string(best) : json_null();
}

static int unmapped(mapped_dump *d, const lr_config *c, const char *name) {
    json_array_append_new(
        d->unmapped, json_pack("{s:s, s:o}", "name", name, "nearest_in_names", nearest_engine(d, c, name)));
    return 0;
}

static int map_vllm(mapped_dump *d, const lr_config *c, const lr_st_entry *e) {
    static const struct {
        const char *engine;
        lr_model_stage stage;
    } top[] = {{"model.embed_tokens", LR_MS_EMBED_TOKENS},
               {"model.norm", LR_MS_NORM},
               {"logits", LR_MS_LM_HEAD},
               {"logits_processor", LR_MS_LM_HEAD}};
    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++)
        if (strcmp(e->name, top[i].engine) == 0)
            return add(d, lr_model_stage_name(top[i].stage), e->name, &e->t, false);
    static const char prefix[] = "model.layers.";
    if (strncmp(e->name, prefix, sizeof prefix - 1) == 0) {
        const char *p = e->name + sizeof prefix - 1;
        char *end;
        long long l = strtoll(p, &end, 10);
        if (end != p && l >= 0 && l < c->num_hidden_layers) {
            char name[96];
            if (*end == '\0')
                return add(d, lr_layer_stage_name(name, sizeof name, l, LR_LS_LAYER), e->name, &e->t, false);
            for (size_t i = 0; *end == '.' && i < sizeof vllm_layer / sizeof vllm_layer[0]; i++)
                if (strcmp(end + 1, vllm_layer[i].engine) == 0) return map_one(d, c, e, &vllm_layer[i], l);
            if (strcmp(end, ".self_attn.rotary_emb") == 0)
                return skip(d, e->name, "q and k after RoPE: Hugging Face reports no stage there");
        }
    }
    return unmapped(d, c, e->name);
}

static int map_llamacpp(mapped_dump *d, const lr_config *c, const lr_st_entry *e) {
    static const struct {
        const char *engine;
        lr_model_stage stage;
    } top[] = {{"inp_embd", LR_MS_EMBED_TOKENS},
               {"embd", LR_MS_EMBED_TOKENS},
               {"result_norm", LR_MS_NORM},
               {"result_output", LR_MS_LM_HEAD}};
    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++)
        if (strcmp(e->name, top[i].engine) == 0)
            return add(d, lr_model_stage_name(top[i].stage), e->name, &e->t, false);
    if (strstr(e->name, " ("))
        return skip(d, e->name,
                    "a view of another tensor (reshaped, permuted, ...): the tensor itself is mapped");
    const char *dash = strrchr(e->name, '-');
    int64_t l = dash ? layer_after(dash + 1, c->num_hidden_layers) : -1;
    size_t n = dash ? (size_t)(dash - e->name) : 0;
    if (l >= 0) {
        /* With MLP biases the projections' outputs after the bias are ffn_gate_b / ffn_up_b. */
        bool bias = c->mlp_bias;
        for (size_t i = 0; i < sizeof llamacpp_layer / sizeof llamacpp_layer[0]; i++) {
            const char *en = llamacpp_layer[i].engine;
            if (strlen(en) != n || strncmp(e->name, en, n) != 0) continue;
            if (bias && (strcmp(en, "ffn_gate") == 0 || strcmp(en, "ffn_up") == 0))
                return skip(d, e->name,
                            "the projection before its bias (the model has MLP biases): _b is after it");
            return map_one(d, c, e, &llamacpp_layer[i], l);
        }
        for (size_t i = 0; i < sizeof llamacpp_skip / sizeof llamacpp_skip[0]; i++)
            if (strlen(llamacpp_skip[i].engine) == n && strncmp(e->name, llamacpp_skip[i].engine, n) == 0)
                return skip(d, e->name, llamacpp_skip[i].reason);
    }
    return unmapped(d, c, e->name);
}

/* tp_rank of a rank's dump from its metadata: -1 absent; -2 (after an error) bad. */
static int rank_of(const lr_fixture *fx, const char *path, int n) {
    const char *r = lr_fixture_metadata(fx, "tp_rank"), *s = lr_fixture_metadata(fx, "tp_size");
    if (!r && !s) return -1;
    char *end;
    long rank = r ? strtol(r, &end, 10) : -1;
    if (!r || *end || rank < 0 || rank >= n) {
        bad("%s: __metadata__.tp_rank: %s%s%s (0..%d: one dump per rank given)", path, r ? "\"" : "missing",
            r ? r : "", r ? "\" is not a rank" : "", n - 1);
        return -2;
    }
    long size = s ? strtol(s, &end, 10) : -1;
    if (!s || *end || size != n) {
        bad("%s: __metadata__.tp_size: %s%s%s, but %d dumps under test were given", path,
            s ? "\"" : "missing", s ? s : "", s ? "\"" : "", n);
        return -2;
    }
    return (int)rank;
}

int dump_open(const args *a, const char *const *paths, int n, const lr_config *cfg, mapped_dump *d) {
    memset(d, 0, sizeof *d);
    d->names = a->names ? a->names : "hf";
    d->skipped = json_array();
    d->unmapped = json_array();
    if (!d->skipped || !d->unmapped) return bad("out of memory");
    bool hf = strcmp(d->names, "hf") == 0, vllm = strcmp(d->names, "vllm") == 0;
    if (n > 1 && !vllm)
        return bad(
            "compare: %d dumps under test: several are the ranks of a tensor-parallel run (--names vllm); "
            "--names %s takes one",
            n, d->names);
    if (!hf && !cfg)
        return bad("compare --names %s: needs --model DIR|FILE.gguf (the model's sizes split and place the "
                   "engine's tensors)",
                   d->names);
    /* Ranks in tp_rank order when every dump says its rank, else in the order given. */
    lr_fixture *fx[LD_MAX_POS] = {0};
    int order[LD_MAX_POS], status = 0, said = 0;
    for (int i = 0; i < n && !status; i++) {
        int rc = lr_fixture_open(paths[i], &fx[i]);
        if (rc) status = lib_fail(rc);
    }
    for (int i = 0; i < n; i++)
        order[i] = -1;
    for (int i = 0; i < n && !status; i++) {
        int r = n > 1 ? rank_of(fx[i], paths[i], n) : -1;
        if (r == -2)
            status = EXIT_BAD;
        else if ((r >= 0 && order[r] >= 0) || (i > 0 && (r >= 0) != (said > 0)))
            status = bad(
                "%s: __metadata__.tp_rank: %s (every rank's dump says its own rank, or none does)", paths[i],
                r >= 0 && order[r] >= 0 ? "a rank given twice" : "given by some dumps and not others");
        else
            order[r >= 0 ? r : i] = i, said += r >= 0;
    }
    if (status) {
        for (int i = 0; i < n; i++)
            lr_fixture_free(fx[i]);
        return status;
    }
    for (int r = 0; r < n; r++) {
        d->fx[r] = fx[order[r]];
        d->path[r] = paths[order[r]];
    }
    d->nfx = n;
    const lr_fixture *f0 = d->fx[0];
    for (int r = 1; r < n; r++) {
        const lr_batch *x = lr_fixture_batch(d->fx[r]), *y = lr_fixture_batch(f0);
        if (x->num_tokens != y->num_tokens ||
            memcmp(x->input_ids, y->input_ids, (size_t)x->num_tokens * sizeof(int64_t)))
            return bad("%s: input_ids differ from %s's: the ranks are of different inputs", d->path[r],
                       d->path[0]);
    }
    for (size_t i = 0; i < lr_fixture_stage_count(f0) && !status; i++) {
        const lr_st_entry *e = lr_fixture_stage_at(f0, i);
        status = hf     ? add(d, e->name, e->name, &e->t, false)
                 : vllm ? map_vllm(d, cfg, e)
                        : map_llamacpp(d, cfg, e);
    }
    return status;
}

void dump_close(mapped_dump *d) {
    for (size_t i = 0; i < d->n; i++) {
        free((char *)d->s[i].name);
        free((char *)d->s[i].from);
        if (d->s[i].owns_data) free((void *)d->s[i].t.data);
    }
    free(d->s);
    for (int r = 0; r < d->nfx; r++)
        lr_fixture_free(d->fx[r]);
    json_decref(d->skipped);
    json_decref(d->unmapped);
}
