/* fuzz.h: what the fuzz targets share. Each fuzz_<name>.c defines the libFuzzer entry
 * point below; clang links it with libFuzzer (make fuzz), and gcc links it with
 * replay.c into a make-check program that feeds it the committed corpus and
 * regressions. A broken invariant aborts, so both see it as a crash. */
#ifndef LLAMAREF_FUZZ_H
#define LLAMAREF_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                   \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond);   \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

/* Every failure message names its input first ("NAME: ..."). */
#define FUZZ_CHECK_MESSAGE(name)                                                           \
    FUZZ_CHECK(strncmp(lr_last_error(), name ": ", strlen(name ": ")) == 0)

#endif
