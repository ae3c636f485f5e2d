/* tiny_plugin.c: kernel plugins for tests/test_plugin.sh, one source compiled with a C
 * compiler (no nvcc: the launchers launch nothing, the loader is what is tested) into a
 * good plugin and, through the macros below, one bad plugin per field the loader checks. */
#include <llamaref_kernels.h>

static int launch(const void *args, cudaStream_t s) {
    (void)args, (void)s;
    return LR_OK;
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
    {LR_GPU_FAM_ATTENTION, "tiny-attn", "tiny test plugin: rounds P", LR_KERNEL_ALL_DTYPES, LR_KERNEL_ROUNDS_P,
     launch},
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
