/* tiny_plugin.c: kernel plugins for tests/test_plugin.sh, one source compiled with a C
 * compiler (no nvcc: the launchers launch nothing; the loader, the registry and the entry
 * points are what is tested) into a good plugin and, through the macros below, one bad
 * plugin per field the loader checks. */
#include <llamaref_kernels.h>

static int launch(const void *args, cudaStream_t s) {
    (void)args, (void)s;
    return LR_OK;
}

/* rmsnorm "tiny-mark": marks its call in y, which plugin_driver.c points at a host int
 * (the registry and the entry point reach the launcher; no kernel is launched). */
static int mark(const void *args, cudaStream_t s) {
    (void)s;
    const lr_gpu_rmsnorm_args *a = (const lr_gpu_rmsnorm_args *)args;
    *(int *)a->y = 1000 + (int)a->H;
    return LR_OK;
}

/* rmsnorm "tiny-fail": fails as a launcher does with a shape it cannot take. */
static int fail(const void *args, cudaStream_t s) {
    (void)args, (void)s;
    return LR_E_INVAL;
}

#ifndef FAMILY
#define FAMILY LR_GPU_FAM_RMSNORM
#endif
#ifndef VNAME
#define VNAME "tiny-norm"
#endif
#ifndef DESCRIPTION
#define DESCRIPTION "tiny test plugin: launches nothing"
#endif
#ifndef DTYPES
#define DTYPES LR_KERNEL_ALL_DTYPES
#endif
#ifndef ROUNDING
#define ROUNDING 0
#endif
#ifndef LAUNCH
#define LAUNCH launch
#endif
#ifndef ABI
#define ABI LR_KERNEL_ABI_VERSION
#endif
#ifndef PNAME
#define PNAME "tiny"
#endif

static const lr_kernel_variant variants[] = {
    {FAMILY, VNAME, DESCRIPTION, DTYPES, ROUNDING, LAUNCH},
    {LR_GPU_FAM_RMSNORM, "tiny-bf16", "tiny test plugin: BF16 only", LR_KERNEL_BF16, 0, launch},
    {LR_GPU_FAM_ATTENTION, "tiny-attn", "tiny test plugin: rounds P", LR_KERNEL_ALL_DTYPES,
     LR_KERNEL_ROUNDS_P, launch},
    {LR_GPU_FAM_RMSNORM, "tiny-mark", "tiny test plugin: marks its call", LR_KERNEL_F32, 0, mark},
    {LR_GPU_FAM_RMSNORM, "tiny-fail", "tiny test plugin: fails", LR_KERNEL_F32, 0, fail},
#ifdef DUP
    {LR_GPU_FAM_RMSNORM, "tiny-norm", "the first variant's name again", LR_KERNEL_ALL_DTYPES, 0, launch},
#endif
};

#ifndef COUNT
#define COUNT (sizeof variants / sizeof variants[0])
#endif

#ifndef NO_SYMBOL
LR_KERNEL_PLUGIN_EXPORT const lr_kernel_plugin llamaref_kernel_plugin = {ABI, PNAME, COUNT, variants};
#else
LR_KERNEL_PLUGIN_EXPORT const lr_kernel_plugin another_name = {ABI, PNAME, COUNT, variants};
#endif
