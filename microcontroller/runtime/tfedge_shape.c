/* tfedge runtime: CONCATENATION, SPLIT / SPLIT_V, TRANSPOSE, PAD. */
#include "tfedge_internal.h"

/* Copies `rows` runs of n bytes, src_step and dst_step bytes apart, a word at a
 * time where n is a multiple of 4. */
static void tfedge_copy_rows(int8_t *dst, int32_t dst_step, const int8_t *src, int32_t src_step,
                             int32_t n, int32_t rows) {
  int32_t k, i;
  uint32_t v;
  if (n == 4) {
    for (k = 0; k < rows; ++k, src += src_step, dst += dst_step) {
      memcpy(&v, src, 4);
      memcpy(dst, &v, 4);
    }
  } else if ((n & 3) == 0 && n <= 64) {
    for (k = 0; k < rows; ++k, src += src_step, dst += dst_step) {
      for (i = 0; i < n; i += 4) {
        memcpy(&v, src + i, 4);
        memcpy(dst + i, &v, 4);
      }
    }
  } else {
    for (k = 0; k < rows; ++k, src += src_step, dst += dst_step) tfedge_copy_run(dst, src, n);
  }
}

void tfedge_concatenation_s8(const tfedge_concat_params *p, const int8_t *const *inputs,
                             const int32_t *copy_sizes,
                             const tfedge_requant_params *const *requant, int8_t *output) {
  int32_t k, i, total = 0, at = 0;
  for (i = 0; i < p->num_inputs; ++i) total += copy_sizes[i];
  /* Input by input: each one's rows go to the same place in every output row. */
  for (i = 0; i < p->num_inputs; ++i) {
    const int32_t n = copy_sizes[i];
    if (requant != NULL && requant[i] != NULL) {
      for (k = 0; k < p->outer_size; ++k) {
        tfedge_requantize_s8(requant[i], inputs[i] + (size_t)k * n,
                             output + (size_t)k * total + at, n);
      }
    } else {
      tfedge_copy_rows(output + at, total, inputs[i], n, n, p->outer_size);
    }
    at += n;
  }
}

void tfedge_split_s8(const tfedge_split_params *p, const int8_t *input, int8_t *const *outputs,
                     const int32_t *copy_sizes) {
  int32_t i, total = 0, at = 0;
  for (i = 0; i < p->num_outputs; ++i) total += copy_sizes[i];
  for (i = 0; i < p->num_outputs; ++i) {
    const int32_t n = copy_sizes[i];
    tfedge_copy_rows(outputs[i], n, input + at, total, n, p->outer_size);
    at += n;
  }
}

void tfedge_transpose_s8(const tfedge_transpose_params *p, const int8_t *input, int8_t *output) {
  /* Left-pad to 6 dims. */
  int32_t d[TFEDGE_MAX_DIMS], s[TFEDGE_MAX_DIMS];
  const int32_t lead = TFEDGE_MAX_DIMS - p->num_dims;
  int32_t i, i0, i1, i2, i3, i4, i5;
  for (i = 0; i < TFEDGE_MAX_DIMS; ++i) {
    d[i] = i < lead ? 1 : p->out_dims[i - lead];
    s[i] = i < lead ? 0 : p->in_strides[i - lead];
  }
  for (i0 = 0; i0 < d[0]; ++i0)
    for (i1 = 0; i1 < d[1]; ++i1)
      for (i2 = 0; i2 < d[2]; ++i2)
        for (i3 = 0; i3 < d[3]; ++i3)
          for (i4 = 0; i4 < d[4]; ++i4) {
            const int8_t *src = input + i0 * s[0] + i1 * s[1] + i2 * s[2] + i3 * s[3] + i4 * s[4];
            const int32_t n = d[5], stride = s[5];
            if (stride == 1) {
              memcpy(output, src, (size_t)n);
            } else {
              for (i5 = 0; i5 < n; ++i5) output[i5] = src[i5 * stride];
            }
            output += n;
          }
}

void tfedge_pad_s8(const tfedge_pad_params *p, const int8_t *input, int8_t *output) {
  int32_t in_d[TFEDGE_MAX_DIMS], before[TFEDGE_MAX_DIMS], out_d[TFEDGE_MAX_DIMS];
  int32_t in_stride[TFEDGE_MAX_DIMS];
  const int32_t lead = TFEDGE_MAX_DIMS - p->num_dims;
  const int8_t value = (int8_t)p->pad_value;
  int32_t i, o[TFEDGE_MAX_DIMS - 1];
  for (i = 0; i < TFEDGE_MAX_DIMS; ++i) {
    in_d[i] = i < lead ? 1 : p->input_dims[i - lead];
    before[i] = i < lead ? 0 : p->pad_before[i - lead];
    out_d[i] = in_d[i] + before[i] + (i < lead ? 0 : p->pad_after[i - lead]);
  }
  in_stride[TFEDGE_MAX_DIMS - 1] = 1;
  for (i = TFEDGE_MAX_DIMS - 2; i >= 0; --i) in_stride[i] = in_stride[i + 1] * in_d[i + 1];
  for (o[0] = 0; o[0] < out_d[0]; ++o[0])
    for (o[1] = 0; o[1] < out_d[1]; ++o[1])
      for (o[2] = 0; o[2] < out_d[2]; ++o[2])
        for (o[3] = 0; o[3] < out_d[3]; ++o[3])
          for (o[4] = 0; o[4] < out_d[4]; ++o[4]) {
            const int32_t row = out_d[5];
            int32_t inside = 1, offset = 0;
            for (i = 0; i < TFEDGE_MAX_DIMS - 1; ++i) {
              const int32_t v = o[i] - before[i];
              if (v < 0 || v >= in_d[i]) inside = 0;
              offset += v * in_stride[i];
            }
            if (!inside) {
              memset(output, value, (size_t)row);
            } else {
              const int32_t left = before[5], n = in_d[5];
              memset(output, value, (size_t)left);
              memcpy(output + left, input + offset, (size_t)n);
              memset(output + left + n, value, (size_t)(row - left - n));
            }
            output += row;
          }
}
