/* info.c: llama-diff info: the parsed config, and per tensor-parallel rank every packed
 * tensor's shape and the slices of Hugging Face tensors it is made of (the plan). */
#include "diff.h"

#include <stdio.h>

json_t *config_json(const lr_config *c) {
    json_t *j =
        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:b, s:b, s:b, s:s, s:f, s:i}", "vocab_size",
                  (json_int_t)c->vocab_size, "hidden_size", (json_int_t)c->hidden_size, "intermediate_size",
                  (json_int_t)c->intermediate_size, "num_hidden_layers", (json_int_t)c->num_hidden_layers,
                  "num_attention_heads", (json_int_t)c->num_attention_heads, "num_key_value_heads",
                  (json_int_t)c->num_key_value_heads, "head_dim", (json_int_t)c->head_dim,
                  "max_position_embeddings", (json_int_t)c->max_position_embeddings, "rms_norm_eps",
                  c->rms_norm_eps, "attention_bias", c->attention_bias, "mlp_bias", c->mlp_bias,
                  "tie_word_embeddings", c->tie_word_embeddings, "rope_type", lr_rope_type_name(c->rope_type),
                  "rope_theta", c->rope_theta, "config_style", c->config_style);
    if (c->rope_type != LR_ROPE_DEFAULT) json_object_set_new(j, "rope_factor", json_real(c->rope_factor));
    if (c->rope_type == LR_ROPE_LLAMA3) {
        json_object_set_new(j, "rope_low_freq_factor", json_real(c->rope_low_freq_factor));
        json_object_set_new(j, "rope_high_freq_factor", json_real(c->rope_high_freq_factor));
        json_object_set_new(j, "rope_original_max_position_embeddings",
                            json_integer(c->rope_original_max_position_embeddings));
    }
    return j;
}

static void print_config(const lr_config *c) {
    printf("config (transformers %d.x style)\n", c->config_style);
    printf("  vocab_size %lld, hidden_size %lld, intermediate_size %lld, num_hidden_layers %lld\n",
           (long long)c->vocab_size, (long long)c->hidden_size, (long long)c->intermediate_size,
           (long long)c->num_hidden_layers);
    printf("  num_attention_heads %lld, num_key_value_heads %lld, head_dim %lld\n",
           (long long)c->num_attention_heads, (long long)c->num_key_value_heads, (long long)c->head_dim);
    printf("  rms_norm_eps %g, attention_bias %s, mlp_bias %s, tie_word_embeddings %s\n", c->rms_norm_eps,
           c->attention_bias ? "true" : "false", c->mlp_bias ? "true" : "false",
           c->tie_word_embeddings ? "true" : "false");
    printf("  rope %s, theta %g", lr_rope_type_name(c->rope_type), c->rope_theta);
    if (c->rope_type != LR_ROPE_DEFAULT) printf(", factor %g", c->rope_factor);
    if (c->rope_type == LR_ROPE_LLAMA3)
        printf(", low_freq_factor %g, high_freq_factor %g, original_max_position_embeddings %lld",
               c->rope_low_freq_factor, c->rope_high_freq_factor,
               (long long)c->rope_original_max_position_embeddings);
    printf(", max_position_embeddings %lld\n", (long long)c->max_position_embeddings);
}

int cmd_info(const args *a) {
    if (!a->model) return bad("info: --model DIR is required");
    lr_checkpoint *ck;
    int rc = lr_checkpoint_open(a->model, &ck);
    if (rc) return lib_fail(rc);
    const lr_config *c = lr_checkpoint_config(ck);
    json_t *root = a->json ? json_pack("{s:s, s:s, s:o, s:i, s:[]}", "command", "info", "model", a->model,
                                       "config", config_json(c), "tp", a->opt.tp_size, "ranks")
                           : NULL;
    if (!a->json) {
        printf("model %s\n", a->model);
        print_config(c);
    }
    int status = EXIT_AGREE;
    for (int r = 0; r < a->opt.tp_size && status == EXIT_AGREE; r++) {
        lr_plan *p;
        if ((rc = lr_plan_create(c, a->opt.tp_size, r, &p))) {
            status = lib_fail(rc);
            break;
        }
        const lr_tp_layout *L = lr_plan_layout(p);
        json_t *tensors = json_array();
        if (a->json) {
            json_array_append_new(
                json_object_get(root, "ranks"),
                json_pack("{s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o}", "rank", r, "num_heads",
                          (json_int_t)L->num_heads, "num_kv_heads", (json_int_t)L->num_kv_heads,
                          "kv_replicas", (json_int_t)L->kv_replicas, "kv_head_start",
                          (json_int_t)L->kv_head_start, "intermediate", (json_int_t)L->intermediate,
                          "vocab_padded", (json_int_t)L->vocab_padded, "vocab_shard",
                          (json_int_t)L->vocab_shard, "vocab_start", (json_int_t)L->vocab_start, "q_size",
                          (json_int_t)L->q_size, "tensors", tensors));
        } else {
            printf("\nrank %d of %d: %lld heads, %lld kv heads (kv head %lld, %lld replica%s), "
                   "intermediate %lld, vocabulary rows [%lld, %lld) of %lld padded\n",
                   r, a->opt.tp_size, (long long)L->num_heads, (long long)L->num_kv_heads,
                   (long long)L->kv_head_start, (long long)L->kv_replicas, L->kv_replicas == 1 ? "" : "s",
                   (long long)L->intermediate, (long long)L->vocab_start,
                   (long long)(L->vocab_start + L->vocab_shard), (long long)L->vocab_padded);
            json_decref(tensors);
        }
        for (size_t i = 0; i < lr_plan_count(p); i++) {
            const lr_packed_desc *d = lr_plan_at(p, i);
            if (a->json) {
                json_t *slices = json_array();
                for (int k = 0; k < d->nslices; k++) {
                    const lr_slice *s = &d->slices[k];
                    json_array_append_new(slices, json_pack("{s:s, s:[I,I], s:[I,I], s:I}", "src", s->src,
                                                            "src_rows", (json_int_t)s->src_row0,
                                                            (json_int_t)(s->src_row0 + s->rows), "src_cols",
                                                            (json_int_t)s->src_col0,
                                                            (json_int_t)(s->src_col0 + s->cols), "dst_row",
                                                            (json_int_t)s->dst_row0));
                }
                json_t *shape = d->ndim == 2
                                    ? json_pack("[I,I]", (json_int_t)d->shape[0], (json_int_t)d->shape[1])
                                    : json_pack("[I]", (json_int_t)d->shape[0]);
                json_array_append_new(
                    tensors, json_pack("{s:s, s:o, s:o, s:o}", "name", d->name, "shape", shape, "tied_to",
                                       d->tied_to >= 0 ? json_string(lr_plan_at(p, (size_t)d->tied_to)->name)
                                                       : json_null(),
                                       "slices", slices));
                continue;
            }
            char shape[48];
            if (d->ndim == 2)
                snprintf(shape, sizeof shape, "[%lld, %lld]", (long long)d->shape[0], (long long)d->shape[1]);
            else
                snprintf(shape, sizeof shape, "[%lld]", (long long)d->shape[0]);
            printf("  %-48s %-12s", d->name, shape);
            if (d->tied_to >= 0) printf(" tied to %s", lr_plan_at(p, (size_t)d->tied_to)->name);
            for (int k = 0; k < d->nslices; k++) {
                const lr_slice *s = &d->slices[k];
                printf("%s %s[%lld:%lld", k ? "," : (d->tied_to >= 0 ? ";" : " <-"), s->src,
                       (long long)s->src_row0, (long long)(s->src_row0 + s->rows));
                if (d->ndim == 2)
                    printf(", %lld:%lld]", (long long)s->src_col0, (long long)(s->src_col0 + s->cols));
                else
                    printf("]");
                printf(" -> row %lld", (long long)s->dst_row0);
            }
            if (d->nslices == 0) printf(" (padding only)");
            printf("\n");
        }
        lr_plan_free(p);
    }
    if (root) {
        if (status == EXIT_AGREE) {
            json_dumpf(root, stdout, JSON_INDENT(2));
            fputc('\n', stdout);
        }
        json_decref(root);
    }
    lr_checkpoint_close(ck);
    return status;
}
