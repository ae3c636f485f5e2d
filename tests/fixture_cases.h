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

/* The golden's stage by name, as an error model's reference norms (lr_stage_source). */
static inline const lr_tensor *case_golden_stage(void *fixture, const char *stage) {
    const lr_st_entry *e = lr_fixture_stage(fixture, stage);
    return e ? &e->t : NULL;
}

/* The error model (docs/error-model.md) of a case's fixture run at a precision: its
 * weights' dtype, its batch's mean context, the golden's norms. */
static inline lr_error_model *case_error_model(const loaded *L, lr_dtype precision) {
    const lr_st_entry *emb = lr_checkpoint_find(L->ck, "model.embed_tokens.weight");
    ck_assert_ptr_nonnull(emb);
    lr_error_model *em;
    ck_assert_msg(lr_error_model_create_batch(lr_checkpoint_config(L->ck), emb->t.dtype, precision,
                                              lr_fixture_batch(L->fx), case_golden_stage, L->fx, &em) == LR_OK,
                  "%s", lr_last_error());
    return em;
}

#endif
