/* fuzz_index.c: libFuzzer target for the shard index of a sharded checkpoint
 * (model.safetensors.index.json, lr_index_parse in ref/core/checkpoint.c). An index that
 * parses maps every tensor to exactly one distinct file name that stays inside the
 * checkpoint directory, and the lookups agree with the walk. */
#include "fuzz.h"
#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lr_index *ix;
    if (lr_index_parse((const char *)data, size, "fuzz.index.json", &ix) != LR_OK) {
        FUZZ_CHECK_MESSAGE("fuzz.index.json");
        return 0;
    }
    size_t n = lr_index_count(ix), nf = lr_index_file_count(ix);
    FUZZ_CHECK(nf <= n && nf <= 4096);
    for (size_t k = 0; k < nf; k++) {
        const char *fn = lr_index_file(ix, k);
        FUZZ_CHECK(fn && *fn && !strchr(fn, '/') && strcmp(fn, ".") != 0 && strcmp(fn, "..") != 0);
        for (size_t j = 0; j < k; j++) FUZZ_CHECK(strcmp(lr_index_file(ix, j), fn) != 0);
        /* What the checkpoint loader does next with it. */
        char *path = lr_path_join("ckpt", fn);
        FUZZ_CHECK(path && strlen(path) == 5 + strlen(fn));
        free(path);
    }
    size_t max_file = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = nf;
        const char *t = lr_index_at(ix, i, &k);
        FUZZ_CHECK(t && k < nf && k <= max_file);
        if (k == max_file) max_file++; /* files are numbered in order of first use */
        const char *fn = lr_index_file_of(ix, t);
        FUZZ_CHECK(fn && strcmp(fn, lr_index_file(ix, k)) == 0);
    }
    FUZZ_CHECK(max_file == nf);
    FUZZ_CHECK(lr_index_at(ix, n, NULL) == NULL && lr_index_file(ix, nf) == NULL);
    lr_index_free(ix);
    return 0;
}
