/* cpu_ops.h: the CPU reference's op templates, in reading order, for one precision
 * (LR_REAL). Included only by cpu_f64.c and cpu_f32.c. */
#include "cpu.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/real.h"

#include "ops/embedding.c"
#include "ops/rmsnorm.c"
#include "ops/linear.c"
#include "ops/rotary.c"
#include "ops/attention.c"
#include "ops/activation.c"
#include "ops/model.c"
