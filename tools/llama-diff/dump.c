/* dump.c: llama-diff dump: runs a backend on a fixture's inputs or on --tokens and writes
 * every stage in the llama-golden/1 format, in the precision it was computed in, through
 * a temporary file (an existing file only with --force). */
#include "diff.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The last part of a path, trailing slashes dropped: a dump's "model" metadata. */
static const char *basename_of(const char *path) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    static char buf[256];
    snprintf(buf, sizeof buf, "%.*s", (int)n, path);
    char *slash = strrchr(buf, '/');
    return slash ? slash + 1 : buf;
}

int cmd_dump(const args *a) {
    if (!a->model || !a->out) return bad("dump: --model DIR and --out FILE are required");
    if (!a->force && access(a->out, F_OK) == 0)
        return bad("%s: already exists (use --force to replace it)", a->out);
    lr_checkpoint *ck = NULL;
    lr_recorder *rec = NULL;
    lr_st_writer *w = NULL;
    input in;
    int rc, status = input_open(a, &in);
    if (status) {
        input_close(&in);
        return status;
    }
    const lr_batch b = in.b;
    if ((rc = lr_checkpoint_open(a->model, &ck)) || (rc = lr_recorder_create(&rec)) ||
        (rc = lr_st_writer_create(&w))) {
        status = lib_fail(rc);
        goto out;
    }
    run_stats stats;
    if ((status = run_model(a, ck, &b, rec, NULL, NULL, &stats))) goto out;

    lr_tensor in_ids = {.dtype = LR_I64, .ndim = 1, .shape = {b.num_tokens}, .data = b.input_ids};
    lr_tensor in_pos = {.dtype = LR_I64, .ndim = 1, .shape = {b.num_tokens}, .data = b.positions};
    lr_tensor in_lens = {.dtype = LR_I64, .ndim = 1, .shape = {b.num_seqs}, .data = b.seq_lens};
    char gen[160];
    snprintf(gen, sizeof gen, "%s %s llama-diff dump (backend %s, precision %s, tp %d)", PACKAGE_NAME,
             PACKAGE_VERSION, a->opt.backend, precision_name(a->opt.precision), a->opt.tp_size);
    if ((rc = lr_st_writer_set_metadata(w, "format", LR_FIXTURE_FORMAT)) ||
        (rc = lr_st_writer_set_metadata(w, "model", basename_of(a->model))) ||
        (rc = lr_st_writer_set_metadata(w, "compute_dtype", precision_torch(a->opt.precision))) ||
        (rc = lr_st_writer_set_metadata(w, "generator", gen)) ||
        (rc = lr_st_writer_add(w, "input_ids", &in_ids)) ||
        (rc = lr_st_writer_add(w, "positions", &in_pos)) ||
        (b.seq_lens && (rc = lr_st_writer_add(w, "seq_lens", &in_lens)))) {
        status = lib_fail(rc);
        goto out;
    }
    for (size_t i = 0; i < lr_recorder_count(rec); i++) {
        /* Stages are stored in the precision they were computed in. */
        const lr_tensor *t = lr_recorder_at(rec, i);
        lr_tensor st = *t;
        float *f32 = NULL;
        if (a->opt.precision != LR_F64) {
            int64_t n = lr_tensor_numel(t);
            if (!(f32 = malloc((size_t)n * sizeof *f32))) {
                status = bad("out of memory");
                goto out;
            }
            lr_convert(f32, LR_F32, t->data, LR_F64, (size_t)n);
            st.dtype = LR_F32;
            st.data = f32;
        }
        rc = lr_st_writer_add(w, lr_recorder_name(rec, i), &st);
        free(f32);
        if (rc) {
            status = lib_fail(rc);
            goto out;
        }
    }
    if ((rc = lr_st_writer_write(w, a->out, a->force))) {
        status = lib_fail(rc);
        goto out;
    }
    stats.host_peak_after_run = lr_host_peak_rss(); /* the writer's copies included */
    if (a->json) {
        json_t *j = json_pack("{s:s, s:s, s:I, s:I, s:o}", "command", "dump", "out", a->out, "stages",
                              (json_int_t)lr_recorder_count(rec), "tokens", (json_int_t)b.num_tokens,
                              "memory", memory_json(&stats));
        char *text = j ? json_dumps(j, JSON_PRESERVE_ORDER) : NULL;
        if (text) printf("%s\n", text);
        free(text);
        json_decref(j);
    } else {
        char note[320];
        printf("wrote %zu stages of %lld tokens to %s\n", lr_recorder_count(rec), (long long)b.num_tokens,
               a->out);
        printf("memory: %s\n", memory_note(&stats, a->opt.backend, note, sizeof note));
    }
    status = EXIT_AGREE;
out:
    input_close(&in);
    lr_st_writer_free(w);
    lr_recorder_free(rec);
    lr_checkpoint_close(ck);
    return status;
}
