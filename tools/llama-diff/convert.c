/* convert.c: llama-diff convert: a GGUF model written as a Hugging Face checkpoint
 * (config.json and model.safetensors, every tensor dequantized to F32; docs/gguf.md). */
#include "diff.h"

#include <stdio.h>
#include <sys/stat.h>

int cmd_convert(const args *a) {
    if (!a->gguf || !a->out) return bad("convert: --gguf FILE and --out DIR are required");
    struct stat st;
    if (stat(a->gguf, &st) != 0) return bad("%s: cannot open: no such file", a->gguf);
    if (!S_ISREG(st.st_mode)) return bad("%s: --gguf wants a GGUF file, not a directory", a->gguf);
    lr_checkpoint *ck;
    int rc = lr_checkpoint_open(a->gguf, &ck);
    if (rc) return lib_fail(rc);
    if ((rc = lr_checkpoint_save(ck, a->out, a->force))) {
        lr_checkpoint_close(ck);
        return lib_fail(rc);
    }
    const lr_config *c = lr_checkpoint_config(ck);
    int64_t q = c->num_attention_heads * c->head_dim, kv = c->num_key_value_heads * c->head_dim;
    int64_t H = c->hidden_size, I = c->intermediate_size, L = c->num_hidden_layers;
    int64_t per_layer = 2 * H + 2 * q * H + 2 * kv * H + 3 * H * I +
                        (c->attention_bias ? q + 2 * kv + H : 0) + (c->mlp_bias ? 2 * I + H : 0);
    int64_t tensors =
        2 + L * (9 + (c->attention_bias ? 4 : 0) + (c->mlp_bias ? 3 : 0)) + !c->tie_word_embeddings;
    int64_t params = c->vocab_size * H * (c->tie_word_embeddings ? 1 : 2) + L * per_layer + H;
    if (a->json) {
        json_t *j =
            json_pack("{s:s, s:s, s:s, s:[s,s], s:I, s:I, s:o}", "command", "convert", "gguf", a->gguf, "out",
                      a->out, "files", "config.json", "model.safetensors", "tensors", (json_int_t)tensors,
                      "parameters", (json_int_t)params, "config", config_json(c));
        json_dumpf(j, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
        json_decref(j);
    } else {
        printf("wrote %s/config.json and %s/model.safetensors: %lld tensors, %lld parameters as F32%s\n",
               a->out, a->out, (long long)tensors, (long long)params,
               c->tie_word_embeddings ? " (lm_head tied to the embedding, not stored)" : "");
    }
    lr_checkpoint_close(ck);
    return EXIT_AGREE;
}
