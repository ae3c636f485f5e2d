/* ref_ops.h: the CPU reference's ops, one per module, in float64 and float32, for the
 * forward pass and for op-level tests of other backends (gpu/ kernels are checked
 * against these). Declared in the installed header llamaref_ops.h, where a developer's
 * own harness finds them too. */
#ifndef LLAMAREF_REF_OPS_H
#define LLAMAREF_REF_OPS_H

#include "llamaref_ops.h"

#endif
