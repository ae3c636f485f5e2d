/* backends.c: the table of backends built into the library. A new backend is one
 * vtable (backend.h) and one line here; nothing else names it. */
#include "backend.h"

#include <stdio.h>
#include <string.h>

extern const lr_backend_ops lr_cpu_backend;
#ifdef LR_HAVE_CUDA
extern const lr_backend_ops lr_cuda_backend;
#endif

const lr_backend_ops *const lr_backends[] = {
    &lr_cpu_backend,
#ifdef LR_HAVE_CUDA
    &lr_cuda_backend,
#endif
};
const size_t lr_num_backends = sizeof lr_backends / sizeof lr_backends[0];

size_t lr_backend_count(void) { return lr_num_backends; }

const lr_backend_info *lr_backend_at(size_t i) { return i < lr_num_backends ? &lr_backends[i]->info : NULL; }

const lr_backend_info *lr_backend_find(const char *name) {
    char list[128] = "";
    size_t used = 0;
    for (size_t i = 0; i < lr_num_backends; i++) {
        const lr_backend_info *b = &lr_backends[i]->info;
        if (name && strcmp(name, b->name) == 0) return b;
        int n = snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", b->name);
        if (n > 0 && (size_t)n < sizeof list - used) used += (size_t)n;
    }
    lr_fail(LR_E_BACKEND, "backend: \"%s\" is not built in (available: %s)", name ? name : "(null)", list);
    return NULL;
}

bool lr_backend_supports(const lr_backend_info *b, lr_dtype p) {
    for (int i = 0; b && i < b->num_precisions; i++)
        if (b->precisions[i] == p) return true;
    return false;
}
