/* test_config.c: config.json loading: both config styles (transformers 4.x
 * rope_theta/rope_scaling and 5.x rope_parameters) give the same lr_config, the
 * documented defaults, every RoPE type and spelling, and one table of bad configs, each
 * with its exact status and a message naming the file and the field. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* A Llama 3 style config as save_pretrained writes it, in each style. */
static const char *const BASE4 =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_act\": \"silu\","
    " \"vocab_size\": 100, \"hidden_size\": 64, \"intermediate_size\": 160,"
    " \"num_hidden_layers\": 2, \"num_attention_heads\": 8, \"num_key_value_heads\": 2,"
    " \"head_dim\": 8, \"max_position_embeddings\": 4096, \"rms_norm_eps\": 1e-05,"
    " \"attention_bias\": false, \"mlp_bias\": false, \"tie_word_embeddings\": true,"
    " \"rope_theta\": 500000.0,"
    " \"rope_scaling\": {\"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0,"
    " \"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"},"
    " \"bos_token_id\": 1, \"eos_token_id\": 2, \"initializer_range\": 0.02, \"pretraining_tp\": 1,"
    " \"torch_dtype\": \"bfloat16\", \"transformers_version\": \"4.45.0\", \"use_cache\": true}";

static const char *const BASE5 =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_act\": \"silu\","
    " \"vocab_size\": 100, \"hidden_size\": 64, \"intermediate_size\": 160,"
    " \"num_hidden_layers\": 2, \"num_attention_heads\": 8, \"num_key_value_heads\": 2,"
    " \"head_dim\": 8, \"max_position_embeddings\": 4096, \"rms_norm_eps\": 1e-05,"
    " \"attention_bias\": false, \"mlp_bias\": false, \"tie_word_embeddings\": true,"
    " \"rope_parameters\": {\"rope_type\": \"llama3\", \"rope_theta\": 500000.0, \"factor\": 8.0,"
    " \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0,"
    " \"original_max_position_embeddings\": 8192},"
    " \"bos_token_id\": 1, \"eos_token_id\": 2, \"initializer_range\": 0.02, \"pretraining_tp\": 1,"
    " \"dtype\": \"bfloat16\", \"transformers_version\": \"5.0.0\", \"use_cache\": true}";

/* ---- helpers ------------------------------------------------------------------------ */

static json_t *parse_json(const char *text) {
    json_error_t err;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &err);
    ck_assert_msg(j != NULL, "test JSON does not parse: %s: %s", err.text, text);
    return j;
}

/* Merges src into dst: objects recursively, anything else replaced. */
static void merge(json_t *dst, json_t *src) {
    const char *k;
    json_t *v;
    json_object_foreach(src, k, v) {
        json_t *old = json_object_get(dst, k);
        if (json_is_object(old) && json_is_object(v))
            merge(old, v);
        else
            json_object_set(dst, k, v);
    }
}

/* Deletes a dotted path ("rope_scaling.factor"); it must exist. */
static void delete_path(json_t *j, const char *path) {
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    char *dot = strchr(buf, '.');
    if (dot) {
        *dot = '\0';
        json_t *sub = json_object_get(j, buf);
        ck_assert_msg(json_is_object(sub), "no object %s to delete from", buf);
        delete_path(sub, dot + 1);
        return;
    }
    ck_assert_msg(json_object_del(j, buf) == 0, "no field %s to delete", buf);
}

/* The base config of a style, with del removed, then set merged in. */
static json_t *variant(int style, const char *del, const char *set) {
    json_t *j = parse_json(style == 5 ? BASE5 : BASE4);
    if (del) delete_path(j, del);
    if (set) {
        json_t *s = parse_json(set);
        merge(j, s);
        json_decref(s);
    }
    return j;
}

/* Writes j as dir/name and loads it; returns the status. path receives the file. */
static int load_json(const char *dir, const char *name, const json_t *j, char **path,
                     lr_config *c) {
    *path = tu_path(dir, name);
    tu_write_json(*path, j);
    return lr_config_load(*path, c);
}

static void assert_config_eq(const lr_config *a, const lr_config *b) {
#define EQ_I(f) ck_assert_msg(a->f == b->f, #f ": %lld != %lld", (long long)a->f, (long long)b->f)
#define EQ_D(f) ck_assert_msg(a->f == b->f, #f ": %.17g != %.17g", a->f, b->f)
    EQ_I(vocab_size);
    EQ_I(hidden_size);
    EQ_I(intermediate_size);
    EQ_I(num_hidden_layers);
    EQ_I(num_attention_heads);
    EQ_I(num_key_value_heads);
    EQ_I(head_dim);
    EQ_I(max_position_embeddings);
    EQ_D(rms_norm_eps);
    EQ_I(attention_bias);
    EQ_I(mlp_bias);
    EQ_I(tie_word_embeddings);
    EQ_I(rope_type);
    EQ_D(rope_theta);
    EQ_D(rope_factor);
    if (a->rope_type == LR_ROPE_LLAMA3) {
        EQ_D(rope_low_freq_factor);
        EQ_D(rope_high_freq_factor);
        EQ_I(rope_original_max_position_embeddings);
    }
#undef EQ_I
#undef EQ_D
}

/* ---- both styles -------------------------------------------------------------------- */

/* The same model in each style: rope_scaling (4.x) and rope_parameters (5.x). */
static const struct {
    const char *rope4; /* rope_scaling, or NULL for none */
    const char *rope5; /* rope_parameters */
    lr_rope_type type;
    double factor;
} style_cases[] = {
    {NULL, "{\"rope_type\": \"default\", \"rope_theta\": 500000.0}", LR_ROPE_DEFAULT, 1.0},
    {"{\"rope_type\": \"linear\", \"factor\": 4.0}",
     "{\"rope_type\": \"linear\", \"rope_theta\": 500000.0, \"factor\": 4.0}", LR_ROPE_LINEAR, 4.0},
    {"{\"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0,"
     " \"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"}",
     "{\"rope_type\": \"llama3\", \"rope_theta\": 500000.0, \"factor\": 8.0, \"low_freq_factor\": 1.0,"
     " \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192}",
     LR_ROPE_LLAMA3, 8.0},
};

START_TEST(styles_load_identically) {
    char *dir = tu_tmpdir("config-styles");
    json_t *j4 = parse_json(BASE4), *j5 = parse_json(BASE5);
    json_object_del(j4, "rope_scaling");
    if (style_cases[_i].rope4) json_object_set_new(j4, "rope_scaling", parse_json(style_cases[_i].rope4));
    json_object_set_new(j5, "rope_parameters", parse_json(style_cases[_i].rope5));
    lr_config c4, c5;
    char *p4, *p5;
    TU_ASSERT_OK(load_json(dir, "config4.json", j4, &p4, &c4));
    TU_ASSERT_OK(load_json(dir, "config5.json", j5, &p5, &c5));
    ck_assert_int_eq(c4.config_style, 4);
    ck_assert_int_eq(c5.config_style, 5);
    assert_config_eq(&c4, &c5);

    ck_assert_int_eq(c4.vocab_size, 100);
    ck_assert_int_eq(c4.hidden_size, 64);
    ck_assert_int_eq(c4.intermediate_size, 160);
    ck_assert_int_eq(c4.num_hidden_layers, 2);
    ck_assert_int_eq(c4.num_attention_heads, 8);
    ck_assert_int_eq(c4.num_key_value_heads, 2);
    ck_assert_int_eq(c4.head_dim, 8);
    ck_assert_int_eq(c4.max_position_embeddings, 4096);
    ck_assert(c4.rms_norm_eps == 1e-05);
    ck_assert(!c4.attention_bias && !c4.mlp_bias && c4.tie_word_embeddings);
    ck_assert_int_eq(c4.rope_type, style_cases[_i].type);
    ck_assert(c4.rope_theta == 500000.0);
    ck_assert(c4.rope_factor == style_cases[_i].factor);
    if (c4.rope_type == LR_ROPE_LLAMA3) {
        ck_assert(c4.rope_low_freq_factor == 1.0);
        ck_assert(c4.rope_high_freq_factor == 4.0);
        ck_assert_int_eq(c4.rope_original_max_position_embeddings, 8192);
    }
    json_decref(j4);
    json_decref(j5);
    free(p4);
    free(p5);
    tu_tmpdir_free(dir);
}
END_TEST

/* The testutil writer, which later suites rely on, round-trips through the loader. */
START_TEST(testutil_config_round_trip) {
    char *dir = tu_tmpdir("config-tu");
    for (int style = 4; style <= 5; style++) {
        for (int rope = 0; rope < 3; rope++) {
            lr_config want, got;
            tu_config_small(&want);
            want.config_style = style;
            want.rope_type = (lr_rope_type)rope;
            want.rope_theta = 500000.0;
            want.head_dim = 6; /* not hidden / heads */
            want.attention_bias = rope == 1;
            want.mlp_bias = rope == 2;
            want.tie_word_embeddings = style == 5;
            if (rope != LR_ROPE_DEFAULT) want.rope_factor = 8.0;
            if (rope == LR_ROPE_LLAMA3) {
                want.rope_low_freq_factor = 1.0;
                want.rope_high_freq_factor = 4.0;
                want.rope_original_max_position_embeddings = 64;
            }
            tu_write_config(dir, &want);
            char *path = tu_path(dir, "config.json");
            TU_ASSERT_OK(lr_config_load(path, &got));
            free(path);
            assert_config_eq(&got, &want);
            ck_assert_int_eq(got.config_style, style);
        }
    }
    tu_tmpdir_free(dir);
}
END_TEST

/* ---- defaults ------------------------------------------------------------------------ */

static const char *const MINIMAL =
    "{\"model_type\": \"llama\", \"vocab_size\": 100, \"hidden_size\": 64, \"intermediate_size\": 160,"
    " \"num_hidden_layers\": 2, \"num_attention_heads\": 8}";

static void assert_defaults(const lr_config *c) {
    ck_assert_int_eq(c->num_key_value_heads, 8);
    ck_assert_int_eq(c->head_dim, 64 / 8);
    ck_assert(!c->attention_bias);
    ck_assert(!c->mlp_bias);
    ck_assert(!c->tie_word_embeddings);
    ck_assert_int_eq(c->rope_type, LR_ROPE_DEFAULT);
    ck_assert(c->rope_theta == 10000.0);
    ck_assert(c->rope_factor == 1.0);
    ck_assert_int_eq(c->max_position_embeddings, 2048);
    ck_assert(c->rms_norm_eps == 1e-6);
}

START_TEST(defaults) {
    lr_config c;
    TU_ASSERT_OK(lr_config_parse(MINIMAL, strlen(MINIMAL), "minimal.json", &c));
    ck_assert_int_eq(c.config_style, 4);
    assert_defaults(&c);

    /* JSON null stands for an absent optional field, as Python writes None. */
    json_t *j = parse_json(MINIMAL);
    const char *nulls[] = {"num_key_value_heads", "head_dim", "attention_bias", "mlp_bias",
                           "tie_word_embeddings", "rope_scaling", "rope_theta", "hidden_act",
                           "max_position_embeddings", "rms_norm_eps"};
    for (size_t i = 0; i < N_ELEMS(nulls); i++) json_object_set_new(j, nulls[i], json_null());
    char *s = json_dumps(j, 0);
    TU_ASSERT_OK(lr_config_parse(s, strlen(s), "nulls.json", &c));
    assert_defaults(&c);
    free(s);
    json_decref(j);

    /* 5.x: rope_parameters alone, without a type, is the default RoPE. */
    j = parse_json(MINIMAL);
    json_object_set_new(j, "rope_parameters", parse_json("{\"rope_theta\": 10000.0}"));
    s = json_dumps(j, 0);
    TU_ASSERT_OK(lr_config_parse(s, strlen(s), "minimal5.json", &c));
    ck_assert_int_eq(c.config_style, 5);
    assert_defaults(&c);
    free(s);
    json_decref(j);

    /* head_dim given: hidden_size need not be a multiple of the head count. */
    j = parse_json(MINIMAL);
    json_object_set_new(j, "num_attention_heads", json_integer(6));
    json_object_set_new(j, "num_key_value_heads", json_integer(3));
    json_object_set_new(j, "head_dim", json_integer(12));
    s = json_dumps(j, 0);
    TU_ASSERT_OK(lr_config_parse(s, strlen(s), "head_dim.json", &c));
    ck_assert_int_eq(c.head_dim, 12);
    ck_assert_int_eq(c.num_key_value_heads, 3);
    free(s);
    json_decref(j);
}
END_TEST

/* Only len bytes are read: what follows them does not matter. */
START_TEST(parse_respects_length) {
    const char *text = "{\"model_type\": \"llama\", \"vocab_size\": 100, \"hidden_size\": 64,"
                       " \"intermediate_size\": 160, \"num_hidden_layers\": 2,"
                       " \"num_attention_heads\": 8} trailing garbage";
    size_t len = (size_t)(strstr(text, " trailing") - text);
    lr_config c;
    TU_ASSERT_OK(lr_config_parse(text, len, "prefix.json", &c));
    ck_assert_int_eq(c.vocab_size, 100);
    TU_ASSERT_STATUS(lr_config_parse(text, strlen(text), "whole.json", &c), LR_E_JSON);
    TU_ASSERT_ERROR_HAS("whole.json");
    TU_ASSERT_STATUS(lr_config_parse(text, len - 1, "cut.json", &c), LR_E_JSON);
    TU_ASSERT_ERROR_HAS("cut.json");
}
END_TEST

/* ---- RoPE types and spellings ---------------------------------------------------------- */

static const struct {
    int style;
    const char *rope; /* rope_scaling (4) or rope_parameters (5); NULL: none */
    lr_rope_type type;
    double theta, factor, low, high;
    int64_t orig;
} rope_cases[] = {
    {4, NULL, LR_ROPE_DEFAULT, 500000.0, 1.0, 0, 0, 0},
    {4, "null", LR_ROPE_DEFAULT, 500000.0, 1.0, 0, 0, 0},
    {4, "{\"rope_type\": \"default\"}", LR_ROPE_DEFAULT, 500000.0, 1.0, 0, 0, 0},
    {4, "{\"type\": \"default\"}", LR_ROPE_DEFAULT, 500000.0, 1.0, 0, 0, 0},
    {4, "{\"rope_type\": \"linear\", \"factor\": 2.0}", LR_ROPE_LINEAR, 500000.0, 2.0, 0, 0, 0},
    {4, "{\"type\": \"linear\", \"factor\": 4}", LR_ROPE_LINEAR, 500000.0, 4.0, 0, 0, 0},
    {4, "{\"rope_type\": \"llama3\", \"factor\": 32.0, \"low_freq_factor\": 1.0,"
        " \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192}",
     LR_ROPE_LLAMA3, 500000.0, 32.0, 1.0, 4.0, 8192},
    {4, "{\"type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 2.0,"
        " \"high_freq_factor\": 3.0, \"original_max_position_embeddings\": 4096}",
     LR_ROPE_LLAMA3, 500000.0, 8.0, 2.0, 3.0, 4096},
    /* rope_type wins over the older type key, as in transformers. */
    {4, "{\"rope_type\": \"linear\", \"type\": \"yarn\", \"factor\": 2.0}", LR_ROPE_LINEAR, 500000.0, 2.0, 0, 0, 0},
    {5, "{\"rope_type\": \"default\", \"rope_theta\": 10000.0}", LR_ROPE_DEFAULT, 10000.0, 1.0, 0, 0, 0},
    {5, "{\"rope_theta\": 1000000.0}", LR_ROPE_DEFAULT, 1000000.0, 1.0, 0, 0, 0},
    {5, "{\"rope_type\": \"linear\", \"rope_theta\": 10000.0, \"factor\": 2.5}", LR_ROPE_LINEAR, 10000.0, 2.5, 0, 0, 0},
    {5, "{\"type\": \"linear\", \"rope_theta\": 10000.0, \"factor\": 3.0}", LR_ROPE_LINEAR, 10000.0, 3.0, 0, 0, 0},
    {5, "{\"rope_type\": \"llama3\", \"rope_theta\": 500000.0, \"factor\": 8.0, \"low_freq_factor\": 1.0,"
        " \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192}",
     LR_ROPE_LLAMA3, 500000.0, 8.0, 1.0, 4.0, 8192},
};

START_TEST(rope_types) {
    int style = rope_cases[_i].style;
    json_t *j = parse_json(style == 5 ? BASE5 : BASE4);
    const char *key = style == 5 ? "rope_parameters" : "rope_scaling";
    json_object_del(j, key);
    if (rope_cases[_i].rope) json_object_set_new(j, key, parse_json(rope_cases[_i].rope));
    char *s = json_dumps(j, 0);
    lr_config c;
    TU_ASSERT_OK(lr_config_parse(s, strlen(s), "rope.json", &c));
    ck_assert_int_eq(c.config_style, style);
    ck_assert_int_eq(c.rope_type, rope_cases[_i].type);
    static const char *const rope_names[] = {"default", "linear", "llama3"};
    ck_assert_str_eq(lr_rope_type_name(c.rope_type), rope_names[rope_cases[_i].type]);
    ck_assert(c.rope_theta == rope_cases[_i].theta);
    ck_assert(c.rope_factor == rope_cases[_i].factor);
    if (c.rope_type == LR_ROPE_LLAMA3) {
        ck_assert(c.rope_low_freq_factor == rope_cases[_i].low);
        ck_assert(c.rope_high_freq_factor == rope_cases[_i].high);
        ck_assert_int_eq(c.rope_original_max_position_embeddings, rope_cases[_i].orig);
    }
    free(s);
    json_decref(j);
}
END_TEST

/* 4.x without rope_theta: the transformers default. */
START_TEST(rope_theta_default) {
    json_t *j = variant(4, "rope_theta", NULL);
    char *s = json_dumps(j, 0);
    lr_config c;
    TU_ASSERT_OK(lr_config_parse(s, strlen(s), "theta.json", &c));
    ck_assert(c.rope_theta == 10000.0);
    free(s);
    json_decref(j);
}
END_TEST

/* ---- bad configs ------------------------------------------------------------------------- */

typedef struct {
    int style;          /* base: BASE4 or BASE5 */
    const char *del;    /* dotted path removed first, or NULL */
    const char *set;    /* JSON object merged in, or NULL */
    int status;
    const char *field;  /* the field the message must name */
    const char *detail; /* and this too, or NULL */
} bad_case;

#define RS "rope_scaling"
#define RP "rope_parameters"
static const bad_case bad_cases[] = {
    /* other models, activations, RoPE types */
    {4, NULL, "{\"model_type\": \"mistral\"}", LR_E_CONFIG, "model_type", "mistral"},
    {5, NULL, "{\"model_type\": \"llama4\"}", LR_E_CONFIG, "model_type", "llama4"},
    {4, NULL, "{\"hidden_act\": \"gelu\"}", LR_E_CONFIG, "hidden_act", "gelu"},
    {5, NULL, "{\"hidden_act\": \"relu\"}", LR_E_CONFIG, "hidden_act", "relu"},
    {4, RS, "{\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}}", LR_E_CONFIG, RS ".rope_type", "yarn"},
    {4, RS, "{\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4.0}}", LR_E_CONFIG, RS ".type", "yarn"},
    {4, RS, "{\"rope_scaling\": {\"rope_type\": \"dynamic\", \"factor\": 2.0}}", LR_E_CONFIG, RS ".rope_type", "dynamic"},
    {4, RS, "{\"rope_scaling\": {\"type\": \"dynamic\", \"factor\": 2.0}}", LR_E_CONFIG, RS ".type", "dynamic"},
    {5, RP, "{\"rope_parameters\": {\"rope_type\": \"yarn\", \"rope_theta\": 1e4, \"factor\": 4.0}}", LR_E_CONFIG, RP ".rope_type", "yarn"},
    {5, RP, "{\"rope_parameters\": {\"rope_type\": \"dynamic\", \"rope_theta\": 1e4, \"factor\": 2.0}}", LR_E_CONFIG, RP ".rope_type", "dynamic"},
    {5, RP, "{\"rope_parameters\": {\"type\": \"longrope\", \"rope_theta\": 1e4}}", LR_E_CONFIG, RP ".type", "longrope"},
    /* required fields */
    {4, "model_type", NULL, LR_E_CONFIG, "model_type", "missing"},
    {4, "vocab_size", NULL, LR_E_CONFIG, "vocab_size", "missing"},
    {4, "hidden_size", NULL, LR_E_CONFIG, "hidden_size", "missing"},
    {5, "intermediate_size", NULL, LR_E_CONFIG, "intermediate_size", "missing"},
    {4, "num_hidden_layers", NULL, LR_E_CONFIG, "num_hidden_layers", "missing"},
    {5, "num_attention_heads", NULL, LR_E_CONFIG, "num_attention_heads", "missing"},
    {4, NULL, "{\"hidden_size\": null}", LR_E_CONFIG, "hidden_size", "missing"},
    {5, RP ".rope_theta", NULL, LR_E_CONFIG, RP ".rope_theta", "missing"},
    {4, RS ".factor", NULL, LR_E_CONFIG, RS ".factor", "missing"},
    {4, RS ".low_freq_factor", NULL, LR_E_CONFIG, RS ".low_freq_factor", "missing"},
    {4, RS ".high_freq_factor", NULL, LR_E_CONFIG, RS ".high_freq_factor", "missing"},
    {4, RS ".original_max_position_embeddings", NULL, LR_E_CONFIG, RS ".original_max_position_embeddings", "missing"},
    {5, RP ".factor", NULL, LR_E_CONFIG, RP ".factor", "missing"},
    {5, RP ".original_max_position_embeddings", NULL, LR_E_CONFIG, RP ".original_max_position_embeddings", "missing"},
    {4, RS, "{\"rope_scaling\": {\"rope_type\": \"linear\"}}", LR_E_CONFIG, RS ".factor", "missing"},
    {4, RS ".rope_type", NULL, LR_E_CONFIG, RS, "rope_type"},
    /* wrong JSON types */
    {4, NULL, "{\"model_type\": 7}", LR_E_CONFIG, "model_type", "string"},
    {4, NULL, "{\"hidden_act\": [\"silu\"]}", LR_E_CONFIG, "hidden_act", "string"},
    {4, NULL, "{\"hidden_size\": \"64\"}", LR_E_CONFIG, "hidden_size", "integer"},
    {4, NULL, "{\"hidden_size\": 64.0}", LR_E_CONFIG, "hidden_size", "integer"},
    {5, NULL, "{\"vocab_size\": true}", LR_E_CONFIG, "vocab_size", "integer"},
    {4, NULL, "{\"num_key_value_heads\": [2]}", LR_E_CONFIG, "num_key_value_heads", "integer"},
    {4, NULL, "{\"head_dim\": \"8\"}", LR_E_CONFIG, "head_dim", "integer"},
    {4, NULL, "{\"max_position_embeddings\": 4096.5}", LR_E_CONFIG, "max_position_embeddings", "integer"},
    {4, NULL, "{\"attention_bias\": \"false\"}", LR_E_CONFIG, "attention_bias", NULL},
    {4, NULL, "{\"mlp_bias\": 0}", LR_E_CONFIG, "mlp_bias", NULL},
    {5, NULL, "{\"tie_word_embeddings\": 1}", LR_E_CONFIG, "tie_word_embeddings", NULL},
    {4, NULL, "{\"rms_norm_eps\": \"1e-5\"}", LR_E_CONFIG, "rms_norm_eps", "number"},
    {4, NULL, "{\"rope_theta\": \"5e5\"}", LR_E_CONFIG, "rope_theta", "number"},
    {4, NULL, "{\"rope_scaling\": \"llama3\"}", LR_E_CONFIG, RS, "object"},
    {4, NULL, "{\"rope_scaling\": [8.0]}", LR_E_CONFIG, RS, "object"},
    {4, NULL, "{\"rope_scaling\": {\"rope_type\": 3}}", LR_E_CONFIG, RS ".rope_type", "string"},
    {4, NULL, "{\"rope_scaling\": {\"factor\": \"8\"}}", LR_E_CONFIG, RS ".factor", "number"},
    {5, NULL, "{\"rope_parameters\": {\"rope_theta\": \"1e4\"}}", LR_E_CONFIG, RP ".rope_theta", "number"},
    {5, NULL, "{\"rope_parameters\": {\"original_max_position_embeddings\": 8192.0}}", LR_E_CONFIG,
     RP ".original_max_position_embeddings", "integer"},
    {5, NULL, "{\"rope_parameters\": [500000.0]}", LR_E_CONFIG, RP, "object"},
    {5, NULL, "{\"rope_parameters\": 500000.0}", LR_E_CONFIG, RP, "object"},
    /* zero and negative sizes */
    {4, NULL, "{\"vocab_size\": 0}", LR_E_CONFIG, "vocab_size", "outside"},
    {4, NULL, "{\"vocab_size\": -1}", LR_E_CONFIG, "vocab_size", "outside"},
    {4, NULL, "{\"hidden_size\": -64}", LR_E_CONFIG, "hidden_size", "outside"},
    {5, NULL, "{\"intermediate_size\": 0}", LR_E_CONFIG, "intermediate_size", "outside"},
    {4, NULL, "{\"num_hidden_layers\": 0}", LR_E_CONFIG, "num_hidden_layers", "outside"},
    {4, NULL, "{\"num_hidden_layers\": -2}", LR_E_CONFIG, "num_hidden_layers", "outside"},
    {4, NULL, "{\"num_attention_heads\": 0}", LR_E_CONFIG, "num_attention_heads", "outside"},
    {4, NULL, "{\"num_key_value_heads\": 0}", LR_E_CONFIG, "num_key_value_heads", "outside"},
    {5, NULL, "{\"num_key_value_heads\": -2}", LR_E_CONFIG, "num_key_value_heads", "outside"},
    {4, NULL, "{\"head_dim\": 0}", LR_E_CONFIG, "head_dim", "outside"},
    {4, NULL, "{\"head_dim\": -8}", LR_E_CONFIG, "head_dim", "outside"},
    {4, NULL, "{\"head_dim\": 7}", LR_E_CONFIG, "head_dim", "even"},
    {4, NULL, "{\"max_position_embeddings\": 0}", LR_E_CONFIG, "max_position_embeddings", "outside"},
    {4, NULL, "{\"rms_norm_eps\": 0}", LR_E_CONFIG, "rms_norm_eps", "positive"},
    {5, NULL, "{\"rms_norm_eps\": -1e-5}", LR_E_CONFIG, "rms_norm_eps", "positive"},
    {4, NULL, "{\"rope_theta\": 0.0}", LR_E_CONFIG, "rope_theta", "positive"},
    {5, NULL, "{\"rope_parameters\": {\"rope_theta\": -10000.0}}", LR_E_CONFIG, RP ".rope_theta", "positive"},
    {4, NULL, "{\"rope_scaling\": {\"factor\": 0}}", LR_E_CONFIG, RS ".factor", "positive"},
    {5, NULL, "{\"rope_parameters\": {\"factor\": -8.0}}", LR_E_CONFIG, RP ".factor", "positive"},
    {4, NULL, "{\"rope_scaling\": {\"low_freq_factor\": 0.0}}", LR_E_CONFIG, RS ".low_freq_factor", "positive"},
    {4, NULL, "{\"rope_scaling\": {\"original_max_position_embeddings\": 0}}", LR_E_CONFIG,
     RS ".original_max_position_embeddings", "outside"},
    {4, RS, "{\"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": -2.0}}", LR_E_CONFIG, RS ".factor", "positive"},
    {4, NULL, "{\"rope_scaling\": {\"high_freq_factor\": 1.0}}", LR_E_CONFIG, RS ".high_freq_factor", "low_freq_factor"},
    /* head counts that do not divide */
    {4, NULL, "{\"num_key_value_heads\": 3}", LR_E_CONFIG, "num_key_value_heads", "num_attention_heads"},
    {5, NULL, "{\"num_key_value_heads\": 16}", LR_E_CONFIG, "num_key_value_heads", "num_attention_heads"},
    {4, "head_dim", "{\"num_attention_heads\": 6}", LR_E_CONFIG, "num_attention_heads", "hidden_size"},
    /* huge numbers */
    {4, NULL, "{\"hidden_size\": 4294967296}", LR_E_CONFIG, "hidden_size", "outside"},
    {4, NULL, "{\"vocab_size\": 9223372036854775807}", LR_E_CONFIG, "vocab_size", "outside"},
    {5, NULL, "{\"intermediate_size\": -9223372036854775808}", LR_E_CONFIG, "intermediate_size", "outside"},
    {4, NULL, "{\"num_attention_heads\": 2147483649}", LR_E_CONFIG, "num_attention_heads", "outside"},
    {4, NULL, "{\"num_hidden_layers\": 1000000}", LR_E_CONFIG, "num_hidden_layers", "large"},
    {4, NULL, "{\"head_dim\": 1073741824}", LR_E_CONFIG, "head_dim", "large"},
    {4, NULL, "{\"max_position_embeddings\": 1e12}", LR_E_CONFIG, "max_position_embeddings", "integer"},
    {4, NULL, "{\"rope_scaling\": {\"original_max_position_embeddings\": 4294967296}}", LR_E_CONFIG,
     RS ".original_max_position_embeddings", "outside"},
};
#undef RS
#undef RP

START_TEST(bad_config) {
    const bad_case *bc = &bad_cases[_i];
    char *dir = tu_tmpdir("config-bad");
    json_t *j = variant(bc->style, bc->del, bc->set);
    lr_config c, before;
    memset(&c, 0xab, sizeof c);
    before = c;
    char *path;
    int rc = load_json(dir, "config.json", j, &path, &c);
    ck_assert_msg(rc == bc->status, "case %d (%s): %s, expected %s: %s", _i,
                  bc->set ? bc->set : bc->del, lr_status_name(rc), lr_status_name(bc->status),
                  lr_last_error());
    TU_ASSERT_ERROR_HAS(path, bc->field);
    /* The message is "FILE: FIELD: detail": the field follows the file. */
    const char *after_file = strstr(lr_last_error(), path) + strlen(path);
    ck_assert_msg(strstr(after_file, bc->field), "field %s not after the file in \"%s\"", bc->field,
                  lr_last_error());
    if (bc->detail) TU_ASSERT_ERROR_HAS(bc->detail);
    ck_assert_msg(memcmp(&c, &before, sizeof c) == 0, "a failed load wrote the config");
    free(path);
    json_decref(j);
    tu_tmpdir_free(dir);
}
END_TEST

/* Whole texts that are not a valid config at the JSON level (or not an object). */
static const struct {
    const char *text;
    int status;
    const char *detail; /* must occur in the message besides the file, or NULL */
} raw_cases[] = {
    {"", LR_E_JSON, "line"},
    {"{", LR_E_JSON, "line"},
    {"not json", LR_E_JSON, "line"},
    {"{\"model_type\": \"llama\",}", LR_E_JSON, "line"},
    {"{\"model_type\": \"llama\"} {}", LR_E_JSON, "line"},
    {"{\"model_type\": \"llama\", \"hidden_size\": NaN}", LR_E_JSON, "line"},
    {"{\"model_type\": \"llama\", \"model_type\": \"llama\"}", LR_E_JSON, "model_type"},
    /* numbers jansson cannot hold: the parser reports them, with their position */
    {"{\"model_type\": \"llama\", \"vocab_size\": 100, \"hidden_size\": 99999999999999999999,"
     " \"intermediate_size\": 160, \"num_hidden_layers\": 2, \"num_attention_heads\": 8}",
     LR_E_JSON, "99999999999999999999"},
    {"{\"model_type\": \"llama\", \"vocab_size\": 100, \"hidden_size\": 64,"
     " \"intermediate_size\": 160, \"num_hidden_layers\": 2, \"num_attention_heads\": 8,"
     " \"rms_norm_eps\": 1e999}",
     LR_E_JSON, "1e999"},
    {"[1, 2]", LR_E_CONFIG, "top level"},
    {"\"llama\"", LR_E_JSON, "line"},
};

START_TEST(bad_json) {
    char *dir = tu_tmpdir("config-json");
    char *path = tu_path(dir, "config.json");
    tu_write_text(path, raw_cases[_i].text);
    lr_config c;
    TU_ASSERT_STATUS(lr_config_load(path, &c), raw_cases[_i].status);
    TU_ASSERT_ERROR_HAS(path);
    if (raw_cases[_i].detail) TU_ASSERT_ERROR_HAS(raw_cases[_i].detail);
    free(path);
    tu_tmpdir_free(dir);
}
END_TEST

START_TEST(unreadable) {
    char *dir = tu_tmpdir("config-io");
    char *path = tu_path(dir, "absent.json");
    lr_config c;
    TU_ASSERT_STATUS(lr_config_load(path, &c), LR_E_IO);
    TU_ASSERT_ERROR_HAS(path);
    TU_ASSERT_STATUS(lr_config_load(dir, &c), LR_E_IO);
    TU_ASSERT_ERROR_HAS(dir);
    free(path);
    tu_tmpdir_free(dir);
}
END_TEST

static Suite *config_suite(void) {
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("load");
    tcase_add_loop_test(tc, styles_load_identically, 0, (int)N_ELEMS(style_cases));
    tcase_add_test(tc, testutil_config_round_trip);
    tcase_add_test(tc, defaults);
    tcase_add_test(tc, parse_respects_length);
    tcase_add_loop_test(tc, rope_types, 0, (int)N_ELEMS(rope_cases));
    tcase_add_test(tc, rope_theta_default);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_loop_test(tc, bad_config, 0, (int)N_ELEMS(bad_cases));
    tcase_add_loop_test(tc, bad_json, 0, (int)N_ELEMS(raw_cases));
    tcase_add_test(tc, unreadable);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(config_suite()); }
