/* weights.c: the CPU reference's weights, streamed. The checkpoint stays mapped in its
 * stored dtype; each rank's packed tensors (lr_plan) are converted to the arithmetic's
 * precision when an op needs them, exactly as lr_weights_build converts (per element,
 * through lr_packed_read_chunk; bf16/fp16: then rounded to the dtype once), and kept
 * while the memory budget allows, the least recently used released first. A model
 * whose weights fit the budget is converted whole when it is created, as before. The
 * embedding and the LM head, the largest tensors, are read by rows when they do not fit
 * a quarter of the budget: the batch's rows, the LM head in blocks of rows. */
#include "cpu.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

uint64_t cpu_default_budget(void) {
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGE_SIZE);
    uint64_t phys = pages > 0 && size > 0 ? (uint64_t)pages * (uint64_t)size : (uint64_t)8 << 30;
    return phys / 10;
}

static size_t tensor_bytes(const cpu_model *m, const lr_packed_desc *d) {
    return (size_t)d->shape[0] * (size_t)d->shape[1] * lr_dtype_size(m->arith);
}

/* The slot a tensor's data lives in: a tied tensor shares its target's. */
static int owner(const cpu_model *m, int r, int index) {
    const lr_packed_desc *d = lr_plan_at(m->ranks[r].plan, (size_t)index);
    return d->tied_to >= 0 ? d->tied_to : index;
}

/* Rows [row0, row0 + rows) of packed tensor d, converted into dst (rows, cols) in the
 * arithmetic's precision; rows no slice fills (vocabulary padding) are zero. release:
 * each slice's source pages dropped once it is read (a whole tensor is read once). */
static int read_rows(const cpu_model *m, const lr_packed_desc *d, int64_t row0, int64_t rows, void *dst,
                     bool release) {
    size_t es = lr_dtype_size(m->arith);
    int64_t cols = d->shape[1];
    unsigned char *out = dst;
    memset(out, 0, (size_t)(rows * cols) * es);
    for (int k = 0; k < d->nslices; k++) {
        const lr_slice *s = &d->slices[k];
        int64_t a = row0 > s->dst_row0 ? row0 : s->dst_row0;
        int64_t b = row0 + rows < s->dst_row0 + s->rows ? row0 + rows : s->dst_row0 + s->rows;
        /* a slice as wide as the tensor is one chunk; a narrower one, a chunk per row */
        int64_t step = s->cols == cols ? b - a : 1;
        for (int64_t i = a; i < b; i += step) {
            lr_chunk c = {.slice = k, .elem0 = (i - s->dst_row0) * s->cols, .count = step * s->cols};
            int rc = lr_packed_read_chunk(m->ck, d, &c, m->arith, out + (size_t)((i - row0) * cols) * es);
            if (rc) return rc;
        }
        if (release) lr_checkpoint_release(m->ck, s->src);
    }
    if (m->dt == LR_BF16 || m->dt == LR_F16) lr_round_f32_n(dst, (size_t)(rows * cols), m->dt);
    return LR_OK;
}

static void release_sources(const cpu_model *m, const lr_packed_desc *d) {
    for (int k = 0; k < d->nslices; k++)
        lr_checkpoint_release(m->ck, d->slices[k].src);
}

static void evict(cpu_model *m, cpu_wslot *s) {
    free(s->data);
    s->data = NULL;
    m->held -= s->bytes;
}

/* Releases the least recently used tensors not pinned by the op running now until
 * `need` more bytes fit the budget, or nothing more can go. */
static void make_room(cpu_model *m, uint64_t need) {
    while (m->held + need > m->budget) {
        cpu_wslot *lru = NULL;
        for (int r = 0; r < m->tp; r++)
            for (size_t i = 0; i < lr_plan_count(m->ranks[r].plan); i++) {
                cpu_wslot *s = &m->ranks[r].slot[i];
                if (s->data && s->used < m->pin && (!lru || s->used < lru->used)) lru = s;
            }
        if (!lru) return;
        evict(m, lru);
    }
}

static void note_held(cpu_model *m, uint64_t extra) {
    if (m->held + extra > m->held_peak) m->held_peak = m->held + extra;
}

int cpu_weight(cpu_model *m, int r, int index, const void **out) {
    *out = NULL;
    if (index < 0) return LR_OK;
    int at = owner(m, r, index);
    cpu_wslot *s = &m->ranks[r].slot[at];
    s->used = ++m->clock;
    if (s->data) {
        *out = s->data;
        return LR_OK;
    }
    const lr_packed_desc *d = lr_plan_at(m->ranks[r].plan, (size_t)at);
    size_t bytes = tensor_bytes(m, d);
    make_room(m, bytes);
    void *buf = malloc(bytes ? bytes : 1);
    if (!buf) return lr_fail(LR_E_NOMEM, "cpu backend: %s: cannot allocate %zu bytes", d->name, bytes);
    int rc = read_rows(m, d, 0, d->shape[0], buf, true);
    if (rc) {
        free(buf);
        return rc;
    }
    s->data = buf;
    s->bytes = bytes;
    m->held += bytes;
    m->converted += bytes;
    note_held(m, 0);
    *out = buf;
    return LR_OK;
}

const void *cpu_weight_held(const cpu_model *m, int r, int index) {
    return index < 0 ? NULL : m->ranks[r].slot[owner(m, r, index)].data;
}

bool cpu_weight_streamed(const cpu_model *m, int r, int index) {
    if (cpu_weight_held(m, r, index)) return false;
    return tensor_bytes(m, lr_plan_at(m->ranks[r].plan, (size_t)owner(m, r, index))) > m->budget / 4;
}

int cpu_weight_rows(cpu_model *m, int r, int index, int64_t row0, int64_t rows, void *dst) {
    const lr_packed_desc *d = lr_plan_at(m->ranks[r].plan, (size_t)index);
    size_t row_bytes = (size_t)d->shape[1] * lr_dtype_size(m->arith);
    const unsigned char *held = cpu_weight_held(m, r, index);
    if (held) {
        memcpy(dst, held + (size_t)row0 * row_bytes, (size_t)rows * row_bytes);
        return LR_OK;
    }
    make_room(m, (uint64_t)rows * row_bytes); /* the block counts against the budget too */
    note_held(m, (uint64_t)rows * row_bytes);
    m->converted += (uint64_t)rows * row_bytes;
    return read_rows(m, d, row0, rows, dst, false);
}

void cpu_weights_release_rows(cpu_model *m, int r, int index) {
    release_sources(m, lr_plan_at(m->ranks[r].plan, (size_t)index));
}

int64_t cpu_weight_block_rows(const cpu_model *m, int r, int index) {
    const lr_packed_desc *d = lr_plan_at(m->ranks[r].plan, (size_t)index);
    size_t row_bytes = (size_t)d->shape[1] * lr_dtype_size(m->arith);
    uint64_t want = m->budget / 4 < ((uint64_t)64 << 20) ? m->budget / 4 : (uint64_t)64 << 20;
    int64_t rows = (int64_t)(want / row_bytes) / CPU_LM_HEAD_GEMM_ROWS * CPU_LM_HEAD_GEMM_ROWS;
    return rows < CPU_LM_HEAD_GEMM_ROWS ? CPU_LM_HEAD_GEMM_ROWS : rows;
}

int cpu_weights_init(cpu_model *m, const lr_checkpoint *ck, uint64_t budget) {
    m->ck = ck;
    m->budget = budget ? budget : cpu_default_budget();
    uint64_t total = 0;
    for (int r = 0; r < m->tp; r++) {
        size_t n = lr_plan_count(m->ranks[r].plan);
        if (!(m->ranks[r].slot = calloc(n ? n : 1, sizeof *m->ranks[r].slot)))
            return lr_fail(LR_E_NOMEM, "cpu backend: out of memory");
        for (size_t i = 0; i < n; i++) {
            const lr_packed_desc *d = lr_plan_at(m->ranks[r].plan, i);
            if (d->tied_to < 0) total += tensor_bytes(m, d);
        }
    }
    m->total = total;
    if (total > m->budget) return LR_OK;
    /* Everything fits: converted now, as the reference always did (a bad weight is
     * refused when the model is created), and the checkpoint is not read again. */
    m->resident = true;
    for (int r = 0; r < m->tp; r++)
        for (size_t i = 0; i < lr_plan_count(m->ranks[r].plan); i++) {
            const void *p;
            int rc = cpu_weight(m, r, (int)i, &p);
            if (rc) return rc;
        }
    return LR_OK;
}

void cpu_weights_free(cpu_model *m) {
    for (int r = 0; m->ranks && r < m->tp; r++) {
        for (size_t i = 0; m->ranks[r].slot && i < lr_plan_count(m->ranks[r].plan); i++)
            free(m->ranks[r].slot[i].data);
        free(m->ranks[r].slot);
    }
}
