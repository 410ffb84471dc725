// Helpers shared by the safetensors reader, checkpoint and writer files (not a public API).
#pragma once
#include "nn/safetensors.h"

// The format's name of an idoc dtype ("F32", "BF16", ...).
const char *idoc_st_dtype_name(idoc_dtype dt);
// "[2, 3]" into buf; returns buf.
const char *idoc_st_format_shape(const int64_t *shape, int ndim, char *buf, size_t n);
// n elements between F32/BF16/F16 on the host; src and dst may be unaligned.
void idoc_st_convert_floats(void *dst, int ddt, const void *src, int sdt, int64_t n);
