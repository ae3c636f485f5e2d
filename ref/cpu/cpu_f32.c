/* cpu_f32.c: the CPU reference's ops and forward pass in float32 (the templates in
 * ref/ops/ instantiated with LR_REAL = 32). */
#define LR_REAL 32
#include "cpu_ops.h"
