/* fixture_cases.h: the committed golden fixtures and their loader, shared by the CPU and
 * GPU forward suites (header-only: each suite is one translation unit). */
#ifndef LLAMAREF_TEST_FIXTURE_CASES_H
#define LLAMAREF_TEST_FIXTURE_CASES_H

#include "llamaref.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    const char *model, *fixture;
} fixture_case;

static const fixture_case cases[] = {
    {"gqa-f32", "gqa-f32-batch"},
    {"mha-bias-bf16", "mha-bias-bf16"},
    {"mqa-hd-f16", "mqa-hd-f16"},
    {"long-gqa-f32", "long-gqa-f32-300"},
};
#define N_CASES (int)(sizeof cases / sizeof cases[0])

typedef struct {
    lr_checkpoint *ck;
    lr_fixture *fx;
} loaded;

/* Opens a case's model and fixture under $LR_FIXTURES and checks they belong together. */
static loaded load_case(const fixture_case *c) {
    const char *root = getenv("LR_FIXTURES");
    ck_assert_msg(root != NULL, "LR_FIXTURES is not set (run through make check)");
    char dir[1024], fx[1024];
    snprintf(dir, sizeof dir, "%s/models/%s", root, c->model);
    snprintf(fx, sizeof fx, "%s/golden/%s.safetensors", root, c->fixture);
    loaded L;
    ck_assert_msg(lr_checkpoint_open(dir, &L.ck) == LR_OK, "%s", lr_last_error());
    ck_assert_msg(lr_fixture_open(fx, &L.fx) == LR_OK, "%s", lr_last_error());
    ck_assert_msg(lr_fixture_check_config(L.fx, lr_checkpoint_config(L.ck)) == LR_OK, "%s", lr_last_error());
    return L;
}

static void unload(loaded *L) {
    lr_fixture_free(L->fx);
    lr_checkpoint_close(L->ck);
}

#endif
