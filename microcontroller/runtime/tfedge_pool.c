/* tfedge runtime: AVERAGE_POOL_2D, MAX_POOL_2D, MEAN. */
#include "tfedge_internal.h"

/* Window [start, end) of filter rows/columns inside the input. */
TFEDGE_INLINE void tfedge_window(int32_t origin, int32_t filter, int32_t size, int32_t *start,
                                 int32_t *end) {
  *start = tfedge_max(0, -origin);
  *end = tfedge_min(filter, size - origin);
}

/* Rounded mean of a window sum (half away from zero, as the reference). */
TFEDGE_INLINE int32_t tfedge_avg_round(int32_t acc, int32_t count) {
  return acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
}

#if TFEDGE_DSP
/* Signed 16-bit lanes of a pair word. */
TFEDGE_INLINE int32_t tfedge_lane_lo(uint32_t v) { return (int32_t)(int16_t)(uint16_t)(v & 0xFFFFu); }
TFEDGE_INLINE int32_t tfedge_lane_hi(uint32_t v) { return (int32_t)(int16_t)(uint16_t)(v >> 16); }

/* Both pools with 4 channels per word (channels a multiple of 4): sums in
 * int16 lanes (SXTAB16; windows of at most 256 cells), maxima with SSUB8 / SEL. */
static void tfedge_pool_fast(const tfedge_pool_params *p, const int8_t *input, int8_t *output,
                             int32_t average) {
  const int32_t c_count = p->channels;
  const uint32_t lo4 = 0x01010101u * (uint8_t)p->act_min, hi4 = 0x01010101u * (uint8_t)p->act_max;
  int32_t b, oy, ox, c;
  for (b = 0; b < p->batches; ++b) {
    const int8_t *in_b = input + (size_t)b * p->input_h * p->input_w * c_count;
    for (oy = 0; oy < p->output_h; ++oy) {
      const int32_t y0 = oy * p->stride_h - p->pad_h;
      int32_t fy0, fy1;
      tfedge_window(y0, p->filter_h, p->input_h, &fy0, &fy1);
      for (ox = 0; ox < p->output_w; ++ox, output += c_count) {
        const int32_t x0 = ox * p->stride_w - p->pad_w;
        int32_t fx0, fx1, fy, fx;
        tfedge_window(x0, p->filter_w, p->input_w, &fx0, &fx1);
        for (c = 0; c < c_count; c += 4) {
          const int8_t *base = in_b + ((size_t)(y0 + fy0) * p->input_w + x0 + fx0) * c_count + c;
          if (average) {
            const int32_t count = (fy1 - fy0) * (fx1 - fx0);
            uint32_t a02 = 0, a13 = 0;
            int32_t v0, v1, v2, v3;
            for (fy = fy0; fy < fy1; ++fy, base += p->input_w * c_count) {
              const int8_t *q = base;
              for (fx = fx0; fx < fx1; ++fx, q += c_count) {
                const uint32_t v = tfedge_read4(q);
                a02 = tfedge_sxtab16(a02, v);
                a13 = tfedge_sxtab16_ror8(a13, v);
              }
            }
            v0 = tfedge_avg_round(tfedge_lane_lo(a02), count);
            v1 = tfedge_avg_round(tfedge_lane_lo(a13), count);
            v2 = tfedge_avg_round(tfedge_lane_hi(a02), count);
            v3 = tfedge_avg_round(tfedge_lane_hi(a13), count);
            output[c] = (int8_t)tfedge_clamp(v0, p->act_min, p->act_max);
            output[c + 1] = (int8_t)tfedge_clamp(v1, p->act_min, p->act_max);
            output[c + 2] = (int8_t)tfedge_clamp(v2, p->act_min, p->act_max);
            output[c + 3] = (int8_t)tfedge_clamp(v3, p->act_min, p->act_max);
          } else {
            uint32_t m = lo4;
            for (fy = fy0; fy < fy1; ++fy, base += p->input_w * c_count) {
              const int8_t *q = base;
              for (fx = fx0; fx < fx1; ++fx, q += c_count) m = tfedge_max8(m, tfedge_read4(q));
            }
            /* max(-128, cells) clamped to [lo, hi] is min(max(lo, cells), hi), and
             * min(a, b) == ~max(~a, ~b) bytewise (~x == -1 - x reverses the order). */
            tfedge_write4(output + c, ~tfedge_max8(~m, ~hi4));
          }
        }
      }
    }
  }
}
#endif

void tfedge_avg_pool_s8(const tfedge_pool_params *p, const int8_t *input, int8_t *output) {
  const int32_t c_count = p->channels;
  int32_t b, oy, ox, c;
#if TFEDGE_DSP
  if ((c_count & 3) == 0 && p->filter_h * p->filter_w <= 256) {
    tfedge_pool_fast(p, input, output, 1);
    return;
  }
#endif
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
          /* Round half away from zero (integer division truncates). */
          if (count > 0) acc = tfedge_avg_round(acc, count);
          *output++ = (int8_t)tfedge_clamp(acc, p->act_min, p->act_max);
        }
      }
    }
  }
}

void tfedge_max_pool_s8(const tfedge_pool_params *p, const int8_t *input, int8_t *output) {
  const int32_t c_count = p->channels;
  int32_t b, oy, ox, c;
#if TFEDGE_DSP
  if ((c_count & 3) == 0) {
    tfedge_pool_fast(p, input, output, 0);
    return;
  }
#endif
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

/* The mean of a channel from its int32 (wrapping) sum. */
TFEDGE_INLINE int8_t tfedge_mean_out(const tfedge_mean_params *p, uint32_t sum, int64_t bias) {
  const int32_t shifted = (int32_t)(uint32_t)((uint64_t)(int64_t)(int32_t)sum - (uint64_t)bias);
  const int32_t v = tfedge_mbqm(shifted, p->multiplier, p->shift) + p->output_zero_point;
  return (int8_t)tfedge_clamp(v, -128, 127);
}

void tfedge_mean_s8(const tfedge_mean_params *p, const int8_t *input, int8_t *output) {
  const int32_t *kd = p->kept_dims, *ks = p->kept_strides;
  const int32_t *rd = p->reduced_dims, *rs = p->reduced_strides;
  /* sum - zero_point * count, in int64 then wrapped to int32 as the reference. */
  const int64_t bias = (int64_t)p->input_zero_point * (int64_t)p->count;
  int32_t k0, k1, k2, k3, r0, r1, r2, r3;
#if TFEDGE_DSP
  if (kd[0] * kd[1] * kd[2] == 1 && ks[3] == 1 && rd[0] * rd[1] * rd[2] == 1) {
    /* Channels (stride 1) kept, one reduced dimension: 4 channels per word, the
     * sums in int16 lanes (SXTAB16) 256 cells at a time. */
    const int32_t channels = kd[3], n = rd[3], stride = rs[3];
    int32_t c = 0, r, i;
    for (; c + 4 <= channels; c += 4) {
      uint32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      const int8_t *q = input + c;
      for (r = 0; r < n;) {
        const int32_t chunk = tfedge_min(256, n - r);
        uint32_t a02 = 0, a13 = 0;
        for (i = 0; i < chunk; ++i, q += stride) {
          const uint32_t v = tfedge_read4(q);
          a02 = tfedge_sxtab16(a02, v);
          a13 = tfedge_sxtab16_ror8(a13, v);
        }
        s0 += (uint32_t)(int32_t)(int16_t)(uint16_t)(a02 & 0xFFFFu);
        s1 += (uint32_t)(int32_t)(int16_t)(uint16_t)(a13 & 0xFFFFu);
        s2 += (uint32_t)(int32_t)(int16_t)(uint16_t)(a02 >> 16);
        s3 += (uint32_t)(int32_t)(int16_t)(uint16_t)(a13 >> 16);
        r += chunk;
      }
      output[c] = tfedge_mean_out(p, s0, bias);
      output[c + 1] = tfedge_mean_out(p, s1, bias);
      output[c + 2] = tfedge_mean_out(p, s2, bias);
      output[c + 3] = tfedge_mean_out(p, s3, bias);
    }
    for (; c < channels; ++c) {
      uint32_t sum = 0;
      for (r = 0; r < n; ++r) sum += (uint32_t)(int32_t)input[(size_t)r * stride + c];
      output[c] = tfedge_mean_out(p, sum, bias);
    }
    return;
  }
#endif
  for (k0 = 0; k0 < kd[0]; ++k0)
    for (k1 = 0; k1 < kd[1]; ++k1)
      for (k2 = 0; k2 < kd[2]; ++k2)
        for (k3 = 0; k3 < kd[3]; ++k3) {
          const int8_t *base = input + k0 * ks[0] + k1 * ks[1] + k2 * ks[2] + k3 * ks[3];
          uint32_t sum = 0; /* int32 wrapping sum */
          for (r0 = 0; r0 < rd[0]; ++r0)
            for (r1 = 0; r1 < rd[1]; ++r1)
              for (r2 = 0; r2 < rd[2]; ++r2) {
                const int8_t *q = base + r0 * rs[0] + r1 * rs[1] + r2 * rs[2];
                const int32_t n = rd[3], s = rs[3];
                for (r3 = 0; r3 < n; ++r3) sum += (uint32_t)(int32_t)q[r3 * s];
              }
          *output++ = tfedge_mean_out(p, sum, bias);
        }
}
