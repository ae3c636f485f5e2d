/* backends.c: the table of backends the library knows: what each takes (its
 * lr_backend_info, known whether or not it is built, so that tools can say "that needs
 * --backend cuda" on any build) and its vtable when it is built in. A new backend is one
 * vtable (backend.h) and one row here; nothing else names it. */
#include "backend.h"

#include <stdio.h>
#include <string.h>

extern const lr_backend_ops lr_cpu_backend;
#ifdef LR_HAVE_CUDA
extern const lr_backend_ops lr_cuda_backend;
#define CUDA_OPS (&lr_cuda_backend)
#define CUDA_BUILT true
#else
#define CUDA_OPS NULL
#define CUDA_BUILT false
#endif

static const struct {
    lr_backend_info info;
    const lr_backend_ops *ops; /* NULL: not built in */
} table[] = {
    /* bf16 and fp16 are emulated: float32 rounded where the CUDA path rounds (rounding.h) */
    {{"cpu", true, "the CPU reference (OpenBLAS), tp ranks in turn; bf16 and fp16 emulated",
      {LR_F64, LR_F32, LR_BF16, LR_F16}, 4, false, false, true, true, false, true},
     &lr_cpu_backend},
    {{"cuda", CUDA_BUILT, "the CUDA path (cuBLAS; NCCL or the single-GPU tp mode)", {LR_BF16, LR_F16, LR_F32}, 3,
      true, true, true, false, true, false},
     CUDA_OPS},
};
#define N_BACKENDS (sizeof table / sizeof table[0])

size_t lr_backend_count(void) { return N_BACKENDS; }

const lr_backend_info *lr_backend_at(size_t i) { return i < N_BACKENDS ? &table[i].info : NULL; }

/* "cpu, cuda", or only those built in. */
static const char *names(char *list, size_t n, bool built_only) {
    size_t used = 0;
    list[0] = '\0';
    for (size_t i = 0; i < N_BACKENDS; i++) {
        if (built_only && !table[i].ops) continue;
        int k = snprintf(list + used, n - used, "%s%s", used ? ", " : "", table[i].info.name);
        if (k > 0 && (size_t)k < n - used) used += (size_t)k;
    }
    return list;
}

const lr_backend_info *lr_backend_find(const char *name) {
    for (size_t i = 0; name && i < N_BACKENDS; i++)
        if (strcmp(name, table[i].info.name) == 0) return &table[i].info;
    char list[128];
    lr_fail(LR_E_BACKEND, "backend: \"%s\" is no backend (%s)", name ? name : "(null)", names(list, sizeof list, false));
    return NULL;
}

const lr_backend_ops *lr_backend_ops_of(const lr_backend_info *b) {
    for (size_t i = 0; b && i < N_BACKENDS; i++) {
        if (b != &table[i].info) continue;
        if (table[i].ops) return table[i].ops;
        char list[128];
        lr_fail(LR_E_BACKEND, "backend: \"%s\" is not built in (available: %s)", b->name,
                names(list, sizeof list, true));
        return NULL;
    }
    return NULL;
}

bool lr_backend_supports(const lr_backend_info *b, lr_dtype p) {
    for (int i = 0; b && i < b->num_precisions; i++)
        if (b->precisions[i] == p) return true;
    return false;
}
