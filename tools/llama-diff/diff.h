/* diff.h: what the llama-diff commands share, private to tools/llama-diff/: the parsed
 * command line, exit codes and error lines, precision names, backend checks, running a
 * model, and the stage-by-stage comparison that check, compare and backends report. */
#ifndef LLAMA_DIFF_DIFF_H
#define LLAMA_DIFF_DIFF_H

#ifdef HAVE_CONFIG_H
/* FlashAttention's criterion (issue 15, item 3): a run at bf16/fp16 within twice the
 * error against the reference of the emulated reference run the same way. The
 * same-precision verdict's factor criterion holds every stage to it (same.c), and the
 * verdict against the reference never holds a stage to less (results.c: its budget is at
 * least this times the emulated reference's error). */
#define SAME_FACTOR 2.0

#include "config.h"
#endif

#include "llamaref.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

enum { EXIT_AGREE = 0, EXIT_DIVERGE = 1, EXIT_BAD = 2 };

/* compare's files: up to 64 dumps under test (a tensor-parallel run's ranks) and the golden. */
#define LD_MAX_POS 65

/* The command line, parsed (main.c). */
typedef struct {
    const char *cmd;
    const char *model, *fixture, *tokens, *out, *report, *gguf;
    lr_options opt;
    bool json, force, color, backend_given, precision_given, isolate, quiet, threads_given;
    int decode;          /* check --decode K */
    char kernels[512];   /* --kernel family=name, comma-joined */
    lr_fault faults[16]; /* --inject STAGE=KIND:EPS (check, dump; backends: side b) */
    int nfaults;
    bool isolate_ops;            /* --isolate op: every op's input from the fixture */
    const char *spec_a, *spec_b; /* backends --a, --b */
    const char *pos[LD_MAX_POS]; /* compare DUMP... GOLDEN */
    const char *stages;          /* compare --stages PATTERN: the golden stages to compare */
    const char *names;           /* compare --names hf|vllm|llama.cpp: how the dump names stages */
    const char *rounding;        /* compare --rounding NAME: the dump's engine's rounding profile */
    int npos;
    const char *plugins[16]; /* --plugin LIB.so, in order */
    int nplugins;
} args;

bool is_cmd(const args *a, const char *cmd);

/* ops.c: llama-diff ops, with its own options (argv[0] is "ops"). */
int cmd_ops(int argc, char **argv);
/* An option of another command given to cmd (ops, which parses its own): exit 2 with
 * main.c's message ("--tp: ops does not use it (an option of ...)"); 0 when opt is none of
 * main.c's table. */
int refuse_option(const char *cmd, const char *opt);

/* ---- util.c: errors, numbers, precisions, paths ---------------------------------------- */

/* Prints "llama-diff: " and the message as one line on stderr; returns EXIT_BAD. */
int bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A library failure: one line naming the file and field. */
int lib_fail(int rc);
int parse_int(const char *s, const char *opt, int lo, int hi, int *out);
int parse_size(const char *s, const char *opt, uint64_t *out);

/* "f64", "f32" or "fp32", "bf16", "fp16" or "f16"; -1 for anything else. */
int parse_precision(const char *s, lr_dtype *out);
const char *precision_name(lr_dtype d);  /* "f64", "f32", "bf16", "fp16" */
const char *precision_torch(lr_dtype d); /* a dump's compute_dtype: "float64", ... */
/* The precision of a compute_dtype; -1 when it names none. */
int parse_precision_torch(const char *s, lr_dtype *out);

char *join(const char *a, const char *b); /* "a/b", fresh */
bool is_file(const char *path);
/* Edit distance of two names ((size_t)-1 when y is too long to measure). */
size_t edit_distance(const char *x, const char *y);
/* The folder PATH would be written in exists (else an error naming opt and the folder). */
int check_out_parent(const char *opt, const char *path);
/* $LR_FIXTURES, else the source tree's fixtures/, else the installed ones. */
const char *fixtures_root(void);

/* ---- backends.c: what the library's backend table allows ------------------------------- */

/* --backend and --precision against the backend's entry (the default precision is its
 * first); run once the command is known. */
int check_backend(args *a);
/* --kernel and --devices: only for a backend that takes them (backends: either side). */
int check_backend_settings(const args *a);
int cmd_backends(const args *a);

/* ---- running a model (run.c) ------------------------------------------------------------ */

/* The input of dump and backends: a fixture's, or --tokens as one sequence at 0..n-1. */
typedef struct {
    lr_fixture *fx;
    int64_t *ids, *pos; /* (T) --tokens */
    lr_batch b;
} input;

int input_open(const args *a, input *in);
void input_close(input *in);

/* Where a model ran, for the labels: ", over 2 GPUs (NCCL)", ", ranks in turn on one GPU"
 * (tp > 1), ", one GPU", or "" (the host). */
const char *devices_note(int devices, int tp);
/* What a run's model held: its GPUs (lr_model_num_devices), its device memory after
 * loading (lr_model_memory), and the process's peak RSS right after loading and at the
 * end of the run (lr_host_peak_rss). */
typedef struct {
    int devices;
    lr_memory mem;
    uint64_t host_peak_after_load, host_peak_after_run;
} run_stats;
/* Runs the backend on a batch and records every stage, logits included; isolate (may be
 * NULL) feeds each layer (a->isolate_ops: each op) its input from the reference's stages
 * (fixture_source, recorder_source); *stats (may be NULL) gets what the model held. */
int run_model(const args *a, const lr_checkpoint *ck, const lr_batch *b, lr_recorder *rec,
              lr_stage_source isolate, void *isolate_user, run_stats *stats);
/* A run's memory for the report: a line for the header ("host peak RSS ..., cuda weights
 * ... on the GPU") into buf, and a JSON object (new reference). */
const char *memory_note(const run_stats *st, const char *backend, char *buf, size_t size);
json_t *memory_json(const run_stats *st);
/* The batch as a prefill and a->decode single-token steps, quietly, each step isolated as
 * run_model's isolate says; the whole decoded run into rec. */
int run_decoded(const args *a, const lr_checkpoint *ck, const lr_batch *b, lr_recorder *rec,
                lr_stage_source isolate, void *isolate_user);
/* check --decode: the fixture's batch as a prefill and a->decode single-token steps (each
 * isolated when a->isolate); a JSON object per step (*steps_out: each stage's relative L2
 * over the step's rows, for decode_steps_judge), and the whole decoded run into rec. */
int run_decode(const args *a, const lr_checkpoint *ck, const lr_fixture *fx, lr_recorder *rec, json_t **steps_out,
               run_stats *stats);

/* ---- the comparison report (results.c) -------------------------------------------------- */

/* One comparison of a run under test against a reference, stage by stage. */
typedef struct {
    const char *command;
    const char *test_label, *ref_label; /* what each side is, for the header */
    lr_dtype precision;                 /* the budget column used */
    const char *budget_note;            /* how the budgets were set (compare), or NULL */
    const char *memory_note;            /* what the run held (check, backends), or NULL */
    lr_error_model *model[2];           /* what the test side and the reference should show
                                         * (docs/error-model.md); their errors add */
    bool isolated;                      /* the test side ran isolated as isolation says: */
    lr_isolation isolation;             /* its budgets hold only its layers' or ops' own error */
    const lr_fixture *isolated_from;    /* what fed it (op isolation reaches only the ops whose
                                         * inputs it holds) */
    lr_stage_result *res;               /* (n) in forward order; names owned */
    size_t n, cap, failed;
    size_t missing;            /* reference stages the run under test lacks: the run diverges */
    const char *missing_first; /* the first of them (first_divergence when none failed) */
    const json_t *emulated;    /* same_precision's factor stages: each stage's budget is at
                                * least SAME_FACTOR x the emulated reference's own error */
    bool same_failed;          /* the same-precision verdict failed: the run diverges */
    const char *same_first;    /* its first divergence (first_divergence when no other) */
    bool have_logits;          /* the logits as users see them, when lm_head was compared */
    lr_logits_metrics logits;
} report;

/* Each step of run_decode's *steps_out held to the budgets r's verdict gave its stages (a
 * prefill's rows to the stage's relative-L2 budget, a decode step's tokens to its token
 * budget): its worst stage and share of that budget, and with text a line per step. */
void decode_steps_judge(json_t *steps, const report *r, bool text);

int report_add(report *r, const char *name, const lr_tensor *test, const lr_tensor *ref);
/* Prints the report (text or JSON, with extra's keys added), writes --report; returns the
 * exit status. */
int report_finish(const args *a, report *r, json_t *extra);
void report_free(report *r);
/* The error model of a run in precision p of this checkpoint on batch b, with norms
 * from src (the golden or a reference run). */
int attach_model(lr_error_model **out, const lr_checkpoint *ck, lr_dtype p, const lr_batch *b,
                 lr_stage_source src, void *user);
const lr_tensor *fixture_source(void *user, const char *stage);
const lr_tensor *recorder_source(void *user, const char *stage);

/* ---- the other commands ----------------------------------------------------------------- */

json_t *config_json(const lr_config *c); /* info.c; convert prints it too */
int cmd_info(const args *a);
int cmd_convert(const args *a);
int cmd_check(const args *a);
/* The same-precision verdict at bf16/fp16 (same.c): a runs the backend under test (its
 * options, isolation, --decode and faults); ref holds the reference's stages (the golden,
 * or backends' side a) on batch b, and test_run what a's run recorded against them. The
 * test backend and the emulated CPU reference, ops isolated, within ulps of each other;
 * and the test's error against ref within a factor of the emulated reference's own, run as
 * a's was. *out the JSON section, *pass the verdict; an exit status. */
int same_precision(const args *a, const lr_checkpoint *ck, const lr_batch *b, lr_stage_source ref,
                   void *ref_user, const lr_recorder *test_run, json_t **out, bool *pass);
/* The same for an outside engine's dump at precision p (compare --model): each op of the
 * emulated reference fed the dump's own input to it (dump, dump_user) and held to the
 * dump's output in ulps, as llama.cpp's test-backend-ops holds a backend's op to the CPU
 * op on the same inputs; and the dump's error against ref (the golden) within a factor of
 * the emulated reference's own, free-running. dump_run: the dump's stages, recorded. The
 * emulated reference rounds as a->opt.rounding says (the engine's rounding profile);
 * declared_by ("--rounding", "metadata") says who named it, NULL: nobody, the map, and
 * every op of the dump may round once more. */
int same_precision_of_dump(const args *a, const lr_checkpoint *ck, const lr_batch *b, lr_dtype p,
                           lr_stage_source dump, void *dump_user, const lr_recorder *dump_run,
                           lr_stage_source ref, void *ref_user, const char *declared_by, json_t **out,
                           bool *pass);
void same_precision_print(const json_t *same);
/* The run diverges when the same-precision verdict failed (report_finish says so). */
void same_verdict(report *r, const json_t *same, bool pass);
int cmd_dump(const args *a);
int cmd_compare(const args *a);

/* ---- kernels.c: kernel plugins and variants --------------------------------------------- */

/* Loads the --plugin files, then checks every --kernel FAMILY=NAME (the family, the variant
 * after the plugins, the dtype of each side that takes it), before any device is opened.
 * Without the CUDA backend, --plugin is refused. An exit status. */
int kernels_prepare(const args *a);

/* ---- names.c: compare's dump under test under Hugging Face stage names ------------------ */

typedef struct {
    const char *name, *from; /* the HF stage; the engine tensor it comes from */
    lr_tensor t;             /* (T, F) */
    bool owns_data;          /* split, gathered or reordered here */
} ld_stage;

typedef struct {
    const char *names;          /* "hf", "vllm" or "llama.cpp" (--names) */
    lr_fixture *fx[LD_MAX_POS]; /* the dumps in rank order (one unless tensor-parallel) */
    const char *path[LD_MAX_POS];
    int nfx;
    ld_stage *s; /* in rank 0's file order */
    size_t n, cap;
    json_t *skipped;  /* [{name, reason}]: engine names that equal no HF stage */
    json_t *unmapped; /* [{name, nearest_in_names}]: in no map, with the map's nearest name */
} mapped_dump;

/* Opens the n dumps under test (one per tensor-parallel rank: vllm) and maps their
 * tensors to HF stages by a->names; cfg (from --model; may be NULL for hf) gives the
 * sizes. Returns an exit status; dump_close in any case. */
int dump_open(const args *a, const char *const *paths, int n, const lr_config *cfg, mapped_dump *d);
void dump_close(mapped_dump *d);
const ld_stage *dump_find(const mapped_dump *d, const char *hf_name);
/* Why the engine's names cannot hold this golden stage, or NULL when they can. */
const char *dump_not_produced(const mapped_dump *d, const char *hf_stage);

#endif
