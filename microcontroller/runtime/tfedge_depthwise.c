/* tfedge runtime: DEPTHWISE_CONV_2D.
 *
 * Portable loops mirror reference_integer_ops::DepthwiseConvPerChannel. The DSP
 * loops (depth_multiplier 1, channels in groups of four) first list, per output
 * pixel, the (input, weight) offsets of the taps inside the image; then for
 * each group of four channels every tap is one word of inputs and one word of
 * weights, widened with SXTAB16 (adding the input offset) and SXTB16, and four
 * single 16x16 MACs (SMLABB / SMLATT) into four int32 accumulators: the same
 * sums as the reference. Requantization uses tfedge_rq_row.
 */
#include "tfedge_internal.h"

#define TFEDGE_DW_BLOCK 64 /* channels per accumulator block (DSP) */

size_t tfedge_depthwise_conv2d_s8_scratch_bytes(const tfedge_depthwise_params *p) {
  /* Requantization constants per output channel, then the tap list. */
  return 16u * (size_t)p->input_c * (size_t)p->depth_multiplier +
         8u * (size_t)p->filter_h * (size_t)p->filter_w;
}

/* Taps k with 0 <= origin + dilation * k < size. */
TFEDGE_INLINE void tfedge_dw_window(int32_t origin, int32_t dilation, int32_t filter,
                                    int32_t size, int32_t *start, int32_t *end) {
  int32_t k0 = 0, k1 = filter;
  while (k0 < filter && origin + dilation * k0 < 0) ++k0;
  while (k1 > k0 && origin + dilation * (k1 - 1) >= size) --k1;
  *start = k0;
  *end = k1;
}

/* Reference loops for channels [c_begin, in_c) of one output pixel. */
static void tfedge_dw_pixel_portable(const tfedge_depthwise_params *p, const int8_t *in_b,
                                     const int8_t *filter, const int32_t *bias,
                                     const int32_t *out_mult, const int32_t *out_shift,
                                     int32_t y0, int32_t x0, int32_t ky0, int32_t ky1,
                                     int32_t kx0, int32_t kx1, int32_t c_begin, int8_t *output) {
  const int32_t in_c = p->input_c, mult = p->depth_multiplier, out_c = in_c * mult;
  int32_t c, m, ky, kx;
  for (c = c_begin; c < in_c; ++c) {
    for (m = 0; m < mult; ++m) {
      const int32_t oc = c * mult + m;
      int32_t acc = 0;
      for (ky = ky0; ky < ky1; ++ky) {
        const int32_t iy = y0 + p->dilation_h * ky;
        for (kx = kx0; kx < kx1; ++kx) {
          const int32_t ix = x0 + p->dilation_w * kx;
          const int32_t xv = in_b[((size_t)iy * p->input_w + ix) * in_c + c];
          const int32_t wv = filter[((size_t)ky * p->filter_w + kx) * out_c + oc];
          acc += wv * (xv + p->input_offset);
        }
      }
      if (bias != NULL) acc += bias[oc];
      output[oc] = tfedge_requant_s8(acc, out_mult[oc], out_shift[oc], p->output_offset,
                                     p->act_min, p->act_max);
    }
  }
}

#if TFEDGE_DSP

/* acc[0..3] += the taps of channels c..c+3: xb, wb point at channel c of input
 * pixel (0, 0) and filter tap (0, 0); taps holds n (input, weight) offsets. */
static TFEDGE_NOINLINE void tfedge_dw_group(const int32_t *taps, int32_t n, const int8_t *xb,
                                   const int8_t *wb, uint32_t off2, int32_t *acc) {
#if TFEDGE_ASM
  /* 13 instructions per tap (4 MACs) in 13 registers. */
  uint32_t s0 = (uint32_t)acc[0], s1 = (uint32_t)acc[1], s2 = (uint32_t)acc[2];
  uint32_t s3 = (uint32_t)acc[3], x, w, x13, w13;
  __asm__ volatile(
      "1:\n\t"
      "ldrd    %[x], %[w], [%[taps]], #8\n\t"
      "ldr     %[x], [%[xb], %[x]]\n\t"
      "ldr     %[w], [%[wb], %[w]]\n\t"
      "sxtab16 %[x13], %[off2], %[x], ror #8\n\t"
      "sxtab16 %[x], %[off2], %[x]\n\t"
      "sxtb16  %[w13], %[w], ror #8\n\t"
      "sxtb16  %[w], %[w]\n\t"
      "smlabb  %[s0], %[x], %[w], %[s0]\n\t"
      "smlatt  %[s2], %[x], %[w], %[s2]\n\t"
      "smlabb  %[s1], %[x13], %[w13], %[s1]\n\t"
      "smlatt  %[s3], %[x13], %[w13], %[s3]\n\t"
      "subs    %[n], %[n], #1\n\t"
      "bne     1b\n\t"
      : [taps] "+r"(taps), [n] "+r"(n), [s0] "+r"(s0), [s1] "+r"(s1), [s2] "+r"(s2),
        [s3] "+r"(s3), [x] "=&r"(x), [w] "=&r"(w), [x13] "=&r"(x13), [w13] "=&r"(w13)
      : [xb] "r"(xb), [wb] "r"(wb), [off2] "r"(off2)
      : "cc", "memory");
  acc[0] = (int32_t)s0;
  acc[1] = (int32_t)s1;
  acc[2] = (int32_t)s2;
  acc[3] = (int32_t)s3;
#else
  int32_t s0 = acc[0], s1 = acc[1], s2 = acc[2], s3 = acc[3], i;
  for (i = 0; i < n; ++i) {
    const uint32_t xv = tfedge_read4(xb + taps[2 * i]), wv = tfedge_read4(wb + taps[2 * i + 1]);
    const uint32_t x02 = tfedge_sxtab16(off2, xv), x13 = tfedge_sxtab16_ror8(off2, xv);
    const uint32_t w02 = tfedge_sxtb16(wv), w13 = tfedge_sxtb16_ror8(wv);
    s0 = tfedge_smlabb(x02, w02, s0);
    s2 = tfedge_smlatt(x02, w02, s2);
    s1 = tfedge_smlabb(x13, w13, s1);
    s3 = tfedge_smlatt(x13, w13, s3);
  }
  acc[0] = s0;
  acc[1] = s1;
  acc[2] = s2;
  acc[3] = s3;
#endif
}

static void tfedge_dw_pixel_dsp(const tfedge_depthwise_params *p, const int8_t *in_b,
                                const int8_t *filter, const int32_t *bias,
                                const tfedge_rq *tab, int32_t fast, int32_t *taps,
                                int32_t n_taps, int32_t c4, int8_t *output) {
  const uint32_t off2 = tfedge_pack16(p->input_offset, p->input_offset);
  int32_t acc[TFEDGE_DW_BLOCK];
  int32_t c0, c, i;
  for (c0 = 0; c0 < c4; c0 += TFEDGE_DW_BLOCK) {
    const int32_t nb = tfedge_min(TFEDGE_DW_BLOCK, c4 - c0);
    for (i = 0; i < nb; ++i) acc[i] = bias != NULL ? bias[c0 + i] : 0;
    if (n_taps > 0) {
      for (c = 0; c < nb; c += 4) {
        tfedge_dw_group(taps, n_taps, in_b + c0 + c, filter + c0 + c, off2, acc + c);
      }
    }
    tfedge_rq_row(acc, tab + c0, nb, fast, output + c0);
    tfedge_clamp_s8(output + c0, nb, p->act_min, p->act_max);
  }
}

#endif /* TFEDGE_DSP */

void tfedge_depthwise_conv2d_s8(const tfedge_depthwise_params *p, const int8_t *input,
                                const int8_t *filter, const int32_t *bias,
                                const int32_t *out_mult, const int32_t *out_shift,
                                int8_t *output, void *scratch) {
  const int32_t in_c = p->input_c, mult = p->depth_multiplier;
  const int32_t out_c = in_c * mult;
  int32_t b, oy, ox;
#if TFEDGE_DSP
  /* Groups of four channels take the DSP loops; the rest the portable ones. */
  const int32_t c4 = (mult == 1 && scratch != NULL) ? (in_c & ~3) : 0;
  tfedge_rq *tab = (tfedge_rq *)scratch;
  int32_t *taps = (int32_t *)scratch + 4 * out_c;
  const int32_t fast =
      c4 > 0 ? tfedge_rq_table(out_mult, out_shift, p->output_offset, c4, tab) : 0;
#else
  const int32_t c4 = 0;
  (void)scratch;
#endif
  for (b = 0; b < p->batches; ++b) {
    const int8_t *in_b = input + (size_t)b * p->input_h * p->input_w * in_c;
    for (oy = 0; oy < p->output_h; ++oy) {
      const int32_t y0 = oy * p->stride_h - p->pad_h;
      int32_t ky0, ky1;
      tfedge_dw_window(y0, p->dilation_h, p->filter_h, p->input_h, &ky0, &ky1);
      for (ox = 0; ox < p->output_w; ++ox) {
        const int32_t x0 = ox * p->stride_w - p->pad_w;
        int32_t kx0, kx1;
        tfedge_dw_window(x0, p->dilation_w, p->filter_w, p->input_w, &kx0, &kx1);
#if TFEDGE_DSP
        if (c4 > 0) {
          int32_t n = 0, ky, kx;
          for (ky = ky0; ky < ky1; ++ky) {
            const int32_t iy = y0 + p->dilation_h * ky;
            for (kx = kx0; kx < kx1; ++kx, ++n) {
              taps[2 * n] = (iy * p->input_w + x0 + p->dilation_w * kx) * in_c;
              taps[2 * n + 1] = (ky * p->filter_w + kx) * out_c;
            }
          }
          tfedge_dw_pixel_dsp(p, in_b, filter, bias, tab, fast, taps, n, c4, output);
        }
#endif
        if (c4 < in_c) {
          tfedge_dw_pixel_portable(p, in_b, filter, bias, out_mult, out_shift, y0, x0, ky0,
                                   ky1, kx0, kx1, c4, output);
        }
        output += out_c;
      }
    }
  }
}
