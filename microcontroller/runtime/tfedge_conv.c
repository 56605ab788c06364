/* tfedge runtime: CONV_2D (incl. grouped).
 *
 * Portable loops mirror reference_integer_ops::ConvPerChannel. The DSP loops
 * (TFEDGE_DSP) compute the same int32 accumulators as a GEMM of 2 output
 * pixels x 2 output channels per inner iteration:
 *  - for each pair of output pixels, both receptive fields are gathered into
 *    the scratch as int16 values with the input offset already added (taps in
 *    the padding read the zero point, so they become 0, exactly like a skipped
 *    tap), interleaved so that one group of four k-values is four consecutive
 *    words [a(k0,k2), b(k0,k2), a(k1,k3), b(k1,k3)];
 *  - each weight word w = (w0,w1,w2,w3) is widened with SXTB16 into (w0,w2)
 *    and (w1,w3), matching those words, and fed to 8 SMLADs: per 16 MACs two
 *    LDR (weights), two LDRD (columns), four SXTB16, eight SMLAD and the loop
 *    ADDS/BNE, 18 instructions (0.89 MACs per instruction);
 *  - the accumulators of up to TFEDGE_CONV_BLOCK channels are then
 *    requantized in one pass (tfedge_rq_rows2: constants prepared once per
 *    call, 11 instructions per output) and clamped 4 at a time.
 * Integer sums are order-independent (mod 2^32), so the accumulators, and the
 * outputs, are identical to the reference.
 */
#include "tfedge_internal.h"

size_t tfedge_conv2d_s8_scratch_bytes(const tfedge_conv_params *p) {
  const size_t k = (size_t)p->filter_h * (size_t)p->filter_w * (size_t)p->filter_c;
  /* Two int16 columns of k values, 16 bytes of requantization constants per
   * output channel and filter_c bytes (rounded up to 4) of padding values. Kept
   * the same for every build. */
  return 4u * k + 16u * (size_t)p->output_c + (((size_t)p->filter_c + 3u) & ~(size_t)3u);
}

static void tfedge_conv2d_portable(const tfedge_conv_params *p, const int8_t *input,
                                   const int8_t *filter, const int32_t *bias,
                                   const int32_t *out_mult, const int32_t *out_shift,
                                   int8_t *output) {
  const int32_t in_c = p->input_c, fc = p->filter_c;
  const int32_t groups = in_c / fc;
  const int32_t per_group = p->output_c / groups;
  const int32_t k_size = p->filter_h * p->filter_w * fc;
  int32_t b, oy, ox, oc;
  for (b = 0; b < p->batches; ++b) {
    const int8_t *in_b = input + (size_t)b * p->input_h * p->input_w * in_c;
    for (oy = 0; oy < p->output_h; ++oy) {
      const int32_t y0 = oy * p->stride_h - p->pad_h;
      for (ox = 0; ox < p->output_w; ++ox) {
        const int32_t x0 = ox * p->stride_w - p->pad_w;
        for (oc = 0; oc < p->output_c; ++oc) {
          const int32_t g = oc / per_group;
          const int8_t *w = filter + (size_t)oc * k_size;
          int32_t acc = 0, ky, kx, c;
          for (ky = 0; ky < p->filter_h; ++ky) {
            const int32_t iy = y0 + p->dilation_h * ky;
            if (iy < 0 || iy >= p->input_h) continue;
            for (kx = 0; kx < p->filter_w; ++kx) {
              const int32_t ix = x0 + p->dilation_w * kx;
              const int8_t *x, *wk;
              if (ix < 0 || ix >= p->input_w) continue;
              x = in_b + ((size_t)iy * p->input_w + ix) * in_c + g * fc;
              wk = w + (ky * p->filter_w + kx) * fc;
              for (c = 0; c < fc; ++c) acc += wk[c] * (x[c] + p->input_offset);
            }
          }
          if (bias != NULL) acc += bias[oc];
          *output++ = tfedge_requant_s8(acc, out_mult[oc], out_shift[oc], p->output_offset,
                                        p->act_min, p->act_max);
        }
      }
    }
  }
}

#if TFEDGE_DSP

/* Receptive fields of output pixels a = (ya, xa) and b = (yb, xb), group g, as
 * int16 (x + offset) in the interleaved column layout. Taps in the padding
 * read `zp`, fc bytes equal to the input zero point, so that they become 0. */
static void tfedge_conv_gather2(const tfedge_conv_params *p, const int8_t *in_b, int32_t g,
                                int32_t ya, int32_t xa, int32_t yb, int32_t xb,
                                const int8_t *zp, uint32_t *col, int16_t *tail) {
  const int32_t fc = p->filter_c, in_c = p->input_c, in_h = p->input_h, in_w = p->input_w;
  const int32_t k_size = p->filter_h * p->filter_w * fc;
  const int32_t k4 = k_size & ~3;
  const int32_t ya0 = ya * p->stride_h - p->pad_h, xa0 = xa * p->stride_w - p->pad_w;
  const int32_t yb0 = yb * p->stride_h - p->pad_h, xb0 = xb * p->stride_w - p->pad_w;
  const uint32_t off2 = tfedge_pack16(p->input_offset, p->input_offset);
  int32_t ky, kx, c, j = 0;
  for (ky = 0; ky < p->filter_h; ++ky) {
    const int32_t iya = ya0 + p->dilation_h * ky, iyb = yb0 + p->dilation_h * ky;
    for (kx = 0; kx < p->filter_w; ++kx) {
      const int32_t ixa = xa0 + p->dilation_w * kx, ixb = xb0 + p->dilation_w * kx;
      const int8_t *sa = iya >= 0 && iya < in_h && ixa >= 0 && ixa < in_w
                             ? in_b + ((size_t)iya * in_w + ixa) * in_c + g * fc
                             : zp;
      const int8_t *sb = iyb >= 0 && iyb < in_h && ixb >= 0 && ixb < in_w
                             ? in_b + ((size_t)iyb * in_w + ixb) * in_c + g * fc
                             : zp;
      if ((fc & 3) == 0) {
        /* Whole words: a tap is fc / 4 groups of four k-values. */
        uint32_t *dst = col + j;
        for (c = 0; c < fc; c += 4) {
          const uint32_t va = tfedge_read4(sa + c), vb = tfedge_read4(sb + c);
          dst[0] = tfedge_sxtab16(off2, va);
          dst[1] = tfedge_sxtab16(off2, vb);
          dst[2] = tfedge_sxtab16_ror8(off2, va);
          dst[3] = tfedge_sxtab16_ror8(off2, vb);
          dst += 4;
        }
        j += fc;
      } else {
        /* One k-value at a time (first layers with 1 or 3 channels). */
        for (c = 0; c < fc; ++c, ++j) {
          const int32_t va = sa[c] + p->input_offset, vb = sb[c] + p->input_offset;
          if (j < k4) {
            /* Words (k0,k2) or (k1,k3) of the group; halfword (j >> 1) & 1. */
            uint32_t *word = col + (j >> 2) * 4 + (j & 1) * 2;
            if ((j >> 1) & 1) {
              word[0] = (word[0] & 0xFFFFu) | ((uint32_t)va << 16);
              word[1] = (word[1] & 0xFFFFu) | ((uint32_t)vb << 16);
            } else {
              word[0] = (word[0] & 0xFFFF0000u) | ((uint32_t)va & 0xFFFFu);
              word[1] = (word[1] & 0xFFFF0000u) | ((uint32_t)vb & 0xFFFFu);
            }
          } else {
            tail[j - k4] = (int16_t)va;
            tail[(k_size - k4) + (j - k4)] = (int16_t)vb;
          }
        }
      }
    }
  }
}

/* acc[0..3] += dot products of pixels (a, b) x weights (w0, w1 = w0 + k_size)
 * over the first k4 (a multiple of 4) values: acc = {a.w0, b.w0, a.w1, b.w1}. */
TFEDGE_INLINE void tfedge_dot_2x2(const uint32_t *col, int32_t k4, const int8_t *w0,
                                  int32_t k_size, int32_t *acc) {
#if TFEDGE_ASM
  /* The loop is 18 instructions per 16 MACs in 13 registers (GCC spills the
   * C version below). */
  int32_t k = -k4;
  const int8_t *w1 = w0 + k_size + k4;
  uint32_t s00 = (uint32_t)acc[0], s10 = (uint32_t)acc[1], s01 = (uint32_t)acc[2];
  uint32_t s11 = (uint32_t)acc[3], v0, v1, x0, x1, t;
  w0 += k4;
  __asm__ volatile(
      "1:\n\t"
      "ldr    %[v0], [%[w0], %[k]]\n\t"
      "ldr    %[v1], [%[w1], %[k]]\n\t"
      "ldrd   %[x0], %[x1], [%[col]], #8\n\t"
      "sxtb16 %[t], %[v0]\n\t"
      "smlad  %[s00], %[x0], %[t], %[s00]\n\t"
      "smlad  %[s10], %[x1], %[t], %[s10]\n\t"
      "sxtb16 %[t], %[v1]\n\t"
      "smlad  %[s01], %[x0], %[t], %[s01]\n\t"
      "smlad  %[s11], %[x1], %[t], %[s11]\n\t"
      "ldrd   %[x0], %[x1], [%[col]], #8\n\t"
      "sxtb16 %[t], %[v0], ror #8\n\t"
      "smlad  %[s00], %[x0], %[t], %[s00]\n\t"
      "smlad  %[s10], %[x1], %[t], %[s10]\n\t"
      "sxtb16 %[t], %[v1], ror #8\n\t"
      "smlad  %[s01], %[x0], %[t], %[s01]\n\t"
      "smlad  %[s11], %[x1], %[t], %[s11]\n\t"
      "adds   %[k], %[k], #4\n\t"
      "bne    1b\n\t"
      : [col] "+r"(col), [k] "+r"(k), [s00] "+r"(s00), [s01] "+r"(s01), [s10] "+r"(s10),
        [s11] "+r"(s11), [v0] "=&r"(v0), [v1] "=&r"(v1), [x0] "=&r"(x0), [x1] "=&r"(x1),
        [t] "=&r"(t)
      : [w0] "r"(w0), [w1] "r"(w1)
      : "cc", "memory");
  acc[0] = (int32_t)s00;
  acc[1] = (int32_t)s10;
  acc[2] = (int32_t)s01;
  acc[3] = (int32_t)s11;
#else
  const int8_t *w1 = w0 + k_size;
  int32_t s00 = acc[0], s10 = acc[1], s01 = acc[2], s11 = acc[3], k;
  for (k = 0; k < k4; k += 4) {
    const uint32_t v0 = tfedge_read4(w0 + k), v1 = tfedge_read4(w1 + k);
    uint32_t t = tfedge_sxtb16(v0);
    s00 = tfedge_smlad(col[0], t, s00);
    s10 = tfedge_smlad(col[1], t, s10);
    t = tfedge_sxtb16(v1);
    s01 = tfedge_smlad(col[0], t, s01);
    s11 = tfedge_smlad(col[1], t, s11);
    t = tfedge_sxtb16_ror8(v0);
    s00 = tfedge_smlad(col[2], t, s00);
    s10 = tfedge_smlad(col[3], t, s10);
    t = tfedge_sxtb16_ror8(v1);
    s01 = tfedge_smlad(col[2], t, s01);
    s11 = tfedge_smlad(col[3], t, s11);
    col += 4;
  }
  acc[0] = s00;
  acc[1] = s10;
  acc[2] = s01;
  acc[3] = s11;
#endif
}

/* Output channels per accumulator block. The GEMM phase (13 registers in its
 * inner loop) stores 4 accumulators per channel pair; the requantization phase
 * then runs with all registers free. Both are separate functions so that
 * GCC's register allocation of each stays simple. */
#define TFEDGE_CONV_BLOCK 32

/* acc[2j], acc[2j + 1] = pixel a, pixel b accumulators of channel j (bias
 * included), for n channels; an odd last channel is computed twice. */
static TFEDGE_NOINLINE void tfedge_conv_gemm(const uint32_t *col, const int16_t *tail,
                                             int32_t k4, int32_t k_tail, const int8_t *w,
                                             int32_t n, const int32_t *bias, int32_t *acc) {
  const int32_t k_size = k4 + k_tail;
  int32_t i, k;
  if (bias != NULL) {
    for (i = 0; i < n; ++i) acc[2 * i] = acc[2 * i + 1] = bias[i];
  } else {
    for (i = 0; i < 2 * n; ++i) acc[i] = 0;
  }
  if (k4 > 0) {
    for (i = 0; i + 1 < n; i += 2) {
      tfedge_dot_2x2(col, k4, w + (size_t)i * k_size, k_size, acc + 2 * i);
    }
    if (i < n) {
      /* An odd last channel: its row twice, into a copy of its accumulators. */
      int32_t s[4];
      s[0] = s[2] = acc[2 * i];
      s[1] = s[3] = acc[2 * i + 1];
      tfedge_dot_2x2(col, k4, w + (size_t)i * k_size, 0, s);
      acc[2 * i] = s[0];
      acc[2 * i + 1] = s[1];
    }
  }
  for (i = 0; i < n && k_tail > 0; ++i) {
    const int8_t *w0 = w + (size_t)i * k_size + k4;
    for (k = 0; k < k_tail; ++k) {
      acc[2 * i] += tail[k] * w0[k];
      acc[2 * i + 1] += tail[k_tail + k] * w0[k];
    }
  }
}

static void tfedge_conv2d_dsp(const tfedge_conv_params *p, const int8_t *input,
                              const int8_t *filter, const int32_t *bias,
                              const int32_t *out_mult, const int32_t *out_shift,
                              int8_t *output, void *scratch) {
  const int32_t in_c = p->input_c, fc = p->filter_c, out_c = p->output_c;
  const int32_t groups = in_c / fc;
  const int32_t per_group = out_c / groups;
  const int32_t k_size = p->filter_h * p->filter_w * fc;
  const int32_t k4 = k_size & ~3, k_tail = k_size - k4;
  const int32_t out_w = p->output_w, pixels = p->output_h * out_w;
  const int32_t in_image = p->input_h * p->input_w * in_c;
  const int32_t offset = p->output_offset, lo = p->act_min, hi = p->act_max;
  /* Scratch: the two int16 receptive fields, the requantization table, then fc
   * bytes of the input zero point (the padding). */
  uint32_t *col = (uint32_t *)scratch;
  int16_t *tail = (int16_t *)(col + k4);
  tfedge_rq *tab = (tfedge_rq *)(col + k_size);
  int8_t *zp = (int8_t *)(tab + out_c);
  const int32_t fast = tfedge_rq_table(out_mult, out_shift, offset, out_c, tab);
  int32_t acc[2 * TFEDGE_CONV_BLOCK];
  int32_t b, g, pix, c0;
  memset(zp, (int8_t)(-p->input_offset), (size_t)fc);
  for (b = 0; b < p->batches; ++b) {
    const int8_t *in_b = input + (size_t)b * in_image;
    int8_t *out_b = output + (size_t)b * pixels * out_c;
    for (g = 0; g < groups; ++g) {
      const int32_t oc0 = g * per_group;
      for (pix = 0; pix < pixels; pix += 2) {
        /* An odd last pixel is computed twice (as a and b) and stored once. */
        const int32_t pix_b = pix + 1 < pixels ? pix + 1 : pix;
        tfedge_conv_gather2(p, in_b, g, pix / out_w, pix % out_w, pix_b / out_w, pix_b % out_w,
                            zp, col, tail);
        for (c0 = 0; c0 < per_group; c0 += TFEDGE_CONV_BLOCK) {
          const int32_t oc = oc0 + c0;
          const int32_t nb = tfedge_min(TFEDGE_CONV_BLOCK, per_group - c0);
          int8_t *out_a = out_b + (size_t)pix * out_c + oc;
          int8_t *out_bb = out_b + (size_t)pix_b * out_c + oc;
          tfedge_conv_gemm(col, tail, k4, k_tail, filter + (size_t)oc * k_size, nb,
                           bias != NULL ? bias + oc : NULL, acc);
          tfedge_rq_rows2(acc, tab + oc, nb, fast, out_a, out_bb);
          tfedge_clamp_s8(out_a, nb, lo, hi);
          tfedge_clamp_s8(out_bb, nb, lo, hi);
        }
      }
    }
  }
}

#endif /* TFEDGE_DSP */

void tfedge_conv2d_s8(const tfedge_conv_params *p, const int8_t *input, const int8_t *filter,
                      const int32_t *bias, const int32_t *out_mult, const int32_t *out_shift,
                      int8_t *output, void *scratch) {
#if TFEDGE_DSP
  if (scratch != NULL) {
    tfedge_conv2d_dsp(p, input, filter, bias, out_mult, out_shift, output, scratch);
    return;
  }
#else
  (void)scratch;
#endif
  tfedge_conv2d_portable(p, input, filter, bias, out_mult, out_shift, output);
}
