/* fuzz_config.c: libFuzzer target for config.json (lr_config_parse). A config that
 * parses must satisfy what the rest of the library assumes of it, and every size
 * derived from it for tensor parallelism 1..8 (layouts and packing plans of every
 * rank) must come out consistent: slices inside their packed tensor, shards tiling the
 * padded vocabulary. Overflow in those sizes trips UBSan. */
#include "fuzz.h"
#include "llamaref.h"

static void check_layout(const lr_config *c, const lr_tp_layout *L, int tp, int rank) {
    FUZZ_CHECK(L->tp_size == tp && L->tp_rank == rank);
    FUZZ_CHECK(L->num_heads * tp == c->num_attention_heads);
    FUZZ_CHECK(L->num_kv_heads >= 1 && L->kv_replicas >= 1);
    FUZZ_CHECK(L->num_kv_heads * tp == c->num_key_value_heads * L->kv_replicas);
    FUZZ_CHECK(L->kv_head_start >= 0 && L->kv_head_start + L->num_kv_heads <= c->num_key_value_heads);
    FUZZ_CHECK(L->q_size == L->num_heads * c->head_dim && L->kv_size == L->num_kv_heads * c->head_dim);
    FUZZ_CHECK(L->intermediate * tp == c->intermediate_size);
    FUZZ_CHECK(L->vocab_padded >= c->vocab_size && L->vocab_padded % LR_VOCAB_PADDING == 0);
    FUZZ_CHECK(L->vocab_shard * tp == L->vocab_padded && L->vocab_start == rank * L->vocab_shard);
}

static void check_plan(const lr_plan *p) {
    size_t n = lr_plan_count(p);
    for (size_t i = 0; i < n; i++) {
        const lr_packed_desc *d = lr_plan_at(p, i);
        FUZZ_CHECK(d && (d->ndim == 1 || d->ndim == 2));
        FUZZ_CHECK(d->shape[0] >= 0 && d->shape[1] >= 1);
        FUZZ_CHECK(d->nslices >= 0 && d->nslices <= 3);
        FUZZ_CHECK(d->tied_to < (int)i);
        for (int k = 0; k < d->nslices; k++) {
            const lr_slice *s = &d->slices[k];
            FUZZ_CHECK(s->rows >= 0 && s->cols >= 0 && s->src_row0 >= 0 && s->src_col0 >= 0);
            FUZZ_CHECK(s->dst_row0 >= 0 && s->dst_row0 + s->rows <= d->shape[0]);
            FUZZ_CHECK(s->cols <= d->shape[1]);
        }
        FUZZ_CHECK(lr_plan_index(p, d->name) == (int)i);
    }
    FUZZ_CHECK(lr_plan_at(p, n) == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lr_config c;
    if (lr_config_parse((const char *)data, size, "fuzz.json", &c) != LR_OK) {
        FUZZ_CHECK_MESSAGE("fuzz.json");
        return 0;
    }
    FUZZ_CHECK(c.vocab_size >= 1 && c.hidden_size >= 1 && c.intermediate_size >= 1);
    FUZZ_CHECK(c.num_hidden_layers >= 1 && c.num_attention_heads >= 1 && c.num_key_value_heads >= 1);
    FUZZ_CHECK(c.num_attention_heads % c.num_key_value_heads == 0);
    FUZZ_CHECK(c.head_dim >= 2 && c.head_dim % 2 == 0 && c.max_position_embeddings >= 1);
    FUZZ_CHECK(c.rms_norm_eps > 0 && c.rope_theta > 0 && c.rope_factor > 0);
    FUZZ_CHECK(c.config_style == 4 || c.config_style == 5);
    FUZZ_CHECK(strcmp(lr_rope_type_name(c.rope_type), "?") != 0);

    /* The plan grows with the layer count (up to 100000 layers are accepted); its sizes
     * do not depend on it, so two layers show every derived size. */
    lr_config few = c;
    if (few.num_hidden_layers > 2) few.num_hidden_layers = 2;
    for (int tp = 1; tp <= 8; tp++) {
        for (int rank = 0; rank < tp; rank++) {
            lr_tp_layout L;
            if (lr_tp_layout_make(&c, tp, rank, &L) != LR_OK) {
                FUZZ_CHECK(rank == 0); /* divisibility does not depend on the rank */
                break;
            }
            check_layout(&c, &L, tp, rank);
            lr_plan *p;
            FUZZ_CHECK(lr_plan_create(&few, tp, rank, &p) == LR_OK);
            check_plan(p);
            lr_plan_free(p);
        }
    }

    static const char *const stages[] = {"model.embed_tokens", "lm_head", "model.norm",
                                         "model.layers.0", "model.layers.1.self_attn.k_proj",
                                         "model.layers.0.mlp.act_fn", "model.layers.99999"};
    for (size_t i = 0; i < sizeof stages / sizeof stages[0]; i++) {
        bool required;
        int64_t w = lr_stage_width(&c, stages[i], &required);
        FUZZ_CHECK(w == -1 || w >= 1);
    }
    return 0;
}
