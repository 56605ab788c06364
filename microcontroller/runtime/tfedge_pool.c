/* tfedge runtime: AVERAGE_POOL_2D, MAX_POOL_2D, MEAN. */
#include "tfedge_internal.h"

/* Window [start, end) of filter rows/columns inside the input. */
TFEDGE_INLINE void tfedge_window(int32_t origin, int32_t filter, int32_t size, int32_t *start,
                                 int32_t *end) {
  *start = tfedge_max(0, -origin);
  *end = tfedge_min(filter, size - origin);
}

void tfedge_avg_pool_s8(const tfedge_pool_params *p, const int8_t *input, int8_t *output) {
  const int32_t c_count = p->channels;
  int32_t b, oy, ox, c;
  for (b = 0; b < p->batches; ++b) {
    const int8_t *in_b = input + (size_t)b * p->input_h * p->input_w * c_count;
    for (oy = 0; oy < p->output_h; ++oy) {
      const int32_t y0 = oy * p->stride_h - p->pad_h;
      int32_t fy0, fy1;
      tfedge_window(y0, p->filter_h, p->input_h, &fy0, &fy1);
      for (ox = 0; ox < p->output_w; ++ox) {
        const int32_t x0 = ox * p->stride_w - p->pad_w;
        int32_t fx0, fx1, count;
        tfedge_window(x0, p->filter_w, p->input_w, &fx0, &fx1);
        count = (fy1 - fy0) * (fx1 - fx0);
        for (c = 0; c < c_count; ++c) {
          int32_t acc = 0, fy, fx;
          for (fy = fy0; fy < fy1; ++fy) {
            const int8_t *row = in_b + ((size_t)(y0 + fy) * p->input_w + x0) * c_count + c;
            for (fx = fx0; fx < fx1; ++fx) acc += row[fx * c_count];
          }
          if (count > 0) {
            /* Round half away from zero (integer division truncates). */
            acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
          }
          *output++ = (int8_t)tfedge_clamp(acc, p->act_min, p->act_max);
        }
      }
    }
  }
}

void tfedge_max_pool_s8(const tfedge_pool_params *p, const int8_t *input, int8_t *output) {
  const int32_t c_count = p->channels;
  int32_t b, oy, ox, c;
  for (b = 0; b < p->batches; ++b) {
    const int8_t *in_b = input + (size_t)b * p->input_h * p->input_w * c_count;
    for (oy = 0; oy < p->output_h; ++oy) {
      const int32_t y0 = oy * p->stride_h - p->pad_h;
      int32_t fy0, fy1;
      tfedge_window(y0, p->filter_h, p->input_h, &fy0, &fy1);
      for (ox = 0; ox < p->output_w; ++ox) {
        const int32_t x0 = ox * p->stride_w - p->pad_w;
        int32_t fx0, fx1;
        tfedge_window(x0, p->filter_w, p->input_w, &fx0, &fx1);
        for (c = 0; c < c_count; ++c) {
          int32_t m = -128, fy, fx;
          for (fy = fy0; fy < fy1; ++fy) {
            const int8_t *row = in_b + ((size_t)(y0 + fy) * p->input_w + x0) * c_count + c;
            for (fx = fx0; fx < fx1; ++fx) m = tfedge_max(m, row[fx * c_count]);
          }
          *output++ = (int8_t)tfedge_clamp(m, p->act_min, p->act_max);
        }
      }
    }
  }
}

void tfedge_mean_s8(const tfedge_mean_params *p, const int8_t *input, int8_t *output) {
  const int32_t *kd = p->kept_dims, *ks = p->kept_strides;
  const int32_t *rd = p->reduced_dims, *rs = p->reduced_strides;
  /* sum - zero_point * count, in int64 then wrapped to int32 as the reference. */
  const int64_t bias = (int64_t)p->input_zero_point * (int64_t)p->count;
  int32_t k0, k1, k2, k3, r0, r1, r2, r3;
  for (k0 = 0; k0 < kd[0]; ++k0)
    for (k1 = 0; k1 < kd[1]; ++k1)
      for (k2 = 0; k2 < kd[2]; ++k2)
        for (k3 = 0; k3 < kd[3]; ++k3) {
          const int8_t *base = input + k0 * ks[0] + k1 * ks[1] + k2 * ks[2] + k3 * ks[3];
          uint32_t sum = 0; /* int32 wrapping sum */
          int32_t shifted, v;
          for (r0 = 0; r0 < rd[0]; ++r0)
            for (r1 = 0; r1 < rd[1]; ++r1)
              for (r2 = 0; r2 < rd[2]; ++r2) {
                const int8_t *q = base + r0 * rs[0] + r1 * rs[1] + r2 * rs[2];
                const int32_t n = rd[3], s = rs[3];
                for (r3 = 0; r3 < n; ++r3) sum += (uint32_t)(int32_t)q[r3 * s];
              }
          shifted = (int32_t)(uint32_t)((uint64_t)(int64_t)(int32_t)sum - (uint64_t)bias);
          v = tfedge_mbqm(shifted, p->multiplier, p->shift) + p->output_zero_point;
          *output++ = (int8_t)tfedge_clamp(v, -128, 127);
        }
}
