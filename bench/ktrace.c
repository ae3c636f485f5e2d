/* ktrace.c: a kernel tracer for any CUDA program, loaded by the CUDA driver itself
 * (CUDA_INJECTION64_PATH): every kernel the program runs, eager or a node of a replayed
 * CUDA graph, as one JSON line with its start and end on the GPU's clock. Nsight Compute
 * runs kernels one at a time, so it cannot show what a decode step's kernels take inside a
 * graph, where programmatic dependent launch overlaps each kernel's start with the end of
 * the one before; Nsight Systems, which can, is not on every machine. CUPTI's activity API
 * (libcupti, part of the CUDA toolkit) records the same timestamps Nsight Systems shows.
 *
 * Use (tools/ktrace.sh sets the two variables; tools/ktrace-summary.py reads the lines):
 *   CUDA_INJECTION64_PATH=bench/libllamaref_ktrace.so LLAMAREF_KTRACE=trace.jsonl PROGRAM ...
 *
 * The file is created, never overwritten: where it exists, or LLAMAREF_KTRACE is unset, or
 * CUPTI refuses (no GPU, or another profiler holds it), the program is stopped with exit
 * status 2 and the reason, and a file this run created is removed (a run that asked for a
 * trace and silently got none would look like a program that launched nothing).
 *
 * Lines: first {"ktrace": 1, "cupti_api": N}; then one a kernel: name (demangled where
 * possible), start and end (ns), device, stream, graph and node (0 for a kernel not launched
 * by a graph), corr (the launch's correlation id: one graph launch's kernels share it), grid
 * and block, regs, smem (static + dynamic bytes); last {"dropped": N, "kernels": N}. The
 * kernels of a buffer are written when CUPTI hands it back, in the buffer's order (not
 * always by start). The tracing costs a little per launch (the host's side); the kernels'
 * times are the GPU's own. */
#include <cupti.h>
#include <jansson.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* libstdc++'s demangler (the kernels are C++ templates); the library links it. */
char *__cxa_demangle(const char *mangled, char *out, size_t *length, int *status);

#define BUFFER_BYTES ((size_t)8 << 20)
#define ALIGN 8

static FILE *trace;
static const char *trace_path;
static pthread_mutex_t trace_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long long kernels;

/* Stops the program, saying why; the trace this run created (if any) is removed. */
static void fail(const char *what, CUptiResult r) {
    const char *s = "unknown error";
    if (r != CUPTI_SUCCESS) cuptiGetResultString(r, &s);
    fprintf(stderr, "ktrace: %s%s%s\n", what, r != CUPTI_SUCCESS ? ": " : "", r != CUPTI_SUCCESS ? s : "");
    if (trace) {
        fclose(trace);
        unlink(trace_path);
    }
    _exit(2);
}

static void CUPTIAPI buffer_requested(uint8_t **buffer, size_t *size, size_t *max_records) {
    void *p = NULL;
    if (posix_memalign(&p, ALIGN, BUFFER_BYTES) != 0) p = NULL; /* CUPTI drops the records and counts them */
    *buffer = (uint8_t *)p;
    *size = p ? BUFFER_BYTES : 0;
    *max_records = 0;
}

static json_t *triple(int32_t x, int32_t y, int32_t z) {
    return json_pack("[iii]", (json_int_t)x, (json_int_t)y, (json_int_t)z);
}

static void write_kernel(const CUpti_ActivityKernel10 *k) {
    int status = -1;
    char *dem = k->name ? __cxa_demangle(k->name, NULL, NULL, &status) : NULL;
    const char *name = status == 0 && dem ? dem : k->name ? k->name : "?";
    json_t *o = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o, s:I, s:I}", "name", name,
                          "start", (json_int_t)k->start, "end", (json_int_t)k->end, "device",
                          (json_int_t)k->deviceId, "stream", (json_int_t)k->streamId, "graph",
                          (json_int_t)k->graphId, "node", (json_int_t)k->graphNodeId, "corr",
                          (json_int_t)k->correlationId, "grid", triple(k->gridX, k->gridY, k->gridZ), "block",
                          triple(k->blockX, k->blockY, k->blockZ), "regs", (json_int_t)k->registersPerThread,
                          "smem", (json_int_t)k->staticSharedMemory + k->dynamicSharedMemory);
    free(dem);
    if (!o || json_dumpf(o, trace, JSON_COMPACT) != 0 || fputc('\n', trace) == EOF)
        fail("cannot write a kernel's line to the trace", CUPTI_SUCCESS);
    json_decref(o);
    kernels++;
}

static void CUPTIAPI buffer_completed(CUcontext ctx, uint32_t stream, uint8_t *buffer, size_t size,
                                      size_t valid) {
    (void)ctx, (void)stream, (void)size;
    CUpti_Activity *rec = NULL;
    pthread_mutex_lock(&trace_lock);
    while (trace && cuptiActivityGetNextRecord(buffer, valid, &rec) == CUPTI_SUCCESS)
        if (rec->kind == CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL)
            write_kernel((const CUpti_ActivityKernel10 *)rec);
    pthread_mutex_unlock(&trace_lock);
    free(buffer);
}

/* At the program's exit (registered after the CUDA runtime's own handlers, so it runs
 * before them): the records still buffered, then the closing line. */
static void finish(void) {
    cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
    size_t dropped = 0;
    cuptiActivityGetNumDroppedRecords(NULL, 0, &dropped);
    pthread_mutex_lock(&trace_lock);
    if (trace) {
        fprintf(trace, "{\"dropped\": %zu, \"kernels\": %llu}\n", dropped, kernels);
        if (fclose(trace) != 0) fprintf(stderr, "ktrace: closing %s: %s\n", trace_path, strerror(errno));
        trace = NULL;
    }
    pthread_mutex_unlock(&trace_lock);
    if (dropped) fprintf(stderr, "ktrace: %zu records dropped (the trace is incomplete)\n", dropped);
}

/* Called by the CUDA driver when it loads the library named by CUDA_INJECTION64_PATH. */
int InitializeInjection(void);
int InitializeInjection(void) {
    trace_path = getenv("LLAMAREF_KTRACE");
    if (!trace_path || !*trace_path)
        fail("LLAMAREF_KTRACE names no file (tools/ktrace.sh sets it)", CUPTI_SUCCESS);
    int fd = open(trace_path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) {
        fprintf(stderr, "ktrace: cannot create %s: %s%s\n", trace_path, strerror(errno),
                errno == EEXIST ? " (a trace is never overwritten)" : "");
        _exit(2);
    }
    trace = fdopen(fd, "w");
    if (!trace) fail("fdopen failed", CUPTI_SUCCESS);
    uint32_t api = 0;
    cuptiGetVersion(&api);
    fprintf(trace, "{\"ktrace\": 1, \"cupti_api\": %u}\n", api);
    CUptiResult r = cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed);
    if (r != CUPTI_SUCCESS) fail("cuptiActivityRegisterCallbacks", r);
    r = cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
    if (r != CUPTI_SUCCESS) fail("cuptiActivityEnable(CONCURRENT_KERNEL)", r);
    atexit(finish);
    return 1;
}
