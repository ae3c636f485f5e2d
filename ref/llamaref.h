/* llamaref.h: the public API of libllamaref, a reference and verification suite for
 * Llama-family models. One prefix (lr_), opaque handles for everything with state,
 * plain structs for configuration and options. Every fallible call returns an int
 * status (LR_OK or a negative LR_E* code) and leaves a message for lr_last_error(). */
#ifndef LLAMAREF_H
#define LLAMAREF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Status ---------------------------------------------------------------------- */

/* X(name, code, message): the one table of status codes. */
#define LR_STATUS_MAP(X)                                                                   \
    X(OK, 0, "success")                                                                    \
    X(E_NOMEM, -1, "out of memory")                                                        \
    X(E_IO, -2, "I/O error")                                                               \
    X(E_INVAL, -3, "invalid argument")                                                     \
    X(E_TRUNCATED, -4, "file truncated")                                                   \
    X(E_HEADER, -5, "malformed safetensors header")                                        \
    X(E_JSON, -6, "malformed JSON")                                                        \
    X(E_DTYPE, -7, "unsupported dtype")                                                    \
    X(E_SPAN, -8, "tensor byte span does not match its shape")                             \
    X(E_OFFSET, -9, "tensor data outside the file's data section")                         \
    X(E_OVERLAP, -10, "tensors overlap")                                                   \
    X(E_MISSING, -11, "tensor missing")                                                    \
    X(E_SHAPE, -12, "tensor shape inconsistent with the config")                           \
    X(E_CONFIG, -13, "invalid or unsupported config")                                      \
    X(E_TP, -14, "tensor-parallel size does not divide the model")                         \
    X(E_FIXTURE, -15, "invalid fixture")                                                   \
    X(E_UNEXPECTED, -16, "unexpected tensor")                                              \
    X(E_BACKEND, -17, "backend not available")                                             \
    X(E_DEVICE, -18, "device error")                                                       \
    X(E_CAPACITY, -19, "capacity exceeded")                                               \
    X(E_NONFINITE, -20, "non-finite weight")                                               \
    X(E_GGUF, -21, "malformed GGUF file")

typedef enum {
#define LR_STATUS_ENUM(name, code, msg) LR_##name = code,
    LR_STATUS_MAP(LR_STATUS_ENUM)
#undef LR_STATUS_ENUM
} lr_status;

const char *lr_status_name(int status); /* "LR_E_SPAN" */
const char *lr_strerror(int status);    /* "tensor byte span does not match its shape" */
/* The message of the last failing call on this thread: "FILE: FIELD: detail". */
const char *lr_last_error(void);

/* ---- Tensors --------------------------------------------------------------------- */

#define LR_DTYPE_MAP(X)                                                                    \
    X(F64, "F64", 8)                                                                       \
    X(F32, "F32", 4)                                                                       \
    X(F16, "F16", 2)                                                                       \
    X(BF16, "BF16", 2)                                                                     \
    X(I64, "I64", 8)                                                                       \
    X(I32, "I32", 4)

typedef enum {
#define LR_DTYPE_ENUM(name, str, size) LR_##name,
    LR_DTYPE_MAP(LR_DTYPE_ENUM)
#undef LR_DTYPE_ENUM
        LR_DTYPE_COUNT
} lr_dtype;

const char *lr_dtype_name(lr_dtype dt); /* safetensors spelling: "BF16" */
size_t lr_dtype_size(lr_dtype dt);
/* Parses "F32" etc.; returns LR_E_DTYPE for anything else. */
int lr_dtype_parse(const char *s, lr_dtype *out);

#define LR_MAX_DIMS 4

/* A view of a dense row-major tensor; it owns nothing. data may be unaligned when it
 * points into a mapped file: read elements through lr_tensor_get(). */
typedef struct {
    lr_dtype dtype;
    int ndim;
    int64_t shape[LR_MAX_DIMS];
    const void *data;
} lr_tensor;

int64_t lr_tensor_numel(const lr_tensor *t);
/* Element i (flat index) converted to double; any dtype. */
double lr_tensor_get(const lr_tensor *t, int64_t i);
/* Converts n elements of src (dtype sdt) to dst (F64, F32, or BF16/F16 with one
 * round-to-nearest-even from the source's exact value). */
void lr_convert(void *dst, lr_dtype ddt, const void *src, lr_dtype sdt, size_t n);
/* One unit in the last place of v stored in precision p (subnormals: the smallest). */
double lr_ulp(lr_dtype p, double v);

/* ---- Model config (config.json) -------------------------------------------------- */

typedef enum { LR_ROPE_DEFAULT, LR_ROPE_LINEAR, LR_ROPE_LLAMA3 } lr_rope_type;

typedef struct {
    int64_t vocab_size;
    int64_t hidden_size;
    int64_t intermediate_size;
    int64_t num_hidden_layers;
    int64_t num_attention_heads;
    int64_t num_key_value_heads; /* default: num_attention_heads */
    int64_t head_dim;            /* default: hidden_size / num_attention_heads */
    int64_t max_position_embeddings;
    double rms_norm_eps;
    bool attention_bias;
    bool mlp_bias;
    bool tie_word_embeddings;
    /* RoPE */
    lr_rope_type rope_type;
    double rope_theta;
    double rope_factor;           /* linear, llama3 */
    double rope_low_freq_factor;  /* llama3 */
    double rope_high_freq_factor; /* llama3 */
    int64_t rope_original_max_position_embeddings; /* llama3 */
    int config_style; /* 4: rope_theta/rope_scaling (transformers 4.x); 5: rope_parameters */
} lr_config;

/* Reads and validates config.json. */
int lr_config_load(const char *path, lr_config *cfg);
/* The same from memory; name labels error messages. */
int lr_config_parse(const char *json, size_t len, const char *name, lr_config *cfg);
const char *lr_rope_type_name(lr_rope_type t);

/* ---- safetensors ----------------------------------------------------------------- */

typedef struct lr_st_file lr_st_file;

typedef struct {
    const char *name;
    lr_tensor t;       /* points into the mapped file */
    uint64_t offset;   /* byte offset within the data section */
    uint64_t nbytes;
} lr_st_entry;

/* Maps and validates a safetensors file (header length, JSON, dtypes, spans, offsets,
 * overlaps). */
int lr_st_open(const char *path, lr_st_file **out);
/* The same over a caller-owned buffer that must outlive the handle; name labels errors. */
int lr_st_parse(const void *buf, size_t len, const char *name, lr_st_file **out);
void lr_st_close(lr_st_file *f);
const char *lr_st_path(const lr_st_file *f);
size_t lr_st_count(const lr_st_file *f);
const lr_st_entry *lr_st_at(const lr_st_file *f, size_t i); /* in file order */
const lr_st_entry *lr_st_find(const lr_st_file *f, const char *name);
const char *lr_st_metadata(const lr_st_file *f, const char *key); /* NULL if absent */

/* Collects tensors and metadata, then writes one safetensors file atomically
 * (a temporary name in the same folder, renamed into place). */
typedef struct lr_st_writer lr_st_writer;
int lr_st_writer_create(lr_st_writer **out);
/* Copies the data. */
int lr_st_writer_add(lr_st_writer *w, const char *name, const lr_tensor *t);
/* Does not copy: t->data must stay valid until the writer is freed. */
int lr_st_writer_add_ref(lr_st_writer *w, const char *name, const lr_tensor *t);
int lr_st_writer_set_metadata(lr_st_writer *w, const char *key, const char *value);
/* Refuses to replace an existing file unless overwrite is set. */
int lr_st_writer_write(lr_st_writer *w, const char *path, bool overwrite);
void lr_st_writer_free(lr_st_writer *w);

/* ---- GGUF (llama.cpp's single-file format, v2 and v3) ----------------------------- */

typedef struct lr_gguf_file lr_gguf_file;

/* ggml tensor types this library dequantizes (every other type the specification lists
 * is recognised, so its spans are checked, and refused when loaded). */
enum {
    LR_GGML_F32 = 0,
    LR_GGML_F16 = 1,
    LR_GGML_Q4_0 = 2,
    LR_GGML_Q4_1 = 3,
    LR_GGML_Q8_0 = 8,
    LR_GGML_Q2_K = 10, /* the K-quants: super-blocks of 256 */
    LR_GGML_Q3_K = 11,
    LR_GGML_Q4_K = 12,
    LR_GGML_Q5_K = 13,
    LR_GGML_Q6_K = 14,
    LR_GGML_Q8_K = 15,
    LR_GGML_BF16 = 30,
};

/* A tensor as the file stores it: ggml order, ne[0] the contiguous dimension (a
 * Hugging Face [out, in] weight is ne = {in, out}). */
typedef struct {
    const char *name; /* blk.0.attn_q.weight */
    uint32_t type;    /* ggml type */
    int ndim;
    int64_t ne[LR_MAX_DIMS];
    uint64_t offset; /* within the data section */
    uint64_t nbytes;
    const void *data; /* points into the file */
} lr_gguf_tensor;

/* Maps and validates a GGUF file: magic, version, counts and string lengths against the
 * file size, metadata value types (nested arrays too), duplicate keys, general.alignment,
 * and every tensor info (name, n_dims, dims, element count, type, block divisibility,
 * aligned offset inside the file, no duplicates, no overlaps). */
int lr_gguf_open(const char *path, lr_gguf_file **out);
/* The same over a caller-owned buffer that must outlive the handle; name labels errors. */
int lr_gguf_parse(const void *buf, size_t len, const char *name, lr_gguf_file **out);
void lr_gguf_close(lr_gguf_file *f);
const char *lr_gguf_path(const lr_gguf_file *f);
uint32_t lr_gguf_version(const lr_gguf_file *f);
uint64_t lr_gguf_alignment(const lr_gguf_file *f);
size_t lr_gguf_kv_count(const lr_gguf_file *f);
const char *lr_gguf_kv_key(const lr_gguf_file *f, size_t i); /* in file order */
/* A string value, copied into out (cap bytes, NUL-terminated). */
int lr_gguf_string(const lr_gguf_file *f, const char *key, char *out, size_t cap);
size_t lr_gguf_tensor_count(const lr_gguf_file *f);
const lr_gguf_tensor *lr_gguf_tensor_at(const lr_gguf_file *f, size_t i); /* file order */
const lr_gguf_tensor *lr_gguf_find_tensor(const lr_gguf_file *f, const char *name);
int64_t lr_gguf_numel(const lr_gguf_tensor *t);
/* "Q4_1", or NULL for a number that is not a ggml type. */
const char *lr_ggml_type_name(uint32_t type);
bool lr_ggml_type_supported(uint32_t type);

/* The llama.* metadata as a model config, validated by the rules config.json gets. */
int lr_gguf_config(const lr_gguf_file *f, lr_config *cfg);
/* The Hugging Face name of a llama GGUF tensor (blk.3.attn_q.weight ->
 * model.layers.3.self_attn.q_proj.weight); LR_E_UNEXPECTED for other names. */
int lr_gguf_hf_name(const char *gguf_name, char *out, size_t cap);
/* The tensor's lr_gguf_numel() values as float32, exactly as ggml and the gguf package
 * dequantize them; LR_E_DTYPE for a type not supported. */
int lr_gguf_dequantize(const lr_gguf_tensor *t, float *out);
/* Undoes llama.cpp's q/k row permutation in place: w is (rows, cols), rows = n_head *
 * head size (n_head: attention heads for q, KV heads for k; cols 1 for a bias). */
int lr_gguf_unpermute(float *w, int64_t rows, int64_t cols, int64_t n_head);

/* ---- Writing files ---------------------------------------------------------------- */

/* Writes path through a temporary file beside it: fill(f, user) writes the content and
 * returns 0 (nonzero abandons the write), then the file is flushed, synced and moved
 * into place: renamed over an existing file when overwrite is set, else linked, so an
 * existing file is never replaced ("already exists"). No temporary file survives, and a
 * failed write leaves whatever was at path untouched. */
typedef int (*lr_write_fn)(FILE *f, void *user);
int lr_write_file_atomic(const char *path, bool overwrite, lr_write_fn fill, void *user);

/* ---- Checkpoint (a Hugging Face model directory, or a GGUF file) ----------------- */

typedef struct lr_checkpoint lr_checkpoint;

/* Opens config.json and model.safetensors (or the shards of
 * model.safetensors.index.json), and checks that every tensor the config implies is
 * there with the right shape, and that nothing unexpected is. path may also be a GGUF
 * file: its metadata gives the config, and its tensors, renamed, dequantized to F32 and
 * with q/k unpermuted, are held by the checkpoint and checked the same way. */
int lr_checkpoint_open(const char *path, lr_checkpoint **out);
void lr_checkpoint_close(lr_checkpoint *ck);
const lr_config *lr_checkpoint_config(const lr_checkpoint *ck);
const char *lr_checkpoint_dir(const lr_checkpoint *ck);
/* The HF tensor by name, or NULL. A GGUF file's tensor is dequantized when first found. */
const lr_st_entry *lr_checkpoint_find(const lr_checkpoint *ck, const char *name);
/* The same without reading the data: its name, dtype and shape (a GGUF file's tensor:
 * F32, its data NULL until found), or NULL. */
const lr_st_entry *lr_checkpoint_peek(const lr_checkpoint *ck, const char *name);
/* The file holding a tensor (for messages). */
const char *lr_checkpoint_file_of(const lr_checkpoint *ck, const char *name);
/* Writes the checkpoint as a Hugging Face directory: dir/config.json and
 * dir/model.safetensors (every tensor as F32, lm_head omitted when tied), each through a
 * temporary file renamed into place. dir is created if missing; existing files are
 * refused unless overwrite is set. */
int lr_checkpoint_save(const lr_checkpoint *ck, const char *dir, bool overwrite);

/* ---- Tensor-parallel layout, packing and sharding (vLLM's rules) ----------------- */

#define LR_VOCAB_PADDING 64

/* What one rank holds. */
typedef struct {
    int tp_size, tp_rank;
    int64_t num_heads;      /* q heads on this rank */
    int64_t num_kv_heads;   /* kv heads on this rank (1 when replicated) */
    int64_t kv_replicas;    /* ranks sharing one kv head (1 when not replicated) */
    int64_t kv_head_start;  /* first global kv head held */
    int64_t q_size;         /* num_heads * head_dim */
    int64_t kv_size;        /* num_kv_heads * head_dim */
    int64_t intermediate;   /* intermediate_size / tp */
    int64_t vocab_padded;   /* vocab rounded up to LR_VOCAB_PADDING */
    int64_t vocab_shard;    /* vocab_padded / tp rows per rank */
    int64_t vocab_start;    /* first padded-vocab row held */
} lr_tp_layout;

/* Fails with LR_E_TP naming what tp does not divide. */
int lr_tp_layout_make(const lr_config *cfg, int tp_size, int tp_rank, lr_tp_layout *out);

/* One rectangular copy from an HF tensor into a packed tensor. 1-D tensors use
 * col0 = 0, cols = 1. */
typedef struct {
    char src[128];
    int64_t src_row0, src_col0;
    int64_t dst_row0;
    int64_t rows, cols;
} lr_slice;

/* A packed, sharded tensor as vLLM holds it on one rank. Rows not covered by any
 * slice (vocabulary padding) are zero. */
typedef struct {
    char name[128];       /* vLLM name: model.layers.0.self_attn.qkv_proj.weight */
    int ndim;
    int64_t shape[2];
    int nslices;
    lr_slice slices[3];
    int tied_to;          /* index of the packed tensor this one reuses, or -1 */
} lr_packed_desc;

typedef struct lr_plan lr_plan;

/* The packing and sharding plan of one rank: every packed tensor and its sources. */
int lr_plan_create(const lr_config *cfg, int tp_size, int tp_rank, lr_plan **out);
void lr_plan_free(lr_plan *p);
const lr_tp_layout *lr_plan_layout(const lr_plan *p);
size_t lr_plan_count(const lr_plan *p);
const lr_packed_desc *lr_plan_at(const lr_plan *p, size_t i);
/* Index of the packed tensor with that name, or -1. */
int lr_plan_index(const lr_plan *p, const char *name);

/* The Hugging Face tensors of a decoder layer, once: X(ID, suffix, rows, cols, when),
 * named "model.layers.{i}." suffix, in checkpoint-walk order; rows and cols are
 * lr_stage_width_unit names (cols NONE: a 1-D tensor); when: ALWAYS, or only with the
 * config's ATTENTION_BIAS or MLP_BIAS. */
#define LR_HF_LAYER_WEIGHT_MAP(X)                                                          \
    X(INPUT_LAYERNORM, "input_layernorm.weight", HIDDEN, NONE, ALWAYS)                     \
    X(Q_PROJ_W, "self_attn.q_proj.weight", Q, HIDDEN, ALWAYS)                              \
    X(K_PROJ_W, "self_attn.k_proj.weight", KV, HIDDEN, ALWAYS)                             \
    X(V_PROJ_W, "self_attn.v_proj.weight", KV, HIDDEN, ALWAYS)                             \
    X(O_PROJ_W, "self_attn.o_proj.weight", HIDDEN, Q, ALWAYS)                              \
    X(Q_PROJ_B, "self_attn.q_proj.bias", Q, NONE, ATTENTION_BIAS)                          \
    X(K_PROJ_B, "self_attn.k_proj.bias", KV, NONE, ATTENTION_BIAS)                         \
    X(V_PROJ_B, "self_attn.v_proj.bias", KV, NONE, ATTENTION_BIAS)                         \
    X(O_PROJ_B, "self_attn.o_proj.bias", HIDDEN, NONE, ATTENTION_BIAS)                     \
    X(POST_ATTENTION_LAYERNORM, "post_attention_layernorm.weight", HIDDEN, NONE, ALWAYS)   \
    X(GATE_PROJ_W, "mlp.gate_proj.weight", INTERMEDIATE, HIDDEN, ALWAYS)                   \
    X(UP_PROJ_W, "mlp.up_proj.weight", INTERMEDIATE, HIDDEN, ALWAYS)                       \
    X(DOWN_PROJ_W, "mlp.down_proj.weight", HIDDEN, INTERMEDIATE, ALWAYS)                   \
    X(GATE_PROJ_B, "mlp.gate_proj.bias", INTERMEDIATE, NONE, MLP_BIAS)                     \
    X(UP_PROJ_B, "mlp.up_proj.bias", INTERMEDIATE, NONE, MLP_BIAS)                         \
    X(DOWN_PROJ_B, "mlp.down_proj.bias", HIDDEN, NONE, MLP_BIAS)

typedef enum {
#define LR_HW_ENUM(id, suffix, rows, cols, when) LR_HW_##id,
    LR_HF_LAYER_WEIGHT_MAP(LR_HW_ENUM)
#undef LR_HW_ENUM
        LR_HF_LAYER_WEIGHT_COUNT
} lr_hf_layer_weight;

/* "model.layers.{layer}." suffix of a Hugging Face tensor into buf of n bytes; buf. */
char *lr_hf_layer_weight_name(char *buf, size_t n, int64_t layer, lr_hf_layer_weight w);

/* The packed weights, once. X(ID, suffix): a decoder layer's packed tensors, named
 * "model.layers.{i}." suffix; biases exist only when the config has them. */
#define LR_LAYER_WEIGHT_MAP(X)                                                             \
    X(INPUT_LAYERNORM, "input_layernorm.weight")                                           \
    X(QKV_W, "self_attn.qkv_proj.weight")                                                  \
    X(QKV_B, "self_attn.qkv_proj.bias")                                                    \
    X(O_W, "self_attn.o_proj.weight")                                                      \
    X(O_B, "self_attn.o_proj.bias")                                                        \
    X(POST_ATTENTION_LAYERNORM, "post_attention_layernorm.weight")                         \
    X(GATE_UP_W, "mlp.gate_up_proj.weight")                                                \
    X(GATE_UP_B, "mlp.gate_up_proj.bias")                                                  \
    X(DOWN_W, "mlp.down_proj.weight")                                                      \
    X(DOWN_B, "mlp.down_proj.bias")
/* X(ID, name): the model's packed tensors outside the layers. */
#define LR_MODEL_WEIGHT_MAP(X)                                                             \
    X(EMBED, "model.embed_tokens.weight")                                                  \
    X(NORM, "model.norm.weight")                                                           \
    X(LM_HEAD, "lm_head.weight")

typedef enum {
#define LR_LW_ENUM(id, suffix) LR_LW_##id,
    LR_LAYER_WEIGHT_MAP(LR_LW_ENUM)
#undef LR_LW_ENUM
        LR_LAYER_WEIGHT_COUNT
} lr_layer_weight;

typedef enum {
#define LR_MW_ENUM(id, name) LR_MW_##id,
    LR_MODEL_WEIGHT_MAP(LR_MW_ENUM)
#undef LR_MW_ENUM
        LR_MODEL_WEIGHT_COUNT
} lr_model_weight;

/* Plan indices of one layer's packed tensors (-1: absent), the same on every rank. */
typedef struct {
    int at[LR_LAYER_WEIGHT_COUNT];
} lr_layer_index;

const char *lr_layer_weight_suffix(lr_layer_weight w); /* "self_attn.qkv_proj.weight" */
const char *lr_model_weight_name(lr_model_weight w);   /* "model.embed_tokens.weight" */
/* The plan indices of layer l's packed tensors (NULL when l is out of range). */
const lr_layer_index *lr_plan_layer(const lr_plan *p, int64_t l);
/* The plan index of a model-level packed tensor. */
int lr_plan_model(const lr_plan *p, lr_model_weight w);

/* Materialises a plan: each packed tensor in the compute dtype (F64 or F32),
 * converted once, in plan order. */
typedef struct lr_weights lr_weights;
int lr_weights_build(const lr_checkpoint *ck, const lr_plan *p, lr_dtype dtype,
                     lr_weights **out);
void lr_weights_free(lr_weights *w);
const lr_plan *lr_weights_plan(const lr_weights *w);
lr_dtype lr_weights_dtype(const lr_weights *w);
/* The packed tensor at plan index i (tied tensors share data). */
const lr_tensor *lr_weights_at(const lr_weights *w, size_t i);
const lr_tensor *lr_weights_get(const lr_weights *w, const char *name);

/* A packed tensor read in pieces, so that a loader needs a bounded buffer, not the
 * tensor (the CUDA loader's pinned staging; lr_weights_build reads through the same
 * functions with no bound). A chunk is `count` consecutive elements of slice `slice`,
 * row-major over the slice's rows x cols from element `elem0`, landing at element `dst0`
 * of the packed tensor (row-major over its shape). A chunk holds at most the capacity it
 * was planned with; where a slice is narrower than its packed tensor a chunk stays
 * within one row, so its destination is always contiguous. */
typedef struct {
    int slice;
    int64_t elem0, count;
    int64_t dst0;
} lr_chunk;

/* The chunk after *c (start from a zeroed lr_chunk), of at most `capacity` elements (at
 * least 1); false past the last one. Empty slices are skipped. */
bool lr_packed_next_chunk(const lr_packed_desc *d, int64_t capacity, lr_chunk *c);
/* Reads chunk c of d from the checkpoint into dst (c->count elements), converted to dt
 * (F64 or F32) exactly as lr_weights_build converts it, NaN and Inf refused with the
 * same message (file, tensor, element). */
int lr_packed_read_chunk(const lr_checkpoint *ck, const lr_packed_desc *d, const lr_chunk *c, lr_dtype dt,
                         void *dst);

/* ---- Running a model --------------------------------------------------------------- */

/* Tokens of all sequences, concatenated. positions are per token, within its sequence.
 * seq_lens (num_seqs entries) splits the tokens; NULL means one sequence. seq_ids
 * names each sequence's KV-cache slot; NULL means 0..num_seqs-1. */
typedef struct {
    const int64_t *input_ids; /* (T) */
    const int64_t *positions; /* (T) */
    const int64_t *seq_lens;  /* (B) or NULL */
    const int64_t *seq_ids;   /* (B) or NULL */
    int64_t num_tokens;
    int64_t num_seqs;
} lr_batch;

/* Called once per stage per forward, stage names as in the fixture spec, the tensor
 * whole (gathered over tp ranks), valid only during the call. */
typedef void (*lr_stage_fn)(void *user, const char *stage, const lr_tensor *t);
/* Layer isolation: asked before each decoder layer for the residual stream entering it
 * (stage "model.embed_tokens" for layer 0, "model.layers.{i-1}" for layer i, and
 * "model.layers.{L-1}" before the final norm); a (T, hidden) tensor of any float dtype
 * replaces the computed one, NULL keeps it. */
typedef const lr_tensor *(*lr_inject_fn)(void *user, const char *stage);
/* How far isolation goes when inject is set. LAYER: the residual stream before each layer
 * and the final norm. OP: also every op's input (the stage that feeds it: qkv_proj gets
 * input_layernorm, RoPE gets q_proj/k_proj/v_proj, o_proj gets o_proj.input, the
 * post-attention norm gets the layer's input stream and self_attn, gate_up_proj gets
 * post_attention_layernorm, SiluAndMul gets gate_proj/up_proj, down_proj gets
 * down_proj.input; lr_model_compute_logits' LM head gets model.norm), rounded to the
 * backend's dtype for that buffer, so each op's error is its own. RoPE and attention are
 * isolated together (no stage holds q and k after RoPE); an op whose input stage inject
 * does not have runs on its own input. */
typedef enum { LR_ISOLATE_LAYER, LR_ISOLATE_OP } lr_isolation;
typedef struct {
    lr_stage_fn on_stage; /* optional */
    void *user;
    lr_inject_fn inject;  /* optional */
    lr_isolation isolation;
} lr_observer;

typedef struct {
    const char *backend;  /* "cpu" (default) or "cuda" */
    lr_dtype precision;   /* cpu: F64 or F32, or BF16/F16 emulated (docs/architecture.md,
                           * "The rounding map"); cuda: BF16, F16 or F32 */
    int tp_size;          /* default 1 */
    int num_threads;      /* cpu: BLAS threads; 0: 1 thread, for bitwise determinism */
    /* cuda: GPUs to spread the tp ranks over: 0 picks tp GPUs over NCCL when the host has
     * them, else runs every rank on GPU 0 in turn (the single-GPU tp mode); 1 forces the
     * single-GPU mode. */
    int num_devices;
    /* cuda: kernel variants, "family=name,..." (e.g. "rmsnorm=warp"); NULL: defaults. */
    const char *kernels;
    /* cpu: bytes of converted weights to hold at once (the weight cache); 0: a tenth
     * of physical memory. Weights that fit are converted when the model is created;
     * otherwise each layer's are converted when it runs, the least recently used
     * released, and the embedding and LM head read by rows: the checkpoint must then
     * stay open while the model lives (docs/architecture.md, "The CPU backend's
     * weights"). The numbers are the same whatever the budget. */
    uint64_t memory_budget;
    /* cpu, f32 and the emulated bf16/fp16: each linear layer's dot products accumulated in
     * float64 and rounded once to float32, instead of in BLAS's float32 order, and so the
     * attention scores where P is rounded (the tiled kernel's q.k). Another
     * correct order, for testing on the CPU that a same-precision verdict tolerates what
     * a GPU's order does (llama-diff: LR_CPU_F64_PRODUCTS=1 on the side under test). */
    bool cpu_f64_products;
    /* cpu, the emulated bf16/fp16: where the ops round, a rounding profile's name
     * (ref/core/rounding.h: "cuda", the rounding map, the CUDA path's; "transformers" and
     * "transformers-eager", Hugging Face transformers on the CPU with sdpa or eager
     * attention); NULL: the map. An unknown name, a profile other than the map on another
     * backend or at f32/f64: LR_E_INVAL (docs/architecture.md, "Rounding profiles"). */
    const char *rounding;
    /* cpu, the emulated bf16/fp16 under the map's attention: round the probabilities P
     * where this attention variant rounds them (a name in the rounding map,
     * LR_ATTN_ROUNDING_MAP, or one a kernel plugin declared: lr_attention_rounds_p), so
     * that the emulated reference is the yardstick of a CUDA run of that variant ("flash"
     * and "simple" keep P in float32, "fa2" rounds it); NULL: the default variant's. An
     * undeclared name: LR_E_INVAL. */
    const char *attention_like;
    /* cuda: replay each decode step (every sequence one new token) as a CUDA graph,
     * captured once per batch shape (number of sequences) after one eager warm-up step
     * of that shape. Steps with an observer (on_stage or inject: stage copies, layer
     * isolation), faults, profiling, a prefill or a kernel plugin's variant run eagerly
     * (docs/performance.md, "Decode with CUDA graphs"). Off by default: not yet validated
     * on a GPU. The numbers are the same either way (bitwise). */
    bool cuda_graphs;
} lr_options;

void lr_options_init(lr_options *o);

/* What a backend built into this library supports, so that tools need not know. */
typedef struct {
    const char *name;         /* "cpu", "cuda": lr_options.backend */
    bool built;               /* compiled into this library (others are known, not runnable) */
    const char *description;
    lr_dtype precisions[4];   /* supported compute precisions, the default first */
    int num_precisions;
    bool kernel_variants;     /* takes lr_options.kernels */
    bool multi_device;        /* spreads tp ranks over devices (lr_options.num_devices) */
    bool profiling;           /* lr_model_set_profiling works */
    bool blas_threads;        /* takes lr_options.num_threads (host BLAS threads) */
    bool graphs;              /* takes lr_options.cuda_graphs (decode steps as CUDA graphs) */
    bool rounding_profiles;   /* takes lr_options.rounding (its emulated bf16/fp16) */
} lr_backend_info;

/* The backends this library knows, built in or not, in a fixed order (the CPU reference
 * first). */
size_t lr_backend_count(void);
const lr_backend_info *lr_backend_at(size_t i);
/* The backend of that name, built in or not, or NULL (lr_last_error() lists them). */
const lr_backend_info *lr_backend_find(const char *name);
/* Whether the backend computes in precision p. */
bool lr_backend_supports(const lr_backend_info *b, lr_dtype p);

typedef struct lr_model lr_model;
typedef struct lr_kv_cache lr_kv_cache;

/* Builds the backend over the packed, sharded weights of every rank. The CPU backend
 * reads ck while the model lives when its converted weights exceed
 * lr_options.memory_budget: close the checkpoint after lr_model_free. */
int lr_model_create(const lr_checkpoint *ck, const lr_options *opt, lr_model **out);
void lr_model_free(lr_model *m);
const lr_config *lr_model_config(const lr_model *m);
lr_dtype lr_model_precision(const lr_model *m);
/* GPUs the model runs on: 0 for the CPU reference; for cuda 1 in the single-GPU tp mode,
 * tp when the ranks are spread over tp GPUs through NCCL. */
int lr_model_num_devices(const lr_model *m);

/* What a model holds on its devices (lr_model_memory), and for the CPU reference its
 * weight cache (host memory; device fields 0). The host's own peak is the process's
 * (lr_host_peak_rss). */
typedef struct {
    uint64_t device_weights; /* bytes allocated for the weights on every GPU, summed */
    uint64_t device_used;    /* the GPUs' memory in use right after loading (cudaMemGetInfo's
                              * total - free, summed over the GPUs the model runs on: the
                              * CUDA context, cuBLAS and other processes count too) */
    uint64_t load_staging;   /* host bytes the loader staged through (pinned, freed after) */
    /* cpu: the weight cache (lr_options.memory_budget); 0 for cuda */
    uint64_t host_weights_budget;    /* its budget in bytes */
    uint64_t host_weights_total;     /* every rank's converted weights, were all held */
    uint64_t host_weights_peak;      /* the most converted weight bytes held at once so far
                                      * (row blocks of the embedding and LM head included) */
    uint64_t host_weights_converted; /* bytes converted so far (more than total: reconverted) */
} lr_memory;
int lr_model_memory(const lr_model *m, lr_memory *out);
/* The process's peak resident set so far, in bytes (getrusage's ru_maxrss), 0 if unknown. */
uint64_t lr_host_peak_rss(void);
/* A value of /proc/self/status in KiB ("VmRSS": the resident set now; "VmHWM": its peak,
 * which lr_host_peak_rss_reset lowers to the current one), -1 where unknown. */
long lr_host_status_kib(const char *key);
/* Resets VmHWM to the current resident set; false where the kernel does not allow it
 * (then the peak is the process's since it started). */
bool lr_host_peak_rss_reset(void);

/* A cache for max_seqs sequences of at most max_len tokens each. */
int lr_kv_cache_create(lr_model *m, int64_t max_seqs, int64_t max_len, lr_kv_cache **out);
void lr_kv_cache_free(lr_kv_cache *c);
/* Forgets the tokens of every sequence. */
void lr_kv_cache_reset(lr_kv_cache *c);

/* LlamaForCausalLM.forward: appends the batch's tokens to each sequence's cache (a
 * temporary cache when cache is NULL) and returns the final hidden states (T, hidden)
 * in the model's precision, valid until the next call. */
int lr_model_forward(lr_model *m, const lr_batch *b, lr_kv_cache *cache,
                     const lr_observer *obs, lr_tensor *hidden);
/* lr_model_forward, returning the final hidden states of the batch's rows rows[0..n) alone:
 * (n, hidden), row i that of token rows[i] (repeats allowed), bit for bit what
 * lr_model_forward returns for it. For a caller that wants the logits of a few tokens,
 * each sequence's last in a prefill, as vLLM keeps its logits indices alone: the CUDA
 * backend then copies those rows off the device and no others. Observers still see every
 * stage whole. rows[i] in 0..num_tokens-1, n in 1..num_tokens; else LR_E_INVAL naming
 * the row, before any work. */
int lr_model_forward_rows(lr_model *m, const lr_batch *b, lr_kv_cache *cache, const lr_observer *obs,
                          const int64_t *rows, int64_t n, lr_tensor *hidden);
/* LlamaForCausalLM.compute_logits: (T, vocab) logits of the unpadded vocabulary, valid
 * until the next call. Reports the lm_head stage. Under op isolation (obs->inject with
 * LR_ISOLATE_OP) the head multiplies inject's model.norm, where it gives one of hidden's
 * shape, instead of hidden. */
int lr_model_compute_logits(lr_model *m, const lr_tensor *hidden, const lr_observer *obs,
                            lr_tensor *logits);
/* Greedy decoding's choice after a forward: tokens[t] (T of them) the index of the
 * largest of row t's logits, the lowest index among equals, a NaN counting as larger than
 * any number (torch.argmax's rule); exactly the argmax of lr_model_compute_logits'
 * logits of the same hidden. The CUDA backend keeps the logits on the device and copies
 * the T indices alone (its share of them from each rank); with an observer it runs
 * lr_model_compute_logits (which reports the lm_head stage) and takes the argmax of its
 * logits on the host. */
int lr_model_greedy(lr_model *m, const lr_tensor *hidden, const lr_observer *obs, int64_t *tokens);

/* ---- Profiling ---------------------------------------------------------------------- */

/* X(name, label): the op kinds a backend times when profiling is on, in forward order.
 * The five projections and the LM head are the GEMMs; attention includes the cache
 * writes, both per-head GEMMs and the softmax; setup is scratch allocation. */
#define LR_PROF_MAP(X)                                                                     \
    X(SETUP, "setup")                                                                      \
    X(EMBEDDING, "embedding")                                                              \
    X(RMS_NORM, "rms_norm")                                                                \
    X(QKV_PROJ, "qkv_proj")                                                                \
    X(ROTARY, "rotary")                                                                    \
    X(ATTENTION, "attention")                                                              \
    X(O_PROJ, "o_proj")                                                                    \
    X(GATE_UP_PROJ, "gate_up_proj")                                                        \
    X(SILU_AND_MUL, "silu_and_mul")                                                        \
    X(DOWN_PROJ, "down_proj")                                                              \
    X(ALL_REDUCE, "all_reduce")                                                            \
    X(LM_HEAD, "lm_head")

typedef enum {
#define LR_PROF_ENUM(name, label) LR_PROF_##name,
    LR_PROF_MAP(LR_PROF_ENUM)
#undef LR_PROF_ENUM
        LR_PROF_COUNT
} lr_prof_op;

const char *lr_prof_op_name(lr_prof_op op); /* "qkv_proj" */

/* Time accumulated per op kind and how often it ran. CPU: the monotonic clock around
 * each op (wall time). CUDA: GPU 0's stream, timed with events between consecutive ops
 * (so an op's time includes the launch gap before it); with several GPUs an all-reduce
 * includes the wait for the slowest GPU. Copies for observers are charged to nothing. */
typedef struct {
    uint64_t ns[LR_PROF_COUNT];
    uint64_t calls[LR_PROF_COUNT];
} lr_profile;

/* Per-op timing in the backend, off by default; when off the forward pass reads no
 * clock. Turning it on zeroes the counters. Both backends have it (LR_E_BACKEND for one
 * that has none). */
int lr_model_set_profiling(lr_model *m, bool on);
/* The counters accumulated since profiling was last turned on. */
int lr_model_get_profile(const lr_model *m, lr_profile *out);

/* ---- CUDA graphs (lr_options.cuda_graphs) -------------------------------------------- */

/* What the decode steps of a model did since it was created. A batch shape is captured
 * after one eager warm-up step of it, and captured again after its graph was dropped. */
typedef struct {
    uint64_t captures;      /* graphs captured */
    uint64_t replays;       /* decode steps run by replaying a graph */
    uint64_t warmups;       /* decode steps run eagerly to warm a shape up before capture */
    uint64_t eager_steps;   /* decode steps run eagerly because graphs could not be used
                             * (an observer, faults, profiling, a plugin variant) */
    uint64_t invalidations; /* graphs dropped: the KV cache reset or freed, device scratch
                             * reallocated by a larger batch, or a full table */
} lr_graph_stats;
/* All zero for a model without lr_options.cuda_graphs; LR_E_BACKEND for a backend
 * without graphs (the CPU reference). */
int lr_model_graph_stats(const lr_model *m, lr_graph_stats *out);

/* ---- The same-precision yardstick (docs/detection.md) -------------------------------- */

/* How far a correct bf16/fp16 kernel may be from the emulated reference when both get
 * the same (op-isolated) inputs: a relative L2, and per element a number of ulps of the
 * precision at the reference value (values under floor x the row's RMS count at that
 * size, so that cancellation in a sum does not count against its ulp). */
typedef struct {
    double rel_l2, ulps, floor;
    double small;   /* a stage of n elements may also reach small / sqrt(n) ulps of relative L2 */
    int64_t spare;  /* elements a stage may have over ulps (and spare_share of its elements) ... */
    double cap;     /* ... as long as none is over cap ulps */
    double spare_share;
    /* attention: elements count at floor x their feature's RMS over the tokens (4 or more)
     * instead of their row's: an output is a weighted mean of the values' feature, whose
     * scale is what order and P's flips move it by, and a feature far smaller than its row
     * (SmolLM2's last of 576, a tenth of the row's RMS) is then still held to its own ulps */
    bool floor_by_feature;
    double flip_share; /* the share of roundings float32 order alone moves by one ulp */
} lr_same_budget;

typedef struct {
    double rel_l2;                   /* ||a-b|| / ||b|| */
    double clipped;                  /* the same, judged: the worst element one ulp at most, a massive
                                      * activation (LR_SAME_MASSIVE) left out */
    double budget;                   /* what clipped may reach in this stage (its size counts) */
    double max_ulps;                 /* the largest element difference, in ulps */
    int64_t worst_token, worst_feature;
    int64_t over;                    /* elements over the ulp bound */
    int64_t nonfinite;               /* NaN or Inf on one side only */
    bool pass;
    int64_t flips;                   /* elements half an ulp or more apart (a rounding moved) */
    double flips_expected;           /* how many float32 order explains: sum of each element's
                                      * flip_share + accumulation bound / ulp, at most 1 */
} lr_same_metrics;

/* An element holding this share of a stage's squared norm or more (a trained model's
 * massive activation: SmolLM2's token 0, channel 507, about 2.5e4, 98% of its stream from
 * layer 11 on) is judged by the per-element bound alone: one rounding of it, on either
 * side, would be the whole relative L2 (the H200 at fp16: 9.7 times the emulated
 * reference's error against the golden, from that one element). */
#define LR_SAME_MASSIVE 0.25
/* The flat index of ref's massive activation, -1 where it has none. */
int64_t lr_same_massive(const lr_tensor *ref);

/* The longest float32 reduction a stage of this model sums (hidden, intermediate, q
 * width, tokens of context). */
int64_t lr_same_reduction(const lr_config *cfg, int64_t tokens);
/* The budget at precision p for reductions of that length (docs/detection.md says why). */
lr_same_budget lr_same_precision_budget(lr_dtype p, int64_t reduction);
int lr_same_compare(const lr_tensor *test, const lr_tensor *ref, lr_dtype p, lr_same_budget b, lr_same_metrics *m);
/* Attention's budget (the o_proj.input stage): its reductions are the head (Q K^T) and the
 * keys (P V); a kernel that rounds P to the dtype before P V (lr_attention_rounds_p)
 * rounds twice, which one rounding's budget does not hold (docs/detection.md). x_range:
 * the largest |x| of P = 2^x that matters (LR_SAME_P_RANGE when unknown). */
#define LR_SAME_P_RANGE 16.0
lr_same_budget lr_same_attention_budget(lr_dtype p, int64_t head_dim, int64_t keys, bool rounds_p, double x_range);
/* A sum of terms each rounded to p (a decoder layer's output: the stream plus the
 * attention's and the MLP's outputs, in float32): each element may differ by the terms'
 * flips, so its ulps are counted in ulp(ref) + the sum of the terms' ulps there. */
int lr_same_compare_sum(const lr_tensor *test, const lr_tensor *ref, const lr_tensor *const *terms, int nterms,
                        lr_dtype p, lr_same_budget b, lr_same_metrics *m);
/* A matrix product's output (a projection): each element may also differ by what float32
 * order moves it before rounding, acc (the stage's shape, absolute), counted beside its ulp
 * and in the relative L2 the stage may reach (twice the RMS those moves explain, where
 * that is more than b's). acc from lr_same_accumulation_bound. */
int lr_same_compare_acc(const lr_tensor *test, const lr_tensor *ref, const lr_tensor *acc, lr_dtype p,
                        lr_same_budget b, lr_same_metrics *m);
/* out (T, N) = sqrt(K) ACC_UNIT sqrt(sum_k (x_tk w_nk)^2): how far two float32 orders of the
 * product x (T, K) w (N, K)^T may move each output, by the root-sum-square of its terms
 * (where they cancel, far more than the output's own ulp). */
int lr_same_accumulation_bound(double *out, const float *x, const float *w, int64_t T, int64_t N, int64_t K);
/* Attention where the kernel rounds P (lr_attention_rounds_p): each element's cap in ulps
 * (b.cap) is counted beyond jump (the stage's shape, absolute), the largest move one flip
 * of one weight's rounding makes there (lr_same_attention_flip_bound); the count over
 * b.ulps and the relative L2 are lr_same_compare's. */
int lr_same_compare_flips(const lr_tensor *test, const lr_tensor *ref, const lr_tensor *jump, lr_dtype p,
                          lr_same_budget b, lr_same_metrics *m);
/* One query row of that bound, against the n keys it sees (a KV cache's past keys and the
 * causal ones alike): out (hd) = max_j ulp_p(P_j) |v_j - o| / sum P, P_j = exp(s_j - max s),
 * s_j = q . k_j / sqrt(hd), all in float64. q, o: the row's (hd); k, v: row j at k + j ld,
 * its kv head's hd values (the caller offsets them to the head). divide: s_j as the dot
 * divided by sqrt(hd), else times 1 / sqrt(hd), which rounds apart in the last bit (the op
 * sweep divides, lr_same_attention_flip_bound multiplies; each keeps its numbers). w:
 * scratch of n. Returns the row's largest |s_j|. */
double lr_same_flip_row(double *out, const double *q, const double *k, const double *v, int64_t ld,
                        const double *o, int64_t n, int64_t hd, bool divide, lr_dtype p, double *w);
/* out (T, heads x head_dim) for attention's stage of batch b (every sequence from position
 * 0, under the causal mask): per output element max_j ulp_p(P_j) |v_j - o| / sum P, P_j =
 * exp(s_j - max s) in float64, the most one flip of one rounded weight moves it. q, k, v:
 * the stages q_proj, k_proj, v_proj (before RoPE, which is applied here as the rounding
 * map's), o: attention's output, each (T, width). *applies false (out untouched) where a
 * sequence of b does not start at position 0. */
int lr_same_attention_flip_bound(double *out, const lr_config *cfg, const lr_batch *b, const lr_tensor *q,
                                 const lr_tensor *k, const lr_tensor *v, const lr_tensor *o, lr_dtype p,
                                 bool *applies);

/* ---- Fault injection (what the suite catches; docs/detection.md) --------------------- */

/* How a fault perturbs the output of the op that computes its stage, in place (so every
 * later op sees it): scale: every element x (1 + eps); element: the last feature of every
 * token x (1 + eps); noise: every element x (1 + eps u), u uniform with mean 0 and RMS 1,
 * drawn from (seed, token, feature).
 * Structural faults change how the op computes instead, as a wrong kernel would:
 *   theta (at self_attn.o_proj.input: RoPE and attention): rope_theta x (1 + eps);
 *   rms_eps (at a norm: input_layernorm, post_attention_layernorm, model.norm):
 *     rms_norm_eps x (1 + eps);
 *   mask (at self_attn.o_proj.input): the causal mask off by eps (+1 or -1): query j sees
 *     keys 0 .. past + j + eps, within the keys present and never none (lr_causal_keys);
 *   stale_kv (at self_attn.o_proj.input): in a batch that continues a sequence (decode),
 *     each new token's cache entry holds the entry eps (an integer >= 1) positions before
 *     it instead of its own key and value (lr_stale_kv_source);
 *   swap_heads (at self_attn.o_proj.input): attention's outputs of query heads eps and
 *     eps + 1 (an integer) swapped. */
typedef enum {
    LR_FAULT_SCALE,
    LR_FAULT_ELEMENT,
    LR_FAULT_NOISE,
    LR_FAULT_THETA,
    LR_FAULT_RMS_EPS,
    LR_FAULT_MASK,
    LR_FAULT_STALE_KV,
    LR_FAULT_SWAP_HEADS
} lr_fault_kind;

typedef struct {
    char stage[96]; /* a forward stage: model.embed_tokens, model.layers.N.<sub-stage>, model.norm */
    lr_fault_kind kind;
    double eps;
    uint64_t seed;  /* noise only */
} lr_fault;

/* "STAGE=KIND:EPS[:SEED]", e.g. "model.layers.1.self_attn.o_proj=scale:1e-3". */
int lr_fault_parse(const char *spec, lr_fault *out);
const char *lr_fault_kind_name(lr_fault_kind k);
/* True for the kinds that change how an op computes (theta ... swap_heads), not its output. */
bool lr_fault_is_structural(lr_fault_kind k);
/* The factor a fault multiplies element (token, feature) of its stage (width features) by. */
double lr_fault_factor(const lr_fault *f, int64_t token, int64_t feature, int64_t width);
/* What a faulty op would have stored instead of x (stored in `storage`): the fault acts
 * on the op's result before its last rounding, which is lost; x plus a seeded dither of
 * half an ulp stands for it, so that a fault smaller than half an ulp moves a share of
 * the elements by one ulp, as the same bug inside a kernel would (and is not rounded
 * away). Elements the fault does not touch come back unchanged. The caller rounds. */
double lr_fault_apply(const lr_fault *f, double x, int64_t token, int64_t feature, int64_t width, lr_dtype storage);
/* Faults for every later forward of m (n 0: none). Each must name a stage of m's forward
 * that is an op's output (not the observed residual sum model.layers.N, not mlp.act_fn,
 * not lm_head); several may name one stage. The array is copied. */
int lr_model_set_faults(lr_model *m, const lr_fault *faults, size_t n);

/* ---- Fixtures (llama-golden/1) --------------------------------------------------- */

#define LR_FIXTURE_FORMAT "llama-golden/1"

typedef struct lr_fixture lr_fixture;

/* Opens a fixture and validates its format tag, inputs and stage tensor shapes. */
int lr_fixture_open(const char *path, lr_fixture **out);
/* The same over a caller-owned buffer that must outlive the handle; name labels errors. */
int lr_fixture_parse(const void *buf, size_t len, const char *name, lr_fixture **out);
void lr_fixture_free(lr_fixture *f);
const lr_batch *lr_fixture_batch(const lr_fixture *f);
const char *lr_fixture_metadata(const lr_fixture *f, const char *key);
/* Stage tensors in file order (inputs excluded). */
size_t lr_fixture_stage_count(const lr_fixture *f);
const lr_st_entry *lr_fixture_stage_at(const lr_fixture *f, size_t i);
const lr_st_entry *lr_fixture_stage(const lr_fixture *f, const char *name);
/* Checks stage names and shapes against a model config. */
int lr_fixture_check_config(const lr_fixture *f, const lr_config *cfg);

/* ---- Comparison and tolerances --------------------------------------------------- */

/* What a stage is held to (lr_stage_criteria; docs/tolerances.md): its relative L2 over
 * the whole tensor, the relative L2 of every token (row) on its own, and every element:
 * |a - b| <= atol * rms(b_t) + rtol * |b|, with b the reference and rms(b_t) the RMS of
 * the reference's row holding the element. */
typedef struct {
    double rel_l2; /* budget of ||a-b|| / ||b|| (lr_stage_budget) */
    double token;  /* budget of the largest per-token ||a_t-b_t|| / ||b_t|| */
    double atol;   /* element criterion, in units of the row's RMS */
    double rtol;   /* element criterion, relative to |b| */
} lr_criteria;

typedef struct {
    int64_t n;
    double rel_l2;        /* ||a-b|| / ||b|| */
    double max_abs;       /* max |a-b| */
    int64_t max_abs_index;
    double cosine;
    int64_t nan_a, inf_a, nan_b, inf_b;
    /* Per token: the reference's rows (its first dimension; a 1-D tensor is one row) of
     * width features each. Indices below are flat: token = index / width. */
    int64_t width;
    double token_rel_l2;      /* the largest ||a_t-b_t|| / ||b_t|| over the rows t (with row
                                 scales, lr_compare_stage_rows: of the row using the largest
                                 share of its own budget) */
    int64_t token_rel_l2_row; /* its row; -1 when no row has an error */
    double token_budget;      /* that row's budget: crit.token times its scale (0 from
                                 lr_compare: lr_metrics_token_budget gives crit.token) */
    /* The element criterion of the criteria lr_compare_stage was given (elem_checked;
     * lr_compare gives none: elem_fail 0, elem_ratio 0, elem_index -1). */
    bool elem_checked;
    int64_t elem_fail;  /* elements outside atol * rms(b_t) + rtol * |b| */
    double elem_ratio;  /* the largest |a-b| / (atol * rms(b_t) + rtol * |b|); <= 1 passes */
    int64_t elem_index; /* its element; -1 when no element has an error */
    lr_criteria crit;   /* what lr_compare_stage was given; zeros from lr_compare */
} lr_metrics;

/* Compares a (under test) against b (reference); same numel required. Every metric but
 * the element criterion, which needs lr_compare_stage. */
int lr_compare(const lr_tensor *a, const lr_tensor *b, lr_metrics *m);
/* The same, and in the same pass the element criterion of c (NULL: none, as lr_compare);
 * m->crit keeps c for lr_metrics_pass. */
int lr_compare_stage(const lr_tensor *a, const lr_tensor *b, const lr_criteria *c, lr_metrics *m);
/* The same with each row's token budget c->token x token_scale[row] (NULL: 1 for every
 * row; lr_error_model_row_scale), and its elements' atol and rtol by the same scale, so
 * that a row the error model predicts noisier than its tensor is held to its own budget. */
int lr_compare_stage_rows(const lr_tensor *a, const lr_tensor *b, const lr_criteria *c, const double *token_scale,
                          lr_metrics *m);
/* The token budget of m's worst row (m->token_budget, else m->crit.token). */
double lr_metrics_token_budget(const lr_metrics *m);

/* Stage kinds of the tolerance table. */
typedef enum {
    LR_STAGE_EMBEDDING,
    LR_STAGE_NORM,
    LR_STAGE_PROJECTION,
    LR_STAGE_ATTENTION,
    LR_STAGE_ACTIVATION,
    LR_STAGE_BLOCK,
    LR_STAGE_LAYER,
    LR_STAGE_LOGITS,
    LR_STAGE_UNKNOWN
} lr_stage_kind;

/* The stages, once. X(ID, suffix, kind, width): the stages of decoder layer i, named
 * "model.layers.{i}." suffix, in the order a forward reports them (the fixture spec's
 * order); LAYER is the layer's own output, "model.layers.{i}" (the residual stream after
 * it, as Hugging Face reports it). kind: an lr_stage_kind without its prefix; width: an
 * lr_stage_width_unit without its prefix. Only LAYER is required in a fixture. */
#define LR_LAYER_STAGE_MAP(X)                                                              \
    X(INPUT_LAYERNORM, "input_layernorm", NORM, HIDDEN)                                    \
    X(Q_PROJ, "self_attn.q_proj", PROJECTION, Q)                                           \
    X(K_PROJ, "self_attn.k_proj", PROJECTION, KV)                                          \
    X(V_PROJ, "self_attn.v_proj", PROJECTION, KV)                                          \
    X(O_PROJ_INPUT, "self_attn.o_proj.input", ATTENTION, Q)                                \
    X(O_PROJ, "self_attn.o_proj", PROJECTION, HIDDEN)                                      \
    X(SELF_ATTN, "self_attn", BLOCK, HIDDEN)                                               \
    X(POST_ATTENTION_LAYERNORM, "post_attention_layernorm", NORM, HIDDEN)                  \
    X(GATE_PROJ, "mlp.gate_proj", PROJECTION, INTERMEDIATE)                                \
    X(UP_PROJ, "mlp.up_proj", PROJECTION, INTERMEDIATE)                                    \
    X(ACT_FN, "mlp.act_fn", ACTIVATION, INTERMEDIATE)                                      \
    X(DOWN_PROJ_INPUT, "mlp.down_proj.input", ACTIVATION, INTERMEDIATE)                    \
    X(DOWN_PROJ, "mlp.down_proj", PROJECTION, HIDDEN)                                      \
    X(MLP, "mlp", BLOCK, HIDDEN)                                                           \
    X(LAYER, "", LAYER, HIDDEN)

/* X(ID, name, kind, width): the model's stages around the layers, all required. The
 * forward order is EMBED_TOKENS, every layer's stages, NORM, LM_HEAD. */
#define LR_MODEL_STAGE_MAP(X)                                                              \
    X(EMBED_TOKENS, "model.embed_tokens", EMBEDDING, HIDDEN)                               \
    X(NORM, "model.norm", NORM, HIDDEN)                                                    \
    X(LM_HEAD, "lm_head", LOGITS, VOCAB)

/* Widths of stages in features per token. */
typedef enum {
    LR_WIDTH_HIDDEN,       /* hidden_size */
    LR_WIDTH_Q,            /* num_attention_heads * head_dim */
    LR_WIDTH_KV,           /* num_key_value_heads * head_dim */
    LR_WIDTH_INTERMEDIATE, /* intermediate_size */
    LR_WIDTH_VOCAB         /* vocab_size */
} lr_stage_width_unit;

typedef enum {
#define LR_LS_ENUM(id, suffix, kind, width) LR_LS_##id,
    LR_LAYER_STAGE_MAP(LR_LS_ENUM)
#undef LR_LS_ENUM
        LR_LAYER_STAGE_COUNT
} lr_layer_stage;

typedef enum {
#define LR_MS_ENUM(id, name, kind, width) LR_MS_##id,
    LR_MODEL_STAGE_MAP(LR_MS_ENUM)
#undef LR_MS_ENUM
        LR_MODEL_STAGE_COUNT
} lr_model_stage;

const char *lr_layer_stage_suffix(lr_layer_stage s); /* "self_attn.q_proj"; "" for LAYER */
lr_stage_kind lr_layer_stage_kind(lr_layer_stage s);
lr_stage_width_unit lr_layer_stage_width(lr_layer_stage s);
const char *lr_model_stage_name(lr_model_stage s); /* "model.embed_tokens" */
/* Writes "model.layers.{layer}.{suffix}" (or "model.layers.{layer}" for LAYER) into buf
 * of n bytes; returns buf. */
char *lr_layer_stage_name(char *buf, size_t n, int64_t layer, lr_layer_stage s);
/* Features per token of a width unit for a config. */
int64_t lr_width_of(const lr_config *cfg, lr_stage_width_unit u);
/* Where a stage comes in a forward: model.embed_tokens 0, stage s of layer l
 * 1 + l * LR_LAYER_STAGE_COUNT + s, then model.norm and lm_head after every layer
 * (INT64_MAX - 1, INT64_MAX); -1 when the name is no stage. */
int64_t lr_stage_order(const char *stage);

lr_stage_kind lr_stage_kind_of(const char *stage);
const char *lr_stage_kind_name(lr_stage_kind k);
/* Relative-L2 budget of a stage computed in precision against float64 golden. */
double lr_tolerance(lr_stage_kind kind, lr_dtype precision);
/* The budget of one stage of a particular model: the table's, scaled up by how much
 * more error the error model predicts for this stage (predicted, from
 * lr_error_model_predict) than for the same kind of stage of the committed fixtures the
 * table was measured on. Equal to lr_tolerance for those fixtures and for any model no
 * deeper or wider; predicted < 0 (no model) gives lr_tolerance. See docs/tolerances.md. */
double lr_stage_budget(lr_stage_kind kind, lr_dtype precision, double predicted);
/* The criteria of one stage: rel_l2 is lr_stage_budget's; the per-token budget and the
 * element criterion's atol and rtol are that budget times the factors of the tolerance
 * table's companion for the kind and precision (docs/tolerances.md). */
lr_criteria lr_stage_criteria(lr_stage_kind kind, lr_dtype precision, double predicted);
/* The criteria a metrics result fails, as bits (0: none). */
typedef enum {
    LR_FAILS_NAN = 1,    /* a NaN or an Inf on either side */
    LR_FAILS_REL_L2 = 2, /* rel_l2 over tolerance */
    LR_FAILS_TOKEN = 4,  /* token_rel_l2 over its row's budget (lr_metrics_token_budget) */
    LR_FAILS_ELEMENT = 8 /* an element outside the element criterion */
} lr_fails;
/* The verdict, decided here alone: with no NaN or Inf, rel_l2 <= tolerance, and when the
 * metrics were measured against criteria (lr_compare_stage: m->elem_checked) also
 * token_rel_l2 <= lr_metrics_token_budget(m) and no element outside the element criterion. */
unsigned lr_metrics_failures(const lr_metrics *m, double tolerance);
/* lr_metrics_failures(m, tolerance) == 0. */
bool lr_metrics_pass(const lr_metrics *m, double tolerance);

/* Width (features per token) of a stage of a model with this config, or -1 when the
 * name is not a stage of it. required is set for the stages every fixture must hold. */
int64_t lr_stage_width(const lr_config *cfg, const char *stage, bool *required);

/* ---- Error model (docs/error-model.md) ------------------------------------------- */

/* How large each stage's relative L2 error against a float64 golden should be when a
 * model is computed in `precision` from weights stored as `weights`: every rounding of
 * a stored tensor adds an independent relative error of 0.425 u (u the unit roundoff),
 * every reduction of length K accumulated in precision p adds 0.425 u_p sqrt(K/2), and
 * errors add in quadrature, carried through the residual stream in proportion to the
 * norms of its terms. The norms come from reference stage tensors (the golden's, or a
 * reference run's) through src; layer sub-stages it lacks are estimated from the
 * layer outputs. */
typedef const lr_tensor *(*lr_stage_source)(void *user, const char *stage);
typedef struct lr_error_model lr_error_model;
/* mean_context: mean number of positions a token attends to (the PV reduction). */
int lr_error_model_create(const lr_config *cfg, lr_dtype weights, lr_dtype precision, double mean_context,
                          lr_stage_source src, void *user, lr_error_model **out);
/* The same for the batch b the source's stages are of: the mean context from its
 * positions, and where the source holds a layer's q, k and v, attention's own error from
 * its scores (their rounding and accumulation through the softmax, which a trained
 * model's large scores amplify; docs/error-model.md) in place of the head_dim
 * accumulation alone. */
int lr_error_model_create_batch(const lr_config *cfg, lr_dtype weights, lr_dtype precision, const lr_batch *b,
                                lr_stage_source src, void *user, lr_error_model **out);
void lr_error_model_free(lr_error_model *m);
/* The predicted relative L2 error of a stage, or -1 when the model has none for it. */
double lr_error_model_predict(const lr_error_model *m, const char *stage);
/* The same for a run isolated as iso says (each layer, or each op, fed the golden's input,
 * rounded to its buffer's storage): only the layer's, or the op's, own error. */
double lr_error_model_predict_isolated(const lr_error_model *m, const char *stage, lr_isolation iso);
/* How much noisier than the stage as a whole each of its tokens is predicted to be, run
 * free (isolated false) or isolated as iso says: scale[t] = max(1, token t's predicted
 * relative L2 / the stage's), from each token's own shares of the residual stream (a
 * layer's output: the stream carried in, and the two blocks' updates). 1 for every token
 * of any other stage, and where rows is not the number of tokens of the source the model
 * was made from. For the per-token budget (lr_compare_stage_rows): a token whose update
 * is a large share of its row, beside a token holding most of the stream's norm, carries
 * many times the stage's relative error. */
void lr_error_model_row_scale(const lr_error_model *m, const char *stage, bool isolated, lr_isolation iso,
                              int64_t rows, double *scale);
/* The band a measurement must fall in for the model to hold: measured <= hi x predicted
 * at every stage, and the median of measured / predicted over a run >= lo. */
#define LR_ERROR_MODEL_HI 3.0
#define LR_ERROR_MODEL_LO (1.0 / 3.0)

/* Records every stage a forward reports (an observer), as float64 copies. */
typedef struct lr_recorder lr_recorder;
int lr_recorder_create(lr_recorder **out);
void lr_recorder_free(lr_recorder *r);
/* The observer to pass to lr_model_forward / lr_model_compute_logits. */
lr_observer lr_recorder_observer(lr_recorder *r);
/* LR_OK, or the first problem seen (a stage reported twice, out of memory). */
int lr_recorder_status(const lr_recorder *r);
void lr_recorder_clear(lr_recorder *r);
size_t lr_recorder_count(const lr_recorder *r);
/* Stage i in the order reported; its tensor is F64 (T, N). */
const char *lr_recorder_name(const lr_recorder *r, size_t i);
const lr_tensor *lr_recorder_at(const lr_recorder *r, size_t i);
const lr_tensor *lr_recorder_find(const lr_recorder *r, const char *stage);

/* ---- Checking a run: stage results, drill-down, logits, decode steps ---------------- */

/* One stage of a run under test held against its reference. */
typedef struct {
    const char *name;
    lr_stage_kind kind;
    lr_metrics m;       /* lr_compare(test, reference) */
    double tolerance;   /* the relative-L2 budget it was held to */
    double predicted;   /* the error model's relative L2 for it, or -1 */
    int64_t width;      /* features per token: m.max_abs_index / width is the token */
    bool pass;          /* lr_metrics_pass(&m, tolerance) */
    bool from_emulated; /* tolerance came from a measured same-precision run, not the table */
    bool element_from_emulated; /* the element criterion's atol and rtol too (m.crit) */
} lr_stage_result;

/* The decoder layer of a stage, i of "model.layers.{i}" or "model.layers.{i}.*"; -1
 * when the name is in no layer. */
int64_t lr_stage_layer(const char *stage);

/* Where an error came in (lr_drill_down). Indices are into the results given. */
typedef struct {
    int64_t first;  /* the first failing stage, -1 when every stage passes */
    int64_t layer;  /* first's decoder layer, -1 when it is in none (or nothing failed) */
    int64_t cause;  /* the stage the error jumps most at, -1 when nothing failed */
    double growth;  /* cause's error over the stage before it; INFINITY when cause holds
                     * NaN or Inf */
    bool by_token;  /* growth is of the worst token's relative L2, not the tensor's */
} lr_drill;

/* The drill-down over res (n stages in forward order): inside the first failing stage's
 * layer (or, for a stage in no layer, from the start up to it), the stage whose error
 * grows most over the stage before it, which names the operation that introduced the
 * error. The error is the relative L2, or the worst token's relative L2 where that grows
 * more (results measured against criteria, m.elem_checked), so that a bug on a few
 * tokens shows. A predecessor's error counts as at least the rounding expected at the
 * stage (its prediction, and a tenth of its budget; for the worst token, scaled as its
 * budget is), so that an exact predecessor does not make rounding look like a jump; a
 * layer's own output is never the cause. */
int lr_drill_down(const lr_stage_result *res, size_t n, lr_drill *out);
/* The growth lr_drill_down measures: x's error over prev's (prev NULL: nothing before it),
 * INFINITY when x holds NaN or Inf; *by_token (may be NULL) is set when the worst
 * token's relative L2 grows more than the tensor's. */
double lr_drill_growth(const lr_stage_result *x, const lr_stage_result *prev, bool *by_token);

/* The logits as users see them: per token the softmaxes of test and reference compared,
 * then summarised over the tokens. */
typedef struct {
    int64_t tokens;
    int64_t k;                    /* the k of topk_overlap: the one asked, at most vocab */
    int64_t top1_agree;           /* tokens whose most likely next token is the same */
    double topk_overlap;          /* mean over tokens of |top-k(test) & top-k(ref)| / k */
    double kl_mean, kl_max;       /* KL(reference || test) of the softmaxes, in nats */
    int64_t kl_max_token;
    double max_abs_delta_logprob; /* max |log p_test - log p_ref| over tokens and vocab */
} lr_logits_metrics;

/* The k that llama-diff reports the top-k overlap for. */
#define LR_LOGITS_TOP_K 5
/* test, ref: (T, vocab) logits of the same tokens; LR_E_SHAPE when the shapes differ. */
int lr_logits_compare(const lr_tensor *test, const lr_tensor *ref, int64_t k, lr_logits_metrics *out);

/* How lr_decode_run splits a batch: each sequence's first tokens are prefilled, all
 * sequences in one batch, then its other tokens are decoded one per step. The prefill
 * of a sequence of n tokens is n - decode tokens, at most prefill when that is set, and
 * at least one. All zero: the whole batch in one prefill. */
typedef struct {
    int64_t decode;  /* decode the last this many tokens of each sequence */
    int64_t prefill; /* prefill at most this many tokens of each sequence; 0: no limit */
} lr_decode_plan;

/* One step of lr_decode_run. Sequence q of the step is sequence batch->seq_ids[q] of the
 * whole batch; its batch->seq_lens[q] tokens are rows step_row[q].. of the step's stages
 * and rows full_row[q].. of the whole batch. */
typedef struct {
    int index;                 /* 0: the prefill; 1, 2, ...: the decode steps */
    const lr_batch *batch;     /* what ran */
    const int64_t *step_row;   /* (batch->num_seqs) */
    const int64_t *full_row;   /* (batch->num_seqs) */
    const lr_recorder *stages; /* every stage the step reported: F64 (batch->num_tokens, width) */
} lr_decode_step;

/* Called after each step; a nonzero return ends the run, and lr_decode_run returns it. */
typedef int (*lr_decode_fn)(void *user, const lr_decode_step *step);

/* Runs batch through m as plan says (NULL: one prefill) through a KV cache of its own,
 * one slot per sequence (batch->seq_ids is not read), and calls on_step (optional) after
 * each step. When the last step is done, whole (optional) gets every stage with the steps'
 * rows put back in the batch's order, as a forward of the whole batch reports it: F64
 * (T, width), in the order the prefill reported them. With whole->inject set, every step
 * is isolated as whole->isolation says, fed the step's rows of the whole-batch (T, width)
 * tensors inject returns; the KV cache then holds the keys and values the isolated steps
 * computed. */
int lr_decode_run(lr_model *m, const lr_batch *batch, const lr_decode_plan *plan, lr_decode_fn on_step,
                  void *user, const lr_observer *whole);

#ifdef __cplusplus
}
#endif
#endif /* LLAMAREF_H */
