/* cpu_f64.c: the CPU reference's ops and forward pass in float64 (the templates in
 * ref/ops/ instantiated with LR_REAL = 64). */
#define LR_REAL 64
#include "cpu_ops.h"
