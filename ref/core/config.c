/* config.c: config.json of a Hugging Face Llama checkpoint, in both styles
 * (transformers 4.x rope_theta/rope_scaling, 5.x rope_parameters), validated. */
#include "internal.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_MAX_BYTES (16u << 20)

const char *lr_rope_type_name(lr_rope_type t) {
    switch (t) {
    case LR_ROPE_DEFAULT: return "default";
    case LR_ROPE_LINEAR: return "linear";
    case LR_ROPE_LLAMA3: return "llama3";
    }
    return "?";
}

/* A field is absent when missing or JSON null. */
static json_t *field(json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);
    return json_is_null(v) ? NULL : v;
}

/* Messages name a field as "where.key" inside a nested object, "key" at the top. */
#define FIELD_FMT "%s%s%s"
#define FIELD_ARGS(where, key) (where) ? (where) : "", (where) ? "." : "", (key)

static int get_int(json_t *obj, const char *name, const char *where, const char *key,
                   bool required, int64_t dflt, int64_t lo, int64_t hi, int64_t *out) {
    json_t *v = field(obj, key);
    if (!v) {
        if (required) return lr_fail(LR_E_CONFIG, "%s: " FIELD_FMT ": required field missing", name, FIELD_ARGS(where, key));
        *out = dflt;
        return LR_OK;
    }
    if (!json_is_integer(v))
        return lr_fail(LR_E_CONFIG, "%s: " FIELD_FMT ": expected an integer", name, FIELD_ARGS(where, key));
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return lr_fail(LR_E_CONFIG, "%s: " FIELD_FMT ": %lld is outside %lld..%lld", name, FIELD_ARGS(where, key),
                       (long long)x, (long long)lo, (long long)hi);
    *out = (int64_t)x;
    return LR_OK;
}

static int get_real(json_t *obj, const char *name, const char *where, const char *key,
                    bool required, double dflt, double *out) {
    json_t *v = field(obj, key);
    if (!v) {
        if (required) return lr_fail(LR_E_CONFIG, "%s: " FIELD_FMT ": required field missing", name, FIELD_ARGS(where, key));
        *out = dflt;
        return LR_OK;
    }
    if (!json_is_number(v)) return lr_fail(LR_E_CONFIG, "%s: " FIELD_FMT ": expected a number", name, FIELD_ARGS(where, key));
    double x = json_number_value(v);
    if (!isfinite(x) || x <= 0)
        return lr_fail(LR_E_CONFIG, "%s: " FIELD_FMT ": %g must be finite and positive", name, FIELD_ARGS(where, key), x);
    *out = x;
    return LR_OK;
}

static int get_bool(json_t *obj, const char *name, const char *key, bool *out) {
    json_t *v = field(obj, key);
    if (!v) {
        *out = false;
        return LR_OK;
    }
    if (!json_is_boolean(v)) return lr_fail(LR_E_CONFIG, "%s: %s: expected true or false", name, key);
    *out = json_is_true(v);
    return LR_OK;
}

static int get_string(json_t *obj, const char *name, const char *key, const char *dflt,
                      const char **out) {
    json_t *v = field(obj, key);
    if (!v) {
        if (!dflt) return lr_fail(LR_E_CONFIG, "%s: %s: required field missing", name, key);
        *out = dflt;
        return LR_OK;
    }
    if (!json_is_string(v)) return lr_fail(LR_E_CONFIG, "%s: %s: expected a string", name, key);
    *out = json_string_value(v);
    return LR_OK;
}

/* rope: the rope_parameters (5.x) or rope_scaling (4.x) object, or NULL; where: its key. */
static int parse_rope(json_t *root, json_t *rope, const char *name, const char *where,
                      lr_config *c) {
    int rc;
    if (rope && !json_is_object(rope)) return lr_fail(LR_E_CONFIG, "%s: %s: expected an object", name, where);
    c->rope_factor = 1.0;
    if (c->config_style == 5) {
        if ((rc = get_real(rope, name, where, "rope_theta", true, 0, &c->rope_theta))) return rc;
    } else if ((rc = get_real(root, name, NULL, "rope_theta", false, 10000.0, &c->rope_theta))) {
        return rc;
    }
    c->rope_type = LR_ROPE_DEFAULT;
    if (!rope) return LR_OK;

    const char *type = NULL;
    json_t *t = field(rope, "rope_type");
    const char *type_key = "rope_type";
    if (!t) {
        t = field(rope, "type"); /* the older spelling */
        type_key = "type";
    }
    if (!t) {
        if (c->config_style == 4)
            return lr_fail(LR_E_CONFIG, "%s: %s: neither rope_type nor type is given", name, where);
        type = "default";
    } else if (!json_is_string(t)) {
        return lr_fail(LR_E_CONFIG, "%s: %s.%s: expected a string", name, where, type_key);
    } else {
        type = json_string_value(t);
    }

    if (strcmp(type, "default") == 0) {
        c->rope_type = LR_ROPE_DEFAULT;
    } else if (strcmp(type, "linear") == 0) {
        c->rope_type = LR_ROPE_LINEAR;
        if ((rc = get_real(rope, name, where, "factor", true, 0, &c->rope_factor))) return rc;
    } else if (strcmp(type, "llama3") == 0) {
        c->rope_type = LR_ROPE_LLAMA3;
        static const char *keys[] = {"factor", "low_freq_factor", "high_freq_factor"};
        double *dst[] = {&c->rope_factor, &c->rope_low_freq_factor, &c->rope_high_freq_factor};
        for (int i = 0; i < 3; i++) {
            if ((rc = get_real(rope, name, where, keys[i], true, 0, dst[i]))) return rc;
        }
        if (c->rope_high_freq_factor <= c->rope_low_freq_factor)
            return lr_fail(LR_E_CONFIG, "%s: %s.high_freq_factor: must exceed low_freq_factor",
                           name, where);
        if ((rc = get_int(rope, name, where, "original_max_position_embeddings", true, 0, 1,
                          LR_MAX_DIM, &c->rope_original_max_position_embeddings)))
            return rc;
    } else {
        return lr_fail(LR_E_CONFIG,
                       "%s: %s.%s: unsupported rope type \"%s\" (supported: default, linear, llama3)",
                       name, where, type_key, type);
    }
    return LR_OK;
}

static int parse_root(json_t *root, const char *name, lr_config *c) {
    int rc;
    const char *s = NULL;
    if (!json_is_object(root)) return lr_fail(LR_E_CONFIG, "%s: top level: expected an object", name);

    if ((rc = get_string(root, name, "model_type", NULL, &s))) return rc;
    if (strcmp(s, "llama") != 0)
        return lr_fail(LR_E_CONFIG, "%s: model_type: \"%s\" is not supported (expected \"llama\")",
                       name, s);
    if ((rc = get_string(root, name, "hidden_act", "silu", &s))) return rc;
    if (strcmp(s, "silu") != 0)
        return lr_fail(LR_E_CONFIG, "%s: hidden_act: \"%s\" is not supported (expected \"silu\")",
                       name, s);

    struct {
        const char *key;
        int64_t *dst;
    } req[] = {
        {"vocab_size", &c->vocab_size},
        {"hidden_size", &c->hidden_size},
        {"intermediate_size", &c->intermediate_size},
        {"num_hidden_layers", &c->num_hidden_layers},
        {"num_attention_heads", &c->num_attention_heads},
    };
    for (size_t i = 0; i < sizeof req / sizeof req[0]; i++)
        if ((rc = get_int(root, name, NULL, req[i].key, true, 0, 1, LR_MAX_DIM, req[i].dst))) return rc;
    if (c->num_hidden_layers > 100000)
        return lr_fail(LR_E_CONFIG, "%s: num_hidden_layers: %lld is implausibly large", name,
                       (long long)c->num_hidden_layers);
    if ((rc = get_int(root, name, NULL, "num_key_value_heads", false, c->num_attention_heads, 1,
                      LR_MAX_DIM, &c->num_key_value_heads)))
        return rc;
    if (c->num_attention_heads % c->num_key_value_heads != 0)
        return lr_fail(LR_E_CONFIG,
                       "%s: num_key_value_heads: %lld does not divide num_attention_heads %lld",
                       name, (long long)c->num_key_value_heads, (long long)c->num_attention_heads);
    if (!field(root, "head_dim") && c->hidden_size % c->num_attention_heads != 0)
        return lr_fail(LR_E_CONFIG,
                       "%s: num_attention_heads: %lld does not divide hidden_size %lld (and no head_dim)",
                       name, (long long)c->num_attention_heads, (long long)c->hidden_size);
    if ((rc = get_int(root, name, NULL, "head_dim", false, c->hidden_size / c->num_attention_heads, 1,
                      LR_MAX_DIM, &c->head_dim)))
        return rc;
    if (c->head_dim % 2 != 0)
        return lr_fail(LR_E_CONFIG, "%s: head_dim: %lld must be even for rotary embedding", name,
                       (long long)c->head_dim);
    if (c->num_attention_heads * c->head_dim > LR_MAX_DIM)
        return lr_fail(LR_E_CONFIG, "%s: head_dim: num_attention_heads * head_dim is too large", name);
    if ((rc = get_int(root, name, NULL, "max_position_embeddings", false, 2048, 1, LR_MAX_DIM,
                      &c->max_position_embeddings)))
        return rc;
    if ((rc = get_real(root, name, NULL, "rms_norm_eps", false, 1e-6, &c->rms_norm_eps))) return rc;
    if ((rc = get_bool(root, name, "attention_bias", &c->attention_bias))) return rc;
    if ((rc = get_bool(root, name, "mlp_bias", &c->mlp_bias))) return rc;
    if ((rc = get_bool(root, name, "tie_word_embeddings", &c->tie_word_embeddings))) return rc;

    json_t *params = field(root, "rope_parameters");
    if (params) {
        c->config_style = 5;
        return parse_rope(root, params, name, "rope_parameters", c);
    }
    c->config_style = 4;
    return parse_rope(root, field(root, "rope_scaling"), name, "rope_scaling", c);
}

int lr_config_parse(const char *json, size_t len, const char *name, lr_config *cfg) {
    json_error_t err;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &err);
    if (!root)
        return lr_fail(LR_E_JSON, "%s: line %d column %d: %s", name, err.line, err.column, err.text);
    lr_config c;
    memset(&c, 0, sizeof c);
    int rc = parse_root(root, name, &c);
    json_decref(root);
    if (rc == LR_OK) *cfg = c;
    return rc;
}

int lr_config_load(const char *path, lr_config *cfg) {
    char *buf;
    size_t len;
    int rc = lr_read_file(path, CONFIG_MAX_BYTES, &buf, &len);
    if (rc) return rc;
    rc = lr_config_parse(buf, len, path, cfg);
    free(buf);
    return rc;
}

/* Inverse frequencies of RoPE, float64, with the config's scaling. */
void lr_rope_inv_freq(const lr_config *c, double *inv) {
    int64_t half = c->head_dim / 2;
    for (int64_t i = 0; i < half; i++) {
        double f = 1.0 / pow(c->rope_theta, (double)(2 * i) / (double)c->head_dim);
        if (c->rope_type == LR_ROPE_LINEAR) {
            f /= c->rope_factor;
        } else if (c->rope_type == LR_ROPE_LLAMA3) {
            /* Llama 3.1: long wavelengths slowed by factor, short ones kept, a smooth
             * blend between the two bands. */
            double old = (double)c->rope_original_max_position_embeddings;
            double low_wavelen = old / c->rope_low_freq_factor;
            double high_wavelen = old / c->rope_high_freq_factor;
            double wavelen = 2 * M_PI / f;
            if (wavelen > low_wavelen) {
                f /= c->rope_factor;
            } else if (wavelen >= high_wavelen) {
                double smooth = (old / wavelen - c->rope_low_freq_factor) /
                                (c->rope_high_freq_factor - c->rope_low_freq_factor);
                f = (1 - smooth) * f / c->rope_factor + smooth * f;
            }
        }
        inv[i] = f;
    }
}

/* transformers' frequencies, which it makes in float32 (the rounding profiles'
 * ROPE_TORCH, rounding.h): 1 / theta^(float32(2 i) / head_dim), the power rounded once to
 * float32 (torch's pow gives the correctly rounded one at these exponents: measured at
 * head_dim 16 to 128, theta 1e4 to 5e5), then the reciprocal, then divided by the factor
 * for linear RoPE. Llama 3's bands: the float64 frequencies rounded to float32 (not
 * measured against transformers). Each a float32 value, held as a double. */
void lr_rope_inv_freq_torch(const lr_config *c, double *inv) {
    int64_t half = c->head_dim / 2;
    if (c->rope_type == LR_ROPE_LLAMA3) {
        lr_rope_inv_freq(c, inv);
        for (int64_t i = 0; i < half; i++)
            inv[i] = (float)inv[i];
        return;
    }
    for (int64_t i = 0; i < half; i++) {
        float e = (float)(2 * i) / (float)c->head_dim;
        float f = 1.0f / (float)pow((double)(float)c->rope_theta, (double)e);
        if (c->rope_type == LR_ROPE_LINEAR) f /= (float)c->rope_factor;
        inv[i] = f;
    }
}
