/* fuzz_fixture.c: libFuzzer target for llama-golden/1 fixtures (lr_fixture_parse). A
 * fixture that parses holds a consistent batch (positions, sequence lengths) and stage
 * tensors of [tokens, features]; it is then checked against the configs of the bundled
 * fixture models (fixtures/models), which exercises the stage-name and width rules and
 * the vocabulary check on every input. */
#include "fuzz.h"
#include "llamaref.h"

/* The fields of fixtures/models/{mha-bias-bf16,gqa-f32,mqa-hd-f16,long-gqa-f32}/config.json
 * that matter here. */
static const char *const config_json[] = {
    "{\"model_type\": \"llama\", \"vocab_size\": 130, \"hidden_size\": 32, \"intermediate_size\": 96,"
    " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 4, \"head_dim\": 8,"
    " \"attention_bias\": true, \"mlp_bias\": true, \"tie_word_embeddings\": true,"
    " \"rope_theta\": 10000.0, \"rope_scaling\": {\"factor\": 2.0, \"type\": \"linear\"}}",
    "{\"model_type\": \"llama\", \"vocab_size\": 200, \"hidden_size\": 64, \"intermediate_size\": 128,"
    " \"num_hidden_layers\": 3, \"num_attention_heads\": 8, \"num_key_value_heads\": 2, \"head_dim\": 8,"
    " \"rope_parameters\": {\"rope_theta\": 10000.0, \"rope_type\": \"default\"}}",
    "{\"model_type\": \"llama\", \"vocab_size\": 96, \"hidden_size\": 48, \"intermediate_size\": 128,"
    " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 1, \"head_dim\": 16,"
    " \"rope_theta\": 500000.0, \"rope_scaling\": {\"factor\": 8.0, \"high_freq_factor\": 4.0,"
    " \"low_freq_factor\": 1.0, \"original_max_position_embeddings\": 64, \"rope_type\": \"llama3\"}}",
    "{\"model_type\": \"llama\", \"vocab_size\": 100, \"hidden_size\": 32, \"intermediate_size\": 64,"
    " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"head_dim\": 8,"
    " \"tie_word_embeddings\": true, \"rope_parameters\": {\"rope_theta\": 10000.0}}",
};
#define N_CONFIGS (sizeof config_json / sizeof config_json[0])

static void check_batch(const lr_batch *b) {
    FUZZ_CHECK(b->num_tokens >= 1 && b->num_seqs >= 1 && b->num_seqs <= b->num_tokens);
    FUZZ_CHECK(b->input_ids && b->positions && b->seq_ids == NULL);
    for (int64_t t = 0; t < b->num_tokens; t++) FUZZ_CHECK(b->positions[t] >= 0);
    if (b->seq_lens) {
        int64_t sum = 0;
        for (int64_t s = 0; s < b->num_seqs; s++) {
            FUZZ_CHECK(b->seq_lens[s] >= 1);
            sum += b->seq_lens[s];
        }
        FUZZ_CHECK(sum == b->num_tokens);
    } else {
        FUZZ_CHECK(b->num_seqs == 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static lr_config configs[N_CONFIGS];
    static bool ready;
    if (!ready) {
        for (size_t i = 0; i < N_CONFIGS; i++)
            FUZZ_CHECK(lr_config_parse(config_json[i], strlen(config_json[i]), "config", &configs[i]) == LR_OK);
        ready = true;
    }

    lr_fixture *fx;
    if (lr_fixture_parse(data, size, "fuzz.safetensors", &fx) != LR_OK) {
        FUZZ_CHECK_MESSAGE("fuzz.safetensors");
        return 0;
    }
    const lr_batch *b = lr_fixture_batch(fx);
    check_batch(b);
    FUZZ_CHECK(strcmp(lr_fixture_metadata(fx, "format"), LR_FIXTURE_FORMAT) == 0);
    volatile double sink = 0;
    const char *model = lr_fixture_metadata(fx, "model");
    if (model) sink = sink + (double)strlen(model);
    size_t n = lr_fixture_stage_count(fx);
    for (size_t i = 0; i < n; i++) {
        const lr_st_entry *e = lr_fixture_stage_at(fx, i);
        FUZZ_CHECK(e && lr_fixture_stage(fx, e->name) == e);
        FUZZ_CHECK(e->t.dtype == LR_F64 || e->t.dtype == LR_F32);
        FUZZ_CHECK(e->t.ndim == 2 && e->t.shape[0] == b->num_tokens && e->t.shape[1] >= 0);
        int64_t numel = lr_tensor_numel(&e->t);
        if (numel > 0) sink = sink + lr_tensor_get(&e->t, 0) + lr_tensor_get(&e->t, numel - 1);
    }
    FUZZ_CHECK(lr_fixture_stage_at(fx, n) == NULL);
    FUZZ_CHECK(lr_fixture_stage(fx, "input_ids") == NULL && lr_fixture_stage(fx, "positions") == NULL);
    for (size_t i = 0; i < N_CONFIGS; i++) {
        if (lr_fixture_check_config(fx, &configs[i]) != LR_OK) FUZZ_CHECK_MESSAGE("fuzz.safetensors");
    }
    lr_fixture_free(fx);
    (void)sink;
    return 0;
}
