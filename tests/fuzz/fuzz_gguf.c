/* fuzz_gguf.c: libFuzzer target for the GGUF reader (lr_gguf_parse) and what the loader
 * does with a file that parses: its llama metadata as a config (lr_gguf_config), tensor
 * names to Hugging Face names, dequantization of every supported tensor (read element
 * by element inside the input, so ASan sees any stray offset) and the q/k unpermute.
 * A parsed file keeps the reader's promises: every tensor's bytes lie inside the input
 * at an aligned offset, bytes = elements / block x block size, no two tensors share a
 * byte, names are unique and found by lookup. A file whose metadata makes a valid config
 * also goes through lr_checkpoint_open (from a temporary file): the checks against the
 * config, dequantization into owned F32 tensors and the unpermute; a checkpoint that
 * opens holds exactly the config's tensors, F32, with the shapes it implies. */
#include "fuzz.h"
#include "llamaref.h"

#include <math.h>
#include <unistd.h>

/* Writes the input to one temporary file per process and opens it as a checkpoint. */
static void fuzz_checkpoint(const uint8_t *data, size_t size, const lr_config *cfg) {
    static char path[64];
    if (!path[0]) {
        snprintf(path, sizeof path, "/tmp/fuzz-gguf-%ld.gguf", (long)getpid());
    }
    FILE *fp = fopen(path, "wb");
    FUZZ_CHECK(fp);
    FUZZ_CHECK(fwrite(data, 1, size, fp) == size);
    FUZZ_CHECK(fclose(fp) == 0);
    lr_checkpoint *ck;
    int rc = lr_checkpoint_open(path, &ck);
    if (rc != LR_OK) {
        FUZZ_CHECK(strncmp(lr_last_error(), path, strlen(path)) == 0);
        unlink(path);
        return;
    }
    const lr_config *c = lr_checkpoint_config(ck);
    FUZZ_CHECK(c->vocab_size == cfg->vocab_size && c->hidden_size == cfg->hidden_size &&
               c->num_hidden_layers == cfg->num_hidden_layers && c->head_dim == cfg->head_dim &&
               c->num_key_value_heads == cfg->num_key_value_heads &&
               c->tie_word_embeddings == cfg->tie_word_embeddings);
    const char *names[] = {"model.embed_tokens.weight", "model.norm.weight",
                           "model.layers.0.self_attn.q_proj.weight",
                           "model.layers.0.self_attn.k_proj.weight"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const lr_st_entry *e = lr_checkpoint_find(ck, names[i]);
        FUZZ_CHECK(e && e->t.dtype == LR_F32 && e->nbytes == (uint64_t)lr_tensor_numel(&e->t) * 4);
    }
    const lr_st_entry *q = lr_checkpoint_find(ck, "model.layers.0.self_attn.q_proj.weight");
    FUZZ_CHECK(q->t.shape[0] == c->num_attention_heads * c->head_dim && q->t.shape[1] == c->hidden_size);
    FUZZ_CHECK((lr_checkpoint_find(ck, "lm_head.weight") == NULL) == c->tie_word_embeddings);
    lr_checkpoint_close(ck);
    unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lr_gguf_file *f;
    if (lr_gguf_parse(data, size, "fuzz.gguf", &f) != LR_OK) {
        FUZZ_CHECK_MESSAGE("fuzz.gguf");
        return 0;
    }
    FUZZ_CHECK(lr_gguf_version(f) == 2 || lr_gguf_version(f) == 3);
    uint64_t align = lr_gguf_alignment(f);
    FUZZ_CHECK(align > 0 && (align & (align - 1)) == 0);
    for (size_t i = 0; i < lr_gguf_kv_count(f); i++) {
        const char *k = lr_gguf_kv_key(f, i);
        FUZZ_CHECK(k && *k);
        for (size_t j = 0; j < i; j++)
            FUZZ_CHECK(strcmp(lr_gguf_kv_key(f, j), k) != 0);
    }
    FUZZ_CHECK(lr_gguf_kv_key(f, lr_gguf_kv_count(f)) == NULL);
    size_t n = lr_gguf_tensor_count(f);
    volatile float sink = 0;
    for (size_t i = 0; i < n; i++) {
        const lr_gguf_tensor *t = lr_gguf_tensor_at(f, i);
        FUZZ_CHECK(t && t->name && *t->name && strlen(t->name) <= 64);
        FUZZ_CHECK(lr_gguf_find_tensor(f, t->name) == t);
        FUZZ_CHECK(t->ndim >= 1 && t->ndim <= LR_MAX_DIMS);
        FUZZ_CHECK(lr_ggml_type_name(t->type) != NULL);
        uint64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            FUZZ_CHECK(t->ne[d] > 0);
            FUZZ_CHECK(!__builtin_mul_overflow(numel, (uint64_t)t->ne[d], &numel) &&
                       numel <= (uint64_t)INT64_MAX);
        }
        FUZZ_CHECK((int64_t)numel == lr_gguf_numel(t));
        FUZZ_CHECK(t->offset % align == 0);
        const uint8_t *p = t->data;
        FUZZ_CHECK(p >= data && p <= data + size && t->nbytes <= (uint64_t)(data + size - p));
        for (size_t j = 0; j < i; j++) {
            const lr_gguf_tensor *u = lr_gguf_tensor_at(f, j);
            FUZZ_CHECK(strcmp(u->name, t->name) != 0);
            FUZZ_CHECK(t->offset >= u->offset + u->nbytes || u->offset >= t->offset + t->nbytes);
        }
        char hf[160];
        int rc = lr_gguf_hf_name(t->name, hf, sizeof hf);
        FUZZ_CHECK(rc == LR_OK || rc == LR_E_UNEXPECTED);
        if (rc == LR_OK) FUZZ_CHECK(strncmp(hf, "model.", 6) == 0 || strcmp(hf, "lm_head.weight") == 0);
        if (!lr_ggml_type_supported(t->type) || numel > ((uint64_t)1 << 24)) continue;
        float *y = malloc((size_t)numel * sizeof *y);
        FUZZ_CHECK(y);
        FUZZ_CHECK(lr_gguf_dequantize(t, y) == LR_OK);
        sink = sink + y[0] + y[numel - 1];
        /* A Q/K-shaped tensor: undo the permutation for a few head counts. */
        int64_t rows = t->ndim >= 2 ? t->ne[1] : t->ne[0], cols = t->ndim >= 2 ? t->ne[0] : 1;
        if ((uint64_t)(rows * cols) == numel) {
            for (int64_t heads = 1; heads <= 4; heads++) {
                rc = lr_gguf_unpermute(y, rows, cols, heads);
                FUZZ_CHECK(rc == LR_OK || rc == LR_E_SHAPE);
                FUZZ_CHECK((rc == LR_OK) == (rows % heads == 0 && (rows / heads) % 2 == 0));
            }
        }
        free(y);
    }
    FUZZ_CHECK(lr_gguf_tensor_at(f, n) == NULL);
    lr_config cfg;
    if (lr_gguf_config(f, &cfg) == LR_OK) {
        FUZZ_CHECK(cfg.vocab_size > 0 && cfg.hidden_size > 0 && cfg.num_hidden_layers > 0);
        FUZZ_CHECK(cfg.num_attention_heads % cfg.num_key_value_heads == 0);
        FUZZ_CHECK(cfg.head_dim > 0 && cfg.head_dim % 2 == 0);
        FUZZ_CHECK(cfg.tie_word_embeddings == (lr_gguf_find_tensor(f, "output.weight") == NULL));
        FUZZ_CHECK(isfinite(cfg.rms_norm_eps) && cfg.rms_norm_eps > 0 && isfinite(cfg.rope_theta));
        fuzz_checkpoint(data, size, &cfg);
    } else {
        FUZZ_CHECK_MESSAGE("fuzz.gguf");
    }
    char s[64];
    if (lr_gguf_string(f, "general.architecture", s, sizeof s) == LR_OK) FUZZ_CHECK(strlen(s) < sizeof s);
    FUZZ_CHECK(strcmp(lr_gguf_path(f), "fuzz.gguf") == 0);
    lr_gguf_close(f);
    (void)sink;
    return 0;
}
