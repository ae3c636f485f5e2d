/* activation.cu: placeholder, being written. */
#include "common.cuh"
