/* plugin_driver.c: tests/test_plugin.sh's view of a loaded plugin from inside the library
 * (built and run by the test, against libllamaref.a, with the good tiny plugin's path):
 * its variants enumerated after the in-tree ones, its attention variant's declared
 * rounding in the rounding map, and its launchers reached through the family entry points
 * (lr_gpu_rms_norm(variant, ...)) with the dtype checked first and a failing launcher
 * named. No GPU is needed: the tiny launchers launch nothing. Prints one line per check;
 * exit 0 when all hold. */
#include <stdio.h>
#include <string.h>

#include "gpu_ops.h"
#include "rounding.h"

static int failed;

static void check(int ok, const char *what) {
    printf("%s: %s\n", ok ? "ok" : "FAIL", what);
    failed += !ok;
}

int main(int argc, char **argv) {
    if (argc != 2) return fprintf(stderr, "usage: plugin_driver PLUGIN.so\n"), 2;
    size_t before = lr_gpu_variant_count();
    int rc = lr_gpu_plugin_load(argv[1]);
    if (rc) return fprintf(stderr, "%s\n", lr_last_error()), 1;
    size_t n = lr_gpu_variant_count();
    check(n == before + 5, "the plugin's five variants follow the in-tree ones");
    const lr_gpu_variant *v = lr_gpu_variant_at(before);
    check(v && strcmp(v->family, "rmsnorm") == 0 && strcmp(v->name, "tiny-norm") == 0 && v->plugin &&
              strcmp(v->plugin, "tiny") == 0 && v->source && strcmp(v->source, argv[1]) == 0 &&
              !v->is_default,
          "variant_at: family, name, plugin, source, not a default");
    check(lr_gpu_variant_at(n) == NULL, "variant_at past the end is NULL");
    check(lr_gpu_variant_check("rmsnorm", "tiny-norm") == LR_OK, "variant_check finds it");
    check(lr_gpu_variant_check("rmsnorm", NULL) == LR_OK, "the family's default is still in-tree's");

    check(lr_attention_rounds_p("tiny-attn", LR_BF16, 64, 13) &&
              lr_attention_rounds_p("tiny-attn", LR_F16, 128, 2),
          "rounding map: tiny-attn rounds P at 16-bit prefill");
    check(!lr_attention_rounds_p("tiny-attn", LR_F32, 64, 13) &&
              !lr_attention_rounds_p("tiny-attn", LR_BF16, 64, 1),
          "rounding map: not at F32, not in decode");
    check(lr_attention_rounding_declare("tiny-attn", false) == LR_E_INVAL, "a second declaration is refused");

    /* Through the entry point: the launcher gets the family's struct. */
    int mark = 0;
    rc = lr_gpu_rms_norm("tiny-mark", &mark, NULL, NULL, 3, 8, 1e-5f, LR_F32, 0);
    check(mark == 1008, "lr_gpu_rms_norm reaches the plugin's launcher with its arguments");
    check(rc == LR_OK || (rc == LR_E_DEVICE && strstr(lr_last_error(), "tiny-mark")),
          "and returns LR_OK (or, without a GPU, the runtime's error naming the variant)");
    mark = 0;
    rc = lr_gpu_rms_norm("tiny-mark", &mark, NULL, NULL, 3, 8, 1e-5f, LR_BF16, 0);
    check(rc == LR_E_INVAL && mark == 0 && strstr(lr_last_error(), "does not take BF16 (it takes F32)") &&
              strstr(lr_last_error(), "plugin tiny"),
          "a dtype the variant does not take is refused before its launcher runs");
    printf("   (%s)\n", lr_last_error());
    rc = lr_gpu_fused_add_rms_norm("tiny-fail", &mark, (float *)&mark, NULL, NULL, 3, 8, 1e-5f, LR_F32, 0);
    check(rc == LR_E_INVAL && strstr(lr_last_error(), "variant \"tiny-fail\" (plugin tiny,") &&
              strstr(lr_last_error(), "failed: status -3 (LR_E_INVAL)"),
          "a failing plugin launcher is named with its status");
    printf("   (%s)\n", lr_last_error());
    rc = lr_gpu_rms_norm("tiny-nope", &mark, NULL, NULL, 3, 8, 1e-5f, LR_F32, 0);
    check(rc == LR_E_INVAL && strstr(lr_last_error(), "tiny-norm (plugin)"),
          "an unknown name lists the plugin's");
    return failed ? 1 : 0;
}
