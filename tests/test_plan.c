/* test_plan.c: checkpoint loading (single file and sharded, F32/F16/BF16, tied and
 * untied, biases, head_dim != hidden/heads, MHA/GQA/MQA) and bad checkpoints; then
 * vLLM's packing and tensor-parallel sharding, checked bit for bit: every packed tensor
 * of every rank against the slice this file cuts from the HF tensors by vLLM's rules
 * (independently of the plan's own slices), and the shards put back together into the
 * HF originals. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* ---- models -------------------------------------------------------------------------- */

typedef struct {
    const char *what;
    int64_t vocab, hidden, inter, layers, heads, kv_heads, head_dim;
    bool attention_bias, mlp_bias, tied;
    int style;
} model_spec;

static const model_spec models[] = {
    /* vocab 70 pads to 128: at tp 8 ranks 5..7 hold padding only */
    {"mha", 70, 32, 48, 2, 8, 8, 4, false, false, false, 4},
    /* GQA with both biases; padded vocab 192; KV heads replicated at tp 4 and 8 */
    {"gqa-biases", 130, 48, 64, 2, 8, 2, 6, true, true, false, 5},
    /* MQA, tied, vocab exactly 64 (no padding) */
    {"mqa-tied", 64, 32, 40, 1, 4, 1, 8, false, true, true, 4},
    /* head_dim 10 != 24 / 6, three KV heads: tp 3 = kv heads, tp 6 replicates */
    {"head-dim-kv3-tied", 130, 24, 36, 2, 6, 3, 10, true, false, true, 5},
};

static const lr_dtype storage_dtypes[] = {LR_F32, LR_F16, LR_BF16};

static void spec_config(const model_spec *s, lr_config *c) {
    tu_config_small(c);
    c->vocab_size = s->vocab;
    c->hidden_size = s->hidden;
    c->intermediate_size = s->inter;
    c->num_hidden_layers = s->layers;
    c->num_attention_heads = s->heads;
    c->num_key_value_heads = s->kv_heads;
    c->head_dim = s->head_dim;
    c->attention_bias = s->attention_bias;
    c->mlp_bias = s->mlp_bias;
    c->tie_word_embeddings = s->tied;
    c->config_style = s->style;
}

/* ---- checkpoint loading ---------------------------------------------------------------- */

/* ck holds exactly m's tensors, with m's dtypes, shapes and values. */
static void assert_checkpoint_matches(const lr_checkpoint *ck, const tu_model *m, const char *dir,
                                      tu_layout layout) {
    const lr_config *c = lr_checkpoint_config(ck);
    ck_assert_int_eq(c->vocab_size, m->cfg.vocab_size);
    ck_assert_int_eq(c->hidden_size, m->cfg.hidden_size);
    ck_assert_int_eq(c->intermediate_size, m->cfg.intermediate_size);
    ck_assert_int_eq(c->num_hidden_layers, m->cfg.num_hidden_layers);
    ck_assert_int_eq(c->num_attention_heads, m->cfg.num_attention_heads);
    ck_assert_int_eq(c->num_key_value_heads, m->cfg.num_key_value_heads);
    ck_assert_int_eq(c->head_dim, m->cfg.head_dim);
    ck_assert_int_eq(c->attention_bias, m->cfg.attention_bias);
    ck_assert_int_eq(c->mlp_bias, m->cfg.mlp_bias);
    ck_assert_int_eq(c->tie_word_embeddings, m->cfg.tie_word_embeddings);
    ck_assert_int_eq(c->config_style, m->cfg.config_style);
    ck_assert_str_eq(lr_checkpoint_dir(ck), dir);

    char *single = tu_path(dir, "model.safetensors");
    char *shard1 = tu_path(dir, TU_SHARD1), *shard2 = tu_path(dir, TU_SHARD2);
    size_t half = (m->n + 1) / 2;
    for (size_t k = 0; k < m->n; k++) {
        const tu_tensor *t = &m->t[k];
        const lr_st_entry *e = lr_checkpoint_find(ck, t->name);
        ck_assert_msg(e != NULL, "%s not found", t->name);
        ck_assert_str_eq(e->name, t->name);
        ck_assert_int_eq(e->t.dtype, t->dtype);
        ck_assert_int_eq(e->t.ndim, t->ndim);
        ck_assert_int_eq(e->t.shape[0], t->shape[0]);
        if (t->ndim == 2) ck_assert_int_eq(e->t.shape[1], t->shape[1]);
        int64_t n = t->shape[0] * t->shape[1];
        ck_assert_int_eq(lr_tensor_numel(&e->t), n);
        for (int64_t i = 0; i < n; i++)
            TU_CHECK(lr_tensor_get(&e->t, i) == t->data[i], "%s[%lld]: %a != %a", t->name,
                     (long long)i, lr_tensor_get(&e->t, i), t->data[i]);
        const char *want = layout == TU_SINGLE ? single : k < half ? shard1 : shard2;
        ck_assert_str_eq(lr_checkpoint_file_of(ck, t->name), want);
    }
    if (m->cfg.tie_word_embeddings) ck_assert_ptr_null(lr_checkpoint_find(ck, "lm_head.weight"));
    ck_assert_ptr_null(lr_checkpoint_find(ck, "model.layers.99.input_layernorm.weight"));
    free(single);
    free(shard1);
    free(shard2);
}

/* _i: model x storage dtype x layout. */
START_TEST(load_checkpoint) {
    const model_spec *s = &models[_i / 6];
    lr_dtype dt = storage_dtypes[(_i / 2) % 3];
    tu_layout layout = _i % 2 ? TU_SHARDED : TU_SINGLE;
    lr_config cfg;
    spec_config(s, &cfg);
    char *dir = tu_tmpdir("plan-load");
    tu_model *m = tu_write_checkpoint(dir, &cfg, dt, layout, 1000 + (uint64_t)_i);
    lr_checkpoint *ck = NULL;
    TU_ASSERT_OK(lr_checkpoint_open(dir, &ck));
    assert_checkpoint_matches(ck, m, dir, layout);
    lr_checkpoint_close(ck);
    lr_checkpoint_close(NULL);
    tu_model_free(m);
    tu_tmpdir_free(dir);
}
END_TEST

/* What a checkpoint may carry beyond the config's tensors. */
START_TEST(load_tolerated_extras) {
    lr_config cfg;
    tu_config_small(&cfg);
    cfg.tie_word_embeddings = true;
    char *dir = tu_tmpdir("plan-extras");
    tu_model *m = tu_model_create(&cfg, LR_BF16, 7);
    tu_model_put(m, "lm_head.weight", 2, cfg.vocab_size, cfg.hidden_size); /* tied, yet saved */
    tu_model_put(m, "model.layers.0.self_attn.rotary_emb.inv_freq", 1, cfg.head_dim / 2, 1);
    tu_model_write(m, dir, TU_SINGLE);
    lr_checkpoint *ck;
    TU_ASSERT_OK(lr_checkpoint_open(dir, &ck));
    ck_assert(lr_checkpoint_config(ck)->tie_word_embeddings);
    lr_checkpoint_close(ck);
    tu_model_free(m);
    tu_tmpdir_free(dir);
}
END_TEST

/* ---- bad checkpoints ------------------------------------------------------------------------ */

#define KEEP (-1)

typedef struct {
    const char *what;
    tu_layout layout;
    bool biases;         /* the files hold attention and MLP biases */
    bool tied;           /* the files hold no lm_head */
    const char *drop;    /* tensor left out of the files, or NULL */
    const char *put;     /* tensor added or reshaped, or NULL */
    int put_ndim;
    int64_t put_d0, put_d1;
    int64_t claim_layers; /* config.json's num_hidden_layers, or KEEP */
    int claim_biases;     /* config.json's attention_bias and mlp_bias, or KEEP */
    int claim_tied;       /* config.json's tie_word_embeddings, or KEEP */
    int status;
    const char *file;   /* the file the message names: a name inside the dir, or "" for the dir */
    const char *tensor; /* the tensor it names */
} bad_ckpt;

/* The small config: vocab 70, hidden 32, inter 48, 2 layers, q 32 rows, k/v 16 rows. */
static const bad_ckpt bad_ckpts[] = {
    {"missing q_proj", TU_SINGLE, false, false, "model.layers.1.self_attn.q_proj.weight", NULL, 0, 0, 0,
     KEEP, KEEP, KEEP, LR_E_MISSING, "", "\"model.layers.1.self_attn.q_proj.weight\""},
    {"missing final norm", TU_SHARDED, false, false, "model.norm.weight", NULL, 0, 0, 0, KEEP, KEEP, KEEP,
     LR_E_MISSING, "", "\"model.norm.weight\""},
    {"missing lm_head", TU_SINGLE, false, false, "lm_head.weight", NULL, 0, 0, 0, KEEP, KEEP, KEEP,
     LR_E_MISSING, "", "\"lm_head.weight\""},
    {"missing k bias", TU_SINGLE, true, false, "model.layers.0.self_attn.k_proj.bias", NULL, 0, 0, 0, KEEP,
     KEEP, KEEP, LR_E_MISSING, "", "\"model.layers.0.self_attn.k_proj.bias\""},
    {"missing down bias", TU_SHARDED, true, false, "model.layers.1.mlp.down_proj.bias", NULL, 0, 0, 0, KEEP,
     KEEP, KEEP, LR_E_MISSING, "", "\"model.layers.1.mlp.down_proj.bias\""},
    {"config claims biases", TU_SINGLE, false, false, NULL, NULL, 0, 0, 0, KEEP, 1, KEEP, LR_E_MISSING, "",
     "\"model.layers.0.self_attn.q_proj.bias\""},
    {"config claims untied", TU_SINGLE, false, true, NULL, NULL, 0, 0, 0, KEEP, KEEP, 0, LR_E_MISSING, "",
     "\"lm_head.weight\""},
    {"config claims more layers", TU_SINGLE, false, false, NULL, NULL, 0, 0, 0, 3, KEEP, KEEP, LR_E_MISSING, "",
     "\"model.layers.2.input_layernorm.weight\""},
    {"config claims more layers, sharded", TU_SHARDED, true, false, NULL, NULL, 0, 0, 0, 4, KEEP, KEEP,
     LR_E_MISSING, "", "\"model.layers.2."},
    {"k_proj rows", TU_SINGLE, false, false, NULL, "model.layers.0.self_attn.k_proj.weight", 2, 17, 32, KEEP,
     KEEP, KEEP, LR_E_SHAPE, "model.safetensors", "\"model.layers.0.self_attn.k_proj.weight\""},
    {"down_proj transposed", TU_SINGLE, false, false, NULL, "model.layers.1.mlp.down_proj.weight", 2, 48, 32,
     KEEP, KEEP, KEEP, LR_E_SHAPE, "model.safetensors", "\"model.layers.1.mlp.down_proj.weight\""},
    {"norm as a matrix", TU_SINGLE, false, false, NULL, "model.layers.0.input_layernorm.weight", 2, 32, 1,
     KEEP, KEEP, KEEP, LR_E_SHAPE, "model.safetensors", "\"model.layers.0.input_layernorm.weight\""},
    {"embedding vocab", TU_SHARDED, false, false, NULL, "model.embed_tokens.weight", 2, 71, 32, KEEP, KEEP,
     KEEP, LR_E_SHAPE, TU_SHARD1, "\"model.embed_tokens.weight\""},
    {"lm_head hidden", TU_SHARDED, false, false, NULL, "lm_head.weight", 2, 70, 34, KEEP, KEEP, KEEP,
     LR_E_SHAPE, TU_SHARD2, "\"lm_head.weight\""},
    {"bias length", TU_SINGLE, true, false, NULL, "model.layers.1.mlp.gate_proj.bias", 1, 47, 0, KEEP, KEEP,
     KEEP, LR_E_SHAPE, "model.safetensors", "\"model.layers.1.mlp.gate_proj.bias\""},
    {"config claims fewer layers", TU_SINGLE, false, false, NULL, NULL, 0, 0, 0, 1, KEEP, KEEP, LR_E_UNEXPECTED,
     "model.safetensors", "\"model.layers.1."},
    {"config claims fewer layers, sharded", TU_SHARDED, false, false, NULL, NULL, 0, 0, 0, 1, KEEP, KEEP,
     LR_E_UNEXPECTED, TU_SHARD1, "\"model.layers.1."},
    {"extra tensor", TU_SINGLE, false, false, NULL, "model.layers.0.self_attn.q_norm.weight", 1, 8, 0, KEEP,
     KEEP, KEEP, LR_E_UNEXPECTED, "model.safetensors", "\"model.layers.0.self_attn.q_norm.weight\""},
    {"biases the config does not have", TU_SINGLE, true, false, NULL, NULL, 0, 0, 0, KEEP, 0, KEEP,
     LR_E_UNEXPECTED, "model.safetensors", ".bias\""},
};

START_TEST(bad_checkpoint) {
    const bad_ckpt *b = &bad_ckpts[_i];
    lr_config cfg;
    tu_config_small(&cfg);
    cfg.attention_bias = cfg.mlp_bias = b->biases;
    cfg.tie_word_embeddings = b->tied;
    char *dir = tu_tmpdir("plan-bad");
    tu_model *m = tu_model_create(&cfg, LR_F16, 3);
    if (b->drop) tu_model_drop(m, b->drop);
    if (b->put) tu_model_put(m, b->put, b->put_ndim, b->put_d0, b->put_d1);
    tu_model_write(m, dir, b->layout);
    lr_config claim = cfg;
    if (b->claim_layers != KEEP) claim.num_hidden_layers = b->claim_layers;
    if (b->claim_biases != KEEP) claim.attention_bias = claim.mlp_bias = b->claim_biases;
    if (b->claim_tied != KEEP) claim.tie_word_embeddings = b->claim_tied;
    tu_write_config(dir, &claim);

    lr_checkpoint *ck = NULL;
    int rc = lr_checkpoint_open(dir, &ck);
    ck_assert_msg(rc == b->status, "%s: %s, expected %s: %s", b->what, lr_status_name(rc),
                  lr_status_name(b->status), lr_last_error());
    ck_assert_ptr_null(ck);
    char *file = tu_path(dir, b->file);
    if (!*b->file) file[strlen(file) - 1] = '\0'; /* the directory itself */
    TU_ASSERT_ERROR_HAS(file, b->tensor);
    if (b->status == LR_E_SHAPE) TU_ASSERT_ERROR_HAS("config.json");
    free(file);
    tu_model_free(m);
    tu_tmpdir_free(dir);
}
END_TEST

START_TEST(bad_dtype_tensor) {
    lr_config cfg;
    tu_config_small(&cfg);
    char *dir = tu_tmpdir("plan-dtype");
    tu_model *m = tu_model_create(&cfg, LR_F32, 5);
    tu_tensor *t = tu_model_put(m, "model.layers.0.mlp.up_proj.weight", 2, 48, 32);
    t->dtype = LR_I32;
    tu_model_write(m, dir, TU_SINGLE);
    lr_checkpoint *ck = NULL;
    TU_ASSERT_STATUS(lr_checkpoint_open(dir, &ck), LR_E_DTYPE);
    char *file = tu_path(dir, "model.safetensors");
    TU_ASSERT_ERROR_HAS(file, "\"model.layers.0.mlp.up_proj.weight\"", "I32");
    free(file);
    tu_model_free(m);
    tu_tmpdir_free(dir);
}
END_TEST

/* Edits a sharded checkpoint's index: entry set to value (NULL deletes it). */
static void edit_index(const char *dir, const char *entry, const char *value) {
    char *path = tu_path(dir, "model.safetensors.index.json");
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    ck_assert_ptr_nonnull(j);
    json_t *map = json_object_get(j, "weight_map");
    if (value)
        json_object_set_new(map, entry, json_string(value));
    else
        ck_assert_int_eq(json_object_del(map, entry), 0);
    tu_write_json(path, j);
    json_decref(j);
    free(path);
}

static void assert_open_fails(const char *dir, int status) {
    lr_checkpoint *ck = NULL;
    TU_ASSERT_STATUS(lr_checkpoint_open(dir, &ck), status);
    ck_assert_ptr_null(ck);
}

/* A sharded checkpoint of the small config whose index is then edited. */
static char *sharded_dir(tu_model **m, const char *drop) {
    lr_config cfg;
    tu_config_small(&cfg);
    char *dir = tu_tmpdir("plan-index");
    *m = tu_model_create(&cfg, LR_BF16, 11);
    if (drop) tu_model_drop(*m, drop);
    tu_model_write(*m, dir, TU_SHARDED);
    return dir;
}

START_TEST(index_points_to_missing_tensor) {
    tu_model *m;
    /* The index lists model.norm.weight in shard 2, which does not hold it. */
    char *dir = sharded_dir(&m, "model.norm.weight");
    edit_index(dir, "model.norm.weight", TU_SHARD2);
    assert_open_fails(dir, LR_E_MISSING);
    char *index = tu_path(dir, "model.safetensors.index.json"), *shard = tu_path(dir, TU_SHARD2);
    TU_ASSERT_ERROR_HAS(index, "model.norm.weight", shard);
    free(shard);
    tu_tmpdir_free(dir);
    tu_model_free(m);

    /* A tensor the files never had. */
    dir = sharded_dir(&m, NULL);
    edit_index(dir, "model.layers.0.mlp.extra.weight", TU_SHARD1);
    assert_open_fails(dir, LR_E_MISSING);
    free(index);
    index = tu_path(dir, "model.safetensors.index.json");
    TU_ASSERT_ERROR_HAS(index, "model.layers.0.mlp.extra.weight", TU_SHARD1);
    free(index);
    tu_tmpdir_free(dir);
    tu_model_free(m);

    /* A real tensor assigned to the wrong shard. */
    dir = sharded_dir(&m, NULL);
    edit_index(dir, "model.norm.weight", TU_SHARD1);
    assert_open_fails(dir, LR_E_MISSING);
    TU_ASSERT_ERROR_HAS("model.safetensors.index.json", "model.norm.weight", TU_SHARD1);
    tu_tmpdir_free(dir);
    tu_model_free(m);
}
END_TEST

START_TEST(index_omits_tensor) {
    tu_model *m;
    char *dir = sharded_dir(&m, NULL);
    edit_index(dir, "model.layers.0.mlp.up_proj.weight", NULL);
    assert_open_fails(dir, LR_E_UNEXPECTED);
    char *shard = tu_path(dir, TU_SHARD1);
    TU_ASSERT_ERROR_HAS(shard, "\"model.layers.0.mlp.up_proj.weight\"", "model.safetensors.index.json");
    free(shard);
    tu_tmpdir_free(dir);
    tu_model_free(m);
}
END_TEST

/* One tensor in both shards: the copy the index does not name is unexpected. */
START_TEST(tensor_in_two_shards) {
    tu_model *m;
    char *dir = sharded_dir(&m, NULL);
    char *p1 = tu_path(dir, TU_SHARD1), *p2 = tu_path(dir, TU_SHARD2);
    lr_st_file *f1, *f2;
    TU_ASSERT_OK(lr_st_open(p1, &f1));
    TU_ASSERT_OK(lr_st_open(p2, &f2));
    lr_st_writer *w;
    TU_ASSERT_OK(lr_st_writer_create(&w));
    for (size_t i = 0; i < lr_st_count(f1); i++)
        TU_ASSERT_OK(lr_st_writer_add(w, lr_st_at(f1, i)->name, &lr_st_at(f1, i)->t));
    TU_ASSERT_OK(lr_st_writer_add(w, "model.norm.weight", &lr_st_find(f2, "model.norm.weight")->t));
    lr_st_close(f1);
    lr_st_close(f2);
    TU_ASSERT_OK(lr_st_writer_write(w, p1, true));
    lr_st_writer_free(w);
    assert_open_fails(dir, LR_E_UNEXPECTED);
    TU_ASSERT_ERROR_HAS(p1, "\"model.norm.weight\"");
    free(p1);
    free(p2);
    tu_tmpdir_free(dir);
    tu_model_free(m);
}
END_TEST

/* Shard file names the index may not use, and index files that are not an index. */
START_TEST(index_bad_file_names) {
    static const char *const names[] = {"../" TU_SHARD2, "sub/" TU_SHARD2, "/etc/passwd", ".", "..", ""};
    for (size_t i = 0; i < N_ELEMS(names); i++) {
        tu_model *m;
        char *dir = sharded_dir(&m, NULL);
        edit_index(dir, "model.norm.weight", names[i]);
        assert_open_fails(dir, LR_E_JSON);
        TU_ASSERT_ERROR_HAS("model.safetensors.index.json", "model.norm.weight");
        if (*names[i]) TU_ASSERT_ERROR_HAS(names[i]);
        tu_tmpdir_free(dir);
        tu_model_free(m);
    }
}
END_TEST

START_TEST(index_malformed) {
    static const struct {
        const char *text;
        const char *needle;
    } cases[] = {
        {"{\"weight_map\": {", "line"},
        {"{\"metadata\": {}}", "weight_map"},
        {"{\"weight_map\": [\"" TU_SHARD1 "\"]}", "weight_map"},
        {"{\"weight_map\": {\"model.norm.weight\": 2}}", "model.norm.weight"},
        {"{\"weight_map\": {\"model.norm.weight\": \"" TU_SHARD2 "\", \"model.norm.weight\": \"" TU_SHARD2 "\"}}",
         "model.norm.weight"},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        tu_model *m;
        char *dir = sharded_dir(&m, NULL);
        char *index = tu_path(dir, "model.safetensors.index.json");
        tu_write_text(index, cases[i].text);
        assert_open_fails(dir, LR_E_JSON);
        TU_ASSERT_ERROR_HAS(index, cases[i].needle);
        free(index);
        tu_tmpdir_free(dir);
        tu_model_free(m);
    }
}
END_TEST

START_TEST(index_shard_absent) {
    tu_model *m;
    char *dir = sharded_dir(&m, NULL);
    edit_index(dir, "model.norm.weight", "model-00003-of-00003.safetensors");
    assert_open_fails(dir, LR_E_IO);
    TU_ASSERT_ERROR_HAS("model-00003-of-00003.safetensors");
    tu_tmpdir_free(dir);
    tu_model_free(m);
}
END_TEST

/* Directories without the files a checkpoint needs. */
START_TEST(missing_files) {
    lr_config cfg;
    tu_config_small(&cfg);
    char *dir = tu_tmpdir("plan-files");
    lr_checkpoint *ck = NULL;
    char *config = tu_path(dir, "config.json");
    TU_ASSERT_STATUS(lr_checkpoint_open(dir, &ck), LR_E_IO);
    TU_ASSERT_ERROR_HAS(config);
    tu_write_config(dir, &cfg);
    TU_ASSERT_STATUS(lr_checkpoint_open(dir, &ck), LR_E_MISSING);
    TU_ASSERT_ERROR_HAS(dir, "model.safetensors");
    tu_write_text(config, "{\"model_type\": \"llama\"}");
    TU_ASSERT_STATUS(lr_checkpoint_open(dir, &ck), LR_E_CONFIG);
    TU_ASSERT_ERROR_HAS(config, "vocab_size");
    ck_assert_ptr_null(ck);
    /* A broken weights file surfaces the reader's status. */
    tu_write_config(dir, &cfg);
    char *st = tu_path(dir, "model.safetensors");
    tu_write_text(st, "abc");
    TU_ASSERT_STATUS(lr_checkpoint_open(dir, &ck), LR_E_TRUNCATED);
    TU_ASSERT_ERROR_HAS(st);
    ck_assert_ptr_null(ck);
    free(st);
    free(config);
    tu_tmpdir_free(dir);
}
END_TEST

/* ---- tensor parallelism: expectations by vLLM's rules --------------------------------- */

/* What rank r holds, computed here, not by the library. */
typedef struct {
    int tp, rank;
    int64_t heads, kv_heads, replicas, kv_head0; /* kv heads [kv_head0, kv_head0 + kv_heads) */
    int64_t q, kv, inter;                        /* rows of q, of k (= of v), of gate (= of up) */
    int64_t vocab_padded, vocab_shard, vocab0;
} expect_layout;

/* The config field tp fails on (vLLM's checks in its order), or NULL. */
static const char *tp_error_field(const lr_config *c, int tp) {
    int64_t nkv = c->num_key_value_heads;
    int64_t vp = (c->vocab_size + 63) / 64 * 64;
    if (c->num_attention_heads % tp) return "num_attention_heads";
    if (tp >= nkv ? tp % nkv : nkv % tp) return "num_key_value_heads";
    if (c->intermediate_size % tp) return "intermediate_size";
    if (vp % tp) return "vocab_size";
    return NULL;
}

static expect_layout expect(const lr_config *c, int tp, int r) {
    expect_layout L = {.tp = tp, .rank = r};
    int64_t nkv = c->num_key_value_heads;
    L.heads = c->num_attention_heads / tp;
    if (tp > nkv) {
        /* vLLM replicates: rank r holds KV head r / (tp / nkv). */
        L.kv_heads = 1;
        L.replicas = tp / nkv;
        L.kv_head0 = r / L.replicas;
    } else {
        L.kv_heads = nkv / tp;
        L.replicas = 1;
        L.kv_head0 = r * L.kv_heads;
    }
    L.q = L.heads * c->head_dim;
    L.kv = L.kv_heads * c->head_dim;
    L.inter = c->intermediate_size / tp;
    L.vocab_padded = (c->vocab_size + 63) / 64 * 64;
    L.vocab_shard = L.vocab_padded / tp;
    L.vocab0 = r * L.vocab_shard;
    return L;
}

static void assert_layout(const lr_tp_layout *got, const expect_layout *L) {
    ck_assert_int_eq(got->tp_size, L->tp);
    ck_assert_int_eq(got->tp_rank, L->rank);
    ck_assert_int_eq(got->num_heads, L->heads);
    ck_assert_int_eq(got->num_kv_heads, L->kv_heads);
    ck_assert_int_eq(got->kv_replicas, L->replicas);
    ck_assert_int_eq(got->kv_head_start, L->kv_head0);
    ck_assert_int_eq(got->q_size, L->q);
    ck_assert_int_eq(got->kv_size, L->kv);
    ck_assert_int_eq(got->intermediate, L->inter);
    ck_assert_int_eq(got->vocab_padded, L->vocab_padded);
    ck_assert_int_eq(got->vocab_shard, L->vocab_shard);
    ck_assert_int_eq(got->vocab_start, L->vocab0);
}

/* How a packed tensor is cut from HF tensors. */
typedef enum {
    CUT_WHOLE,   /* norms, row-parallel biases: the HF tensor as is */
    CUT_VOCAB,   /* embed_tokens, lm_head: a block of padded-vocabulary rows */
    CUT_QKV,     /* [q rows of the rank's heads; k rows of its kv heads; v rows] */
    CUT_GATE_UP, /* [gate rows; up rows] of the rank's block */
    CUT_COLS,    /* o_proj, down_proj: the rank's block of input columns */
} cut_kind;

typedef struct {
    char name[160];
    cut_kind kind;
    int ndim;
    int64_t rows, cols;
    const tu_tensor *src[3];
} expect_packed;

typedef struct {
    size_t n;
    expect_packed p[512];
} expect_plan;

static void add_packed(expect_plan *ep, const tu_model *m, cut_kind kind, int ndim, int64_t rows,
                       int64_t cols, const char *name, const char *s0, const char *s1, const char *s2) {
    ck_assert_uint_lt(ep->n, N_ELEMS(ep->p));
    expect_packed *p = &ep->p[ep->n++];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->kind = kind;
    p->ndim = ndim;
    p->rows = rows;
    p->cols = ndim == 2 ? cols : 1;
    const char *srcs[3] = {s0, s1, s2};
    for (int k = 0; k < 3; k++) {
        p->src[k] = srcs[k] ? tu_model_find(m, srcs[k]) : NULL;
        ck_assert_msg(!srcs[k] || p->src[k], "no HF tensor %s", srcs[k]);
    }
}

/* Every tensor vLLM's LlamaForCausalLM holds on one rank, with its HF sources. */
static void expect_plan_of(const tu_model *m, const expect_layout *L, expect_plan *ep) {
    const lr_config *c = &m->cfg;
    int64_t H = c->hidden_size;
    ep->n = 0;
    const char *embed = "model.embed_tokens.weight";
    add_packed(ep, m, CUT_VOCAB, 2, L->vocab_shard, H, embed, embed, NULL, NULL);
    char n[160], a[160], b[160], d[160];
    for (int64_t l = 0; l < c->num_hidden_layers; l++) {
        char pre[64];
        snprintf(pre, sizeof pre, "model.layers.%lld", (long long)l);
        for (int bias = 0; bias <= (c->attention_bias ? 1 : 0); bias++) {
            const char *kind = bias ? "bias" : "weight";
            snprintf(n, sizeof n, "%s.self_attn.qkv_proj.%s", pre, kind);
            snprintf(a, sizeof a, "%s.self_attn.q_proj.%s", pre, kind);
            snprintf(b, sizeof b, "%s.self_attn.k_proj.%s", pre, kind);
            snprintf(d, sizeof d, "%s.self_attn.v_proj.%s", pre, kind);
            add_packed(ep, m, CUT_QKV, bias ? 1 : 2, L->q + 2 * L->kv, H, n, a, b, d);
        }
        snprintf(n, sizeof n, "%s.self_attn.o_proj.weight", pre);
        add_packed(ep, m, CUT_COLS, 2, H, L->q, n, n, NULL, NULL);
        if (c->attention_bias) {
            snprintf(n, sizeof n, "%s.self_attn.o_proj.bias", pre);
            add_packed(ep, m, CUT_WHOLE, 1, H, 1, n, n, NULL, NULL);
        }
        for (int bias = 0; bias <= (c->mlp_bias ? 1 : 0); bias++) {
            const char *kind = bias ? "bias" : "weight";
            snprintf(n, sizeof n, "%s.mlp.gate_up_proj.%s", pre, kind);
            snprintf(a, sizeof a, "%s.mlp.gate_proj.%s", pre, kind);
            snprintf(b, sizeof b, "%s.mlp.up_proj.%s", pre, kind);
            add_packed(ep, m, CUT_GATE_UP, bias ? 1 : 2, 2 * L->inter, H, n, a, b, NULL);
        }
        snprintf(n, sizeof n, "%s.mlp.down_proj.weight", pre);
        add_packed(ep, m, CUT_COLS, 2, H, L->inter, n, n, NULL, NULL);
        if (c->mlp_bias) {
            snprintf(n, sizeof n, "%s.mlp.down_proj.bias", pre);
            add_packed(ep, m, CUT_WHOLE, 1, H, 1, n, n, NULL, NULL);
        }
        snprintf(n, sizeof n, "%s.input_layernorm.weight", pre);
        add_packed(ep, m, CUT_WHOLE, 1, H, 1, n, n, NULL, NULL);
        snprintf(n, sizeof n, "%s.post_attention_layernorm.weight", pre);
        add_packed(ep, m, CUT_WHOLE, 1, H, 1, n, n, NULL, NULL);
    }
    add_packed(ep, m, CUT_WHOLE, 1, H, 1, "model.norm.weight", "model.norm.weight", NULL, NULL);
    add_packed(ep, m, CUT_VOCAB, 2, L->vocab_shard, H, "lm_head.weight",
               c->tie_word_embeddings ? embed : "lm_head.weight", NULL, NULL);
}

/* The value vLLM puts at (i, j) of a packed tensor on rank L->rank; *pad is set for
 * vocabulary padding, whose value is 0. */
static double expected_at(const expect_packed *p, const expect_layout *L, int64_t hd, int64_t i,
                          int64_t j, bool *pad) {
    *pad = false;
    switch (p->kind) {
    case CUT_WHOLE: return tu_at(p->src[0], i, j);
    case CUT_VOCAB: {
        int64_t g = L->vocab0 + i;
        if (g >= p->src[0]->shape[0]) {
            *pad = true;
            return 0.0;
        }
        return tu_at(p->src[0], g, j);
    }
    case CUT_QKV:
        if (i < L->q) return tu_at(p->src[0], L->rank * L->q + i, j);
        if (i < L->q + L->kv) return tu_at(p->src[1], L->kv_head0 * hd + (i - L->q), j);
        return tu_at(p->src[2], L->kv_head0 * hd + (i - L->q - L->kv), j);
    case CUT_GATE_UP:
        if (i < L->inter) return tu_at(p->src[0], L->rank * L->inter + i, j);
        return tu_at(p->src[1], L->rank * L->inter + (i - L->inter), j);
    case CUT_COLS: return tu_at(p->src[0], i, L->rank * p->cols + j);
    }
    ck_abort_msg("unknown cut");
    return 0;
}

/* Element (i, j) of a packed tensor (j = 0 for 1-D). */
static double pget(const lr_tensor *t, int64_t i, int64_t j) {
    int64_t cols = t->ndim == 2 ? t->shape[1] : 1;
    return lr_tensor_get(t, i * cols + j);
}

/* The plan of one rank names exactly the expected tensors with the expected shapes,
 * and the weights hold the expected values bit for bit. */
static void check_rank(const tu_model *m, const lr_plan *plan, const lr_weights *w, lr_dtype dt,
                       const expect_layout *L) {
    expect_plan *ep = malloc(sizeof *ep);
    ck_assert_ptr_nonnull(ep);
    expect_plan_of(m, L, ep);
    ck_assert_uint_eq(lr_plan_count(plan), ep->n);
    ck_assert_ptr_eq(lr_weights_plan(w), plan);
    ck_assert_int_eq(lr_weights_dtype(w), dt);
    int64_t hd = m->cfg.head_dim;
    for (size_t k = 0; k < ep->n; k++) {
        const expect_packed *p = &ep->p[k];
        int idx = lr_plan_index(plan, p->name);
        ck_assert_msg(idx >= 0, "plan lacks %s", p->name);
        const lr_packed_desc *d = lr_plan_at(plan, (size_t)idx);
        ck_assert_str_eq(d->name, p->name);
        ck_assert_int_eq(d->ndim, p->ndim);
        ck_assert_int_eq(d->shape[0], p->rows);
        if (p->ndim == 2) ck_assert_int_eq(d->shape[1], p->cols);
        const lr_tensor *t = lr_weights_get(w, p->name);
        ck_assert_ptr_eq(t, lr_weights_at(w, (size_t)idx));
        ck_assert_int_eq(t->dtype, dt);
        ck_assert_int_eq(t->ndim, p->ndim);
        ck_assert_int_eq(t->shape[0], p->rows);
        if (p->ndim == 2) ck_assert_int_eq(t->shape[1], p->cols);
        for (int64_t i = 0; i < p->rows; i++) {
            for (int64_t j = 0; j < p->cols; j++) {
                bool pad;
                double want = expected_at(p, L, hd, i, j, &pad);
                double got = pget(t, i, j);
                TU_CHECK(got == want && (!pad || !signbit(got)),
                         "tp %d rank %d %s %s[%lld, %lld]: %a, expected %a%s", L->tp, L->rank,
                         lr_dtype_name(dt), p->name, (long long)i, (long long)j, got, want,
                         pad ? " (padding)" : "");
            }
        }
    }
    /* Tied: lm_head is the embedding itself, not a copy. */
    int e = lr_plan_index(plan, "model.embed_tokens.weight"), h = lr_plan_index(plan, "lm_head.weight");
    if (m->cfg.tie_word_embeddings) {
        ck_assert_int_eq(lr_plan_at(plan, (size_t)h)->tied_to, e);
        ck_assert_ptr_eq(lr_weights_at(w, (size_t)h)->data, lr_weights_at(w, (size_t)e)->data);
    } else {
        ck_assert_int_eq(lr_plan_at(plan, (size_t)h)->tied_to, -1);
        ck_assert_ptr_ne(lr_weights_at(w, (size_t)h)->data, lr_weights_at(w, (size_t)e)->data);
    }
    ck_assert_ptr_null(lr_weights_get(w, "model.layers.0.self_attn.q_proj.weight"));
    ck_assert_int_eq(lr_plan_index(plan, "model.layers.0.mlp.gate_proj.weight"), -1);
    free(ep);
}

/* ---- putting the shards back together ---------------------------------------------- */

static const lr_tensor *packed(const lr_weights *w, const char *name) {
    const lr_tensor *t = lr_weights_get(w, name);
    ck_assert_msg(t != NULL, "no packed tensor %s", name);
    return t;
}

/* name with its first "from" replaced by "to" into out; false when from is absent. */
static bool swap_part(char *out, size_t cap, const char *name, const char *from, const char *to) {
    const char *at = strstr(name, from);
    if (!at) return false;
    snprintf(out, cap, "%.*s%s%s", (int)(at - name), name, to, at + strlen(from));
    return true;
}

/* Appends rows [row0, row0 + rows) of packed tensor t to out at *cursor. */
static void take_rows(double *out, int64_t *cursor, const lr_tensor *t, int64_t row0, int64_t rows,
                      int64_t cols) {
    for (int64_t i = 0; i < rows; i++, (*cursor)++)
        for (int64_t j = 0; j < cols; j++) out[*cursor * cols + j] = pget(t, row0 + i, j);
}

/* Rows [row0, row0 + rows) equal in two packed tensors (replicated KV heads). */
static void assert_same_rows(const lr_tensor *a, const lr_tensor *b, int64_t row0, int64_t rows,
                             int64_t cols, const char *what) {
    for (int64_t i = row0; i < row0 + rows; i++)
        for (int64_t j = 0; j < cols; j++)
            TU_CHECK(pget(a, i, j) == pget(b, i, j), "replicas of %s differ at [%lld, %lld]", what,
                     (long long)i, (long long)j);
}

/* One HF tensor rebuilt from the packed shards of all ranks (w[r]): q/k/v and
 * gate/up row blocks concatenated over ranks (one rank per replicated KV head),
 * o_proj/down_proj column blocks side by side, vocabulary shards stacked and their
 * padding dropped, whole tensors taken from rank 0 (and equal on every rank). */
static double *reassemble(const tu_tensor *hf, lr_weights *const *w, const expect_layout *L) {
    int tp = L[0].tp;
    int64_t rows = hf->shape[0], cols = hf->shape[1], cursor = 0;
    double *out = calloc((size_t)(rows * cols), sizeof *out);
    ck_assert_ptr_nonnull(out);
    char pn[160];
    const char *name = hf->name;
    if (strcmp(name, "model.embed_tokens.weight") == 0 || strcmp(name, "lm_head.weight") == 0) {
        int64_t g = 0;
        for (int r = 0; r < tp; r++) {
            const lr_tensor *t = packed(w[r], name);
            for (int64_t i = 0; i < L[r].vocab_shard; i++, g++) {
                for (int64_t j = 0; j < cols; j++) {
                    if (g < rows)
                        out[g * cols + j] = pget(t, i, j);
                    else
                        TU_CHECK(pget(t, i, j) == 0.0, "%s padding row %lld not zero", name, (long long)g);
                }
            }
        }
        ck_assert_int_eq(g, L[0].vocab_padded);
        return out;
    }
    if (swap_part(pn, sizeof pn, name, "q_proj", "qkv_proj")) {
        for (int r = 0; r < tp; r++) take_rows(out, &cursor, packed(w[r], pn), 0, L[r].q, cols);
    } else if (swap_part(pn, sizeof pn, name, "k_proj", "qkv_proj") ||
               swap_part(pn, sizeof pn, name, "v_proj", "qkv_proj")) {
        bool is_v = strstr(name, "v_proj") != NULL;
        for (int r = 0; r < tp; r++) {
            int64_t row0 = L[r].q + (is_v ? L[r].kv : 0);
            int owner = r - r % (int)L[r].replicas;
            if (r == owner)
                take_rows(out, &cursor, packed(w[r], pn), row0, L[r].kv, cols);
            else
                assert_same_rows(packed(w[r], pn), packed(w[owner], pn), row0, L[r].kv, cols, name);
        }
    } else if (swap_part(pn, sizeof pn, name, "gate_proj", "gate_up_proj") ||
               swap_part(pn, sizeof pn, name, "up_proj", "gate_up_proj")) {
        bool is_up = strstr(name, ".up_proj") != NULL;
        for (int r = 0; r < tp; r++)
            take_rows(out, &cursor, packed(w[r], pn), is_up ? L[r].inter : 0, L[r].inter, cols);
    } else if (hf->ndim == 2 && (strstr(name, "o_proj") || strstr(name, "down_proj"))) {
        for (int r = 0; r < tp; r++) {
            const lr_tensor *t = packed(w[r], name);
            int64_t bc = t->shape[1];
            for (int64_t i = 0; i < rows; i++)
                for (int64_t j = 0; j < bc; j++) out[i * cols + cursor + j] = pget(t, i, j);
            cursor += bc;
        }
        ck_assert_int_eq(cursor, cols);
        return out;
    } else {
        take_rows(out, &cursor, packed(w[0], name), 0, rows, cols);
        for (int r = 1; r < tp; r++)
            assert_same_rows(packed(w[r], name), packed(w[0], name), 0, rows, cols, name);
    }
    ck_assert_msg(cursor == rows, "%s: rebuilt %lld of %lld rows", name, (long long)cursor, (long long)rows);
    return out;
}

static void check_reassembly(const tu_model *m, lr_weights *const *w, const expect_layout *L,
                             lr_dtype dt) {
    for (size_t k = 0; k < m->n; k++) {
        const tu_tensor *hf = &m->t[k];
        double *got = reassemble(hf, w, L);
        int64_t n = hf->shape[0] * hf->shape[1];
        for (int64_t i = 0; i < n; i++)
            TU_CHECK(got[i] == hf->data[i], "tp %d %s: rebuilt %s[%lld] = %a, HF has %a", L[0].tp,
                     lr_dtype_name(dt), hf->name, (long long)i, got[i], hf->data[i]);
        free(got);
    }
}

static const int tp_sizes[] = {1, 2, 3, 4, 6, 8};

/* _i: model x storage dtype. Every tp size, every rank, both compute dtypes. */
START_TEST(sharding_bit_exact) {
    const model_spec *s = &models[_i / 3];
    lr_dtype dt = storage_dtypes[_i % 3];
    lr_config cfg;
    spec_config(s, &cfg);
    char *dir = tu_tmpdir("plan-tp");
    tu_model *m = tu_write_checkpoint(dir, &cfg, dt, _i % 2 ? TU_SHARDED : TU_SINGLE, 77 + (uint64_t)_i);
    lr_checkpoint *ck;
    TU_ASSERT_OK(lr_checkpoint_open(dir, &ck));
    int valid = 0;
    for (size_t ti = 0; ti < N_ELEMS(tp_sizes); ti++) {
        int tp = tp_sizes[ti];
        const char *bad = tp_error_field(&cfg, tp);
        if (bad) {
            for (int r = 0; r < tp; r++) {
                lr_tp_layout lay;
                TU_ASSERT_STATUS(lr_tp_layout_make(&cfg, tp, r, &lay), LR_E_TP);
                TU_ASSERT_ERROR_HAS(bad, "config.json");
                lr_plan *p = NULL;
                TU_ASSERT_STATUS(lr_plan_create(&cfg, tp, r, &p), LR_E_TP);
                TU_ASSERT_ERROR_HAS(bad);
                ck_assert_ptr_null(p);
            }
            continue;
        }
        valid++;
        static const lr_dtype compute[] = {LR_F64, LR_F32};
        for (size_t ci = 0; ci < N_ELEMS(compute); ci++) {
            lr_plan *plans[8];
            lr_weights *w[8];
            expect_layout L[8];
            for (int r = 0; r < tp; r++) {
                L[r] = expect(&cfg, tp, r);
                lr_tp_layout lay;
                TU_ASSERT_OK(lr_tp_layout_make(&cfg, tp, r, &lay));
                assert_layout(&lay, &L[r]);
                TU_ASSERT_OK(lr_plan_create(lr_checkpoint_config(ck), tp, r, &plans[r]));
                assert_layout(lr_plan_layout(plans[r]), &L[r]);
                TU_ASSERT_OK(lr_weights_build(ck, plans[r], compute[ci], &w[r]));
                check_rank(m, plans[r], w[r], compute[ci], &L[r]);
            }
            check_reassembly(m, w, L, compute[ci]);
            for (int r = 0; r < tp; r++) {
                lr_weights_free(w[r]);
                lr_plan_free(plans[r]);
            }
        }
    }
    ck_assert_int_ge(valid, 2);
    lr_weights_free(NULL);
    lr_plan_free(NULL);
    lr_checkpoint_close(ck);
    tu_model_free(m);
    tu_tmpdir_free(dir);
}
END_TEST

/* Capacities of a staging buffer, in elements: 1, sizes prime to every width here, a
 * row and a bit, and none at all (lr_weights_build's). */
static const int64_t capacities[] = {1, 2, 3, 7, 31, 97, 1000, 4099, INT64_MAX};

/* The chunks of d at capacity cap: each within the cap, each slice covered once in order,
 * and every chunk's destination contiguous (element j of it at dst0 + j). */
static void check_chunks(const lr_packed_desc *d, int64_t cap) {
    lr_chunk c = {0};
    int slice = 0;
    int64_t next = 0, chunks = 0;
    while (lr_packed_next_chunk(d, cap, &c)) {
        chunks++;
        ck_assert_msg(c.count >= 1 && c.count <= (cap < 1 ? 1 : cap), "%s cap %lld: chunk of %lld", d->name,
                      (long long)cap, (long long)c.count);
        if (c.slice != slice) { /* the previous slice is finished */
            ck_assert_int_gt(c.slice, slice);
            ck_assert_int_eq(next, d->slices[slice].rows * d->slices[slice].cols);
            for (int k = slice + 1; k < c.slice; k++)
                ck_assert_int_eq(d->slices[k].rows * d->slices[k].cols, 0);
            slice = c.slice;
            next = 0;
        }
        ck_assert_msg(c.elem0 == next, "%s cap %lld: chunk at %lld, expected %lld", d->name, (long long)cap,
                      (long long)c.elem0, (long long)next);
        const lr_slice *sl = &d->slices[c.slice];
        for (int64_t j = 0; j<c.count; j += c.count> 8 ? c.count / 8 : 1) {
            int64_t e = c.elem0 + j;
            ck_assert_int_eq((sl->dst_row0 + e / sl->cols) * d->shape[1] + e % sl->cols, c.dst0 + j);
        }
        int64_t e = c.elem0 + c.count - 1;
        ck_assert_int_eq((sl->dst_row0 + e / sl->cols) * d->shape[1] + e % sl->cols, c.dst0 + c.count - 1);
        next += c.count;
    }
    if (d->nslices) ck_assert_int_eq(next, d->slices[slice].rows * d->slices[slice].cols);
    for (int k = slice + 1; k < d->nslices; k++)
        ck_assert_int_eq(d->slices[k].rows * d->slices[k].cols, 0);
    ck_assert_int_ge(chunks, 0);
}

/* Read in chunks (what the CUDA loader stages), every packed tensor of every rank is the
 * one lr_weights_build makes (checked against vLLM's rules above), bit for bit, padding
 * rows zero, at every capacity. _i: model x storage dtype. */
START_TEST(chunked_reads_match_whole) {
    const model_spec *s = &models[_i / 3];
    lr_config cfg;
    spec_config(s, &cfg);
    char *dir = tu_tmpdir("plan-chunks");
    tu_model *m = tu_write_checkpoint(dir, &cfg, storage_dtypes[_i % 3], TU_SINGLE, 91 + (uint64_t)_i);
    lr_checkpoint *ck;
    TU_ASSERT_OK(lr_checkpoint_open(dir, &ck));
    static const int tps[] = {1, 2, 4};
    for (size_t ti = 0; ti < N_ELEMS(tps); ti++) {
        if (tp_error_field(&cfg, tps[ti])) continue;
        for (int r = 0; r < tps[ti]; r++) {
            lr_plan *p;
            lr_weights *w;
            TU_ASSERT_OK(lr_plan_create(lr_checkpoint_config(ck), tps[ti], r, &p));
            TU_ASSERT_OK(lr_weights_build(ck, p, LR_F32, &w));
            for (size_t i = 0; i < lr_plan_count(p); i++) {
                const lr_packed_desc *d = lr_plan_at(p, i);
                if (d->tied_to >= 0) continue;
                size_t n = (size_t)d->shape[0] * (size_t)d->shape[1];
                float *got = calloc(n, sizeof *got), *stage = malloc(n * sizeof *stage);
                ck_assert(got && stage);
                for (size_t k = 0; k < N_ELEMS(capacities); k++) {
                    check_chunks(d, capacities[k]);
                    memset(got, 0, n * sizeof *got);
                    lr_chunk c = {0};
                    while (lr_packed_next_chunk(d, capacities[k], &c)) {
                        /* through a staging buffer of the capacity, as a loader would */
                        TU_ASSERT_OK(lr_packed_read_chunk(ck, d, &c, LR_F32, stage));
                        memcpy(got + c.dst0, stage, (size_t)c.count * sizeof *got);
                    }
                    ck_assert_msg(memcmp(got, lr_weights_at(w, i)->data, n * sizeof *got) == 0,
                                  "%s tp %d rank %d: %s read in chunks of %lld differs", s->what, tps[ti], r,
                                  d->name, (long long)capacities[k]);
                }
                free(got);
                free(stage);
            }
            lr_weights_free(w);
            lr_plan_free(p);
        }
    }
    lr_checkpoint_close(ck);
    tu_model_free(m);
    tu_tmpdir_free(dir);
}
END_TEST

/* A slice narrower than its packed tensor (no plan makes one today; the chunker must not
 * assume it away): chunks stop at each row's end and land at the row's start; a slice of
 * no rows is skipped; a capacity under 1 counts as 1; a chunk outside its slice is refused. */
START_TEST(chunks_of_narrow_and_empty_slices) {
    lr_packed_desc d;
    memset(&d, 0, sizeof d);
    snprintf(d.name, sizeof d.name, "synthetic");
    d.ndim = 2;
    d.shape[0] = 9;
    d.shape[1] = 11;
    d.tied_to = -1;
    d.nslices = 3;
    d.slices[0] = (lr_slice){.src = "a", .src_row0 = 1, .src_col0 = 2, .dst_row0 = 0, .rows = 4, .cols = 5};
    d.slices[1] = (lr_slice){.src = "b", .dst_row0 = 4, .rows = 0, .cols = 11};
    d.slices[2] = (lr_slice){.src = "c", .dst_row0 = 5, .rows = 3, .cols = 11};
    static const int64_t caps[] = {-3, 0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13, 20, 33, 34, 100, INT64_MAX};
    for (size_t k = 0; k < N_ELEMS(caps); k++) {
        check_chunks(&d, caps[k]);
        lr_chunk c = {0};
        int64_t in_a = 0, in_c = 0, n = 0;
        while (lr_packed_next_chunk(&d, caps[k], &c)) {
            ck_assert_int_ne(c.slice, 1);
            if (c.slice == 0) {
                /* within one row of the narrow slice */
                ck_assert_int_le(c.elem0 % 5 + c.count, 5);
                ck_assert_int_eq(c.dst0, (c.elem0 / 5) * 11 + c.elem0 % 5);
                in_a += c.count;
            } else {
                ck_assert_int_eq(c.dst0, 5 * 11 + c.elem0);
                in_c += c.count;
            }
            n++;
        }
        ck_assert_int_eq(in_a, 20);
        ck_assert_int_eq(in_c, 33);
        int64_t cap = caps[k] < 1 ? 1 : caps[k];
        ck_assert_int_eq(n,
                         4 * (1 + 4 / cap) + 1 + 32 / cap); /* ceil(5 / cap) per row of a, ceil(33 / cap) */
    }
    /* A chunk outside its slice: refused before anything is read. */
    lr_config cfg;
    tu_config_small(&cfg);
    char *dir = tu_tmpdir("plan-chunk-bad");
    tu_model *m = tu_write_checkpoint(dir, &cfg, LR_F32, TU_SINGLE, 5);
    lr_checkpoint *ck;
    TU_ASSERT_OK(lr_checkpoint_open(dir, &ck));
    lr_plan *p;
    TU_ASSERT_OK(lr_plan_create(lr_checkpoint_config(ck), 1, 0, &p));
    const lr_packed_desc *q =
        lr_plan_at(p, (size_t)lr_plan_index(p, "model.layers.0.self_attn.qkv_proj.weight"));
    float buf[4];
    lr_chunk bad = {.slice = 0, .elem0 = q->slices[0].rows * q->slices[0].cols - 2, .count = 4};
    TU_ASSERT_STATUS(lr_packed_read_chunk(ck, q, &bad, LR_F32, buf), LR_E_INVAL);
    TU_ASSERT_ERROR_HAS("qkv_proj", "outside");
    bad = (lr_chunk){.slice = 3, .count = 1};
    TU_ASSERT_STATUS(lr_packed_read_chunk(ck, q, &bad, LR_F32, buf), LR_E_INVAL);
    bad = (lr_chunk){.slice = 0, .count = 1};
    TU_ASSERT_STATUS(lr_packed_read_chunk(ck, q, &bad, LR_BF16, buf), LR_E_INVAL);
    lr_plan_free(p);
    lr_checkpoint_close(ck);
    tu_model_free(m);
    tu_tmpdir_free(dir);
}
END_TEST

/* Which tp sizes these models take: the sweep above must exercise replication. */
START_TEST(sweep_covers_replication) {
    int replicated = 0, exact = 0, padding_only_rank = 0;
    for (size_t k = 0; k < N_ELEMS(models); k++) {
        lr_config cfg;
        spec_config(&models[k], &cfg);
        for (size_t ti = 0; ti < N_ELEMS(tp_sizes); ti++) {
            int tp = tp_sizes[ti];
            if (tp_error_field(&cfg, tp)) continue;
            expect_layout L = expect(&cfg, tp, tp - 1);
            if (L.replicas > 1) replicated++;
            if (tp == cfg.num_key_value_heads) exact++;
            if (L.vocab0 >= cfg.vocab_size) padding_only_rank++;
        }
    }
    ck_assert_int_ge(replicated, 3);
    ck_assert_int_ge(exact, 2);
    ck_assert_int_ge(padding_only_rank, 1);
}
END_TEST

/* ---- tp sizes that do not divide the model ----------------------------------------- */

static const struct {
    const char *what;
    int64_t heads, kv_heads, inter, vocab;
    int tp;
    const char *field;
} indivisible[] = {
    {"heads", 6, 6, 24, 64, 4, "num_attention_heads"},
    {"heads, MQA", 6, 1, 24, 64, 4, "num_attention_heads"},
    {"3 kv heads on tp 2", 6, 3, 24, 64, 2, "num_key_value_heads"},
    {"tp 3 over 2 kv heads", 6, 2, 24, 192, 3, "num_key_value_heads"},
    {"tp 6 over 4 kv heads", 12, 4, 24, 192, 6, "num_key_value_heads"},
    {"intermediate", 8, 8, 36, 64, 8, "intermediate_size"},
    {"intermediate, tp 2", 8, 2, 33, 64, 2, "intermediate_size"},
    {"padded vocabulary", 3, 3, 9, 64, 3, "vocab_size"},
};

START_TEST(indivisible_tp) {
    lr_config cfg;
    tu_config_small(&cfg);
    cfg.num_attention_heads = indivisible[_i].heads;
    cfg.num_key_value_heads = indivisible[_i].kv_heads;
    cfg.intermediate_size = indivisible[_i].inter;
    cfg.vocab_size = indivisible[_i].vocab;
    cfg.head_dim = 4;
    cfg.hidden_size = cfg.num_attention_heads * cfg.head_dim;
    int tp = indivisible[_i].tp;
    ck_assert_str_eq(tp_error_field(&cfg, tp), indivisible[_i].field);
    for (int r = 0; r < tp; r++) {
        lr_tp_layout lay;
        TU_ASSERT_STATUS(lr_tp_layout_make(&cfg, tp, r, &lay), LR_E_TP);
        TU_ASSERT_ERROR_HAS("config.json", indivisible[_i].field);
        lr_plan *p = NULL;
        TU_ASSERT_STATUS(lr_plan_create(&cfg, tp, r, &p), LR_E_TP);
        TU_ASSERT_ERROR_HAS("config.json", indivisible[_i].field);
        ck_assert_ptr_null(p);
    }
    /* tp 1 always works. */
    lr_plan *p;
    TU_ASSERT_OK(lr_plan_create(&cfg, 1, 0, &p));
    lr_plan_free(p);
}
END_TEST

START_TEST(bad_tp_arguments) {
    lr_config cfg;
    tu_config_small(&cfg);
    lr_tp_layout lay;
    TU_ASSERT_STATUS(lr_tp_layout_make(&cfg, 0, 0, &lay), LR_E_TP);
    TU_ASSERT_ERROR_HAS("tp_size");
    TU_ASSERT_STATUS(lr_tp_layout_make(&cfg, -2, 0, &lay), LR_E_TP);
    TU_ASSERT_ERROR_HAS("tp_size");
    TU_ASSERT_STATUS(lr_tp_layout_make(&cfg, 2, 2, &lay), LR_E_TP);
    TU_ASSERT_ERROR_HAS("tp_rank");
    TU_ASSERT_STATUS(lr_tp_layout_make(&cfg, 2, -1, &lay), LR_E_TP);
    TU_ASSERT_ERROR_HAS("tp_rank");

    /* Compute dtypes other than F64 and F32 are refused. */
    char *dir = tu_tmpdir("plan-args");
    tu_model *m = tu_write_checkpoint(dir, &cfg, LR_F16, TU_SINGLE, 9);
    lr_checkpoint *ck;
    TU_ASSERT_OK(lr_checkpoint_open(dir, &ck));
    lr_plan *p;
    TU_ASSERT_OK(lr_plan_create(&cfg, 2, 1, &p));
    lr_weights *w = NULL;
    TU_ASSERT_STATUS(lr_weights_build(ck, p, LR_F16, &w), LR_E_INVAL);
    TU_ASSERT_ERROR_HAS("F16");
    TU_ASSERT_STATUS(lr_weights_build(ck, p, LR_BF16, &w), LR_E_INVAL);
    ck_assert_ptr_null(w);
    lr_plan_free(p);
    lr_checkpoint_close(ck);
    tu_model_free(m);
    tu_tmpdir_free(dir);
}
END_TEST

/* A NaN or an Inf anywhere in a weight is refused when the weights are built, naming the
 * file, the tensor and the element; loop index: 0 NaN (F32), 1 +Inf (F32), 2 NaN (BF16). */
START_TEST(nonfinite_weight_refused) {
    static const lr_dtype dts[] = {LR_F32, LR_F32, LR_BF16};
    lr_config cfg;
    tu_config_small(&cfg);
    char *dir = tu_tmpdir("nonfinite");
    tu_model *m = tu_model_create(&cfg, dts[_i], 11);
    tu_tensor *t = (tu_tensor *)tu_model_find(m, "model.layers.1.mlp.down_proj.weight");
    ck_assert_ptr_nonnull(t);
    t->data[3 * t->shape[1] + 5] = _i == 1 ? INFINITY : NAN;
    tu_model_write(m, dir, TU_SINGLE);
    lr_checkpoint *ck;
    TU_ASSERT_OK(lr_checkpoint_open(dir, &ck));
    lr_plan *p;
    TU_ASSERT_OK(lr_plan_create(lr_checkpoint_config(ck), 1, 0, &p));
    lr_weights *w = NULL;
    TU_ASSERT_STATUS(lr_weights_build(ck, p, LR_F64, &w), LR_E_NONFINITE);
    TU_ASSERT_ERROR_HAS("model.safetensors", "model.layers.1.mlp.down_proj.weight", "[3, 5]",
                        _i == 1 ? "infinite" : "NaN");
    ck_assert_ptr_null(w);
    /* Read in chunks of 7 (one starts mid-row) and of the whole tensor (one run of its rows:
     * the check's blocks of 64 and its tail), to F32 and F64: the same refusal, the same
     * element. */
    const lr_packed_desc *d = lr_plan_at(p, (size_t)lr_plan_index(p, "model.layers.1.mlp.down_proj.weight"));
    double *stage = malloc((size_t)(d->shape[0] * d->shape[1]) * sizeof *stage);
    ck_assert_ptr_nonnull(stage);
    ck_assert_int_gt(d->shape[0] * d->shape[1], 3 * 64); /* the element in a whole block */
    for (int k = 0; k < 4; k++) {
        lr_chunk c = {0};
        int rc = LR_OK;
        while (rc == LR_OK && lr_packed_next_chunk(d, k < 2 ? 7 : d->shape[0] * d->shape[1], &c))
            rc = lr_packed_read_chunk(ck, d, &c, k % 2 ? LR_F64 : LR_F32, stage);
        ck_assert_int_eq(rc, LR_E_NONFINITE);
        TU_ASSERT_ERROR_HAS("model.safetensors", "model.layers.1.mlp.down_proj.weight", "[3, 5]",
                            _i == 1 ? "infinite" : "NaN");
    }
    free(stage);
    lr_plan_free(p);
    lr_checkpoint_close(ck);
    tu_model_free(m);
    tu_tmpdir_free(dir);
}
END_TEST

static Suite *plan_suite(void) {
    Suite *s = suite_create("plan");
    TCase *tc = tcase_create("checkpoint");
    tcase_add_loop_test(tc, load_checkpoint, 0, (int)(N_ELEMS(models) * N_ELEMS(storage_dtypes) * 2));
    tcase_add_test(tc, load_tolerated_extras);
    tcase_add_loop_test(tc, bad_checkpoint, 0, (int)N_ELEMS(bad_ckpts));
    tcase_add_test(tc, bad_dtype_tensor);
    tcase_add_loop_test(tc, nonfinite_weight_refused, 0, 3);
    tcase_add_test(tc, index_points_to_missing_tensor);
    tcase_add_test(tc, index_omits_tensor);
    tcase_add_test(tc, tensor_in_two_shards);
    tcase_add_test(tc, index_bad_file_names);
    tcase_add_test(tc, index_malformed);
    tcase_add_test(tc, index_shard_absent);
    tcase_add_test(tc, missing_files);
    suite_add_tcase(s, tc);

    tc = tcase_create("sharding");
    /* Under valgrind the sweep takes a while. */
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, sharding_bit_exact, 0, (int)(N_ELEMS(models) * N_ELEMS(storage_dtypes)));
    tcase_add_test(tc, sweep_covers_replication);
    tcase_add_loop_test(tc, chunked_reads_match_whole, 0, (int)(N_ELEMS(models) * N_ELEMS(storage_dtypes)));
    tcase_add_test(tc, chunks_of_narrow_and_empty_slices);
    tcase_add_loop_test(tc, indivisible_tp, 0, (int)N_ELEMS(indivisible));
    tcase_add_test(tc, bad_tp_arguments);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(plan_suite()); }
