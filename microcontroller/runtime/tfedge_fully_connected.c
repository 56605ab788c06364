/* tfedge runtime: FULLY_CONNECTED.
 *
 * The accumulators are those of reference_integer_ops::FullyConnected{,PerChannel}:
 * sum((w + filter_offset) * (x + input_offset)) + bias. The DSP loop computes two
 * output units per pass over the input: one input word widened with SXTAB16
 * (adding the input offset) and two weight words widened with SXTB16 feed four
 * SMLADs (8 MACs). Requantization is either gemmlowp's (TFLM) or LiteRT's
 * reference round(acc * double scale), see tfedge_kernels.h.
 */
#include "tfedge_internal.h"

TFEDGE_INLINE int8_t tfedge_fc_output(const tfedge_fc_params *p, int32_t acc, int32_t unit,
                                      const int32_t *out_mult, const int32_t *out_shift) {
  const int32_t i = p->per_channel ? unit : 0;
  int32_t v;
  if (p->rounding == TFEDGE_ROUND_DOUBLE) {
    v = tfedge_round_double_scale(acc, (uint32_t)out_mult[2 * i], (uint32_t)out_mult[2 * i + 1],
                                  out_shift[i]);
  } else {
    v = tfedge_mbqm(acc, out_mult[i], out_shift[i]);
  }
  /* Wrapping add: v may be INT32_MIN (double rounding overflow, as on x86). */
  v = (int32_t)((uint32_t)v + (uint32_t)p->output_offset);
  return (int8_t)tfedge_clamp(v, p->act_min, p->act_max);
}

void tfedge_fully_connected_s8(const tfedge_fc_params *p, const int8_t *input,
                               const int8_t *filter, const int32_t *bias,
                               const int32_t *out_mult, const int32_t *out_shift,
                               int8_t *output) {
  const int32_t depth = p->input_depth, units = p->output_depth;
  int32_t b;
  for (b = 0; b < p->batches; ++b) {
    const int8_t *x = input + (size_t)b * depth;
    int8_t *out = output + (size_t)b * units;
    int32_t u = 0, k;
#if TFEDGE_DSP
    if (p->filter_offset == 0) {
      const uint32_t off2 = tfedge_pack16(p->input_offset, p->input_offset);
      for (; u + 2 <= units; u += 2) {
        /* One negative index counts the loop and addresses all three rows. */
        const int32_t depth4 = depth & ~3;
        const int8_t *w0 = filter + (size_t)u * depth + depth4;
        const int8_t *w1 = w0 + depth;
        const int8_t *xe = x + depth4;
        int32_t s0 = bias != NULL ? bias[u] : 0;
        int32_t s1 = bias != NULL ? bias[u + 1] : 0;
        for (k = -depth4; k != 0; k += 4) {
          const uint32_t xv = tfedge_read4(xe + k);
          const uint32_t x02 = tfedge_sxtab16(off2, xv), x13 = tfedge_sxtab16_ror8(off2, xv);
          const uint32_t v0 = tfedge_read4(w0 + k), v1 = tfedge_read4(w1 + k);
          s0 = tfedge_smlad(x02, tfedge_sxtb16(v0), s0);
          s0 = tfedge_smlad(x13, tfedge_sxtb16_ror8(v0), s0);
          s1 = tfedge_smlad(x02, tfedge_sxtb16(v1), s1);
          s1 = tfedge_smlad(x13, tfedge_sxtb16_ror8(v1), s1);
        }
        for (k = 0; k < (depth & 3); ++k) {
          const int32_t xv = xe[k] + p->input_offset;
          s0 += w0[k] * xv;
          s1 += w1[k] * xv;
        }
        out[u] = tfedge_fc_output(p, s0, u, out_mult, out_shift);
        out[u + 1] = tfedge_fc_output(p, s1, u + 1, out_mult, out_shift);
      }
    }
#endif
    for (; u < units; ++u) {
      const int8_t *w = filter + (size_t)u * depth;
      int32_t acc = 0;
      for (k = 0; k < depth; ++k) acc += (w[k] + p->filter_offset) * (x[k] + p->input_offset);
      if (bias != NULL) acc += bias[u];
      out[u] = tfedge_fc_output(p, acc, u, out_mult, out_shift);
    }
  }
}
