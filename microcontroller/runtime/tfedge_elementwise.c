/* tfedge runtime: ADD, MUL, QUANTIZE (requantize), table lookup, HARD_SWISH. */
#include "tfedge_internal.h"

/* ---- ADD / MUL with broadcasting ----------------------------------------- */

/* One MultiplyByQuantizedMultiplier prepared once per call: the single-multiply
 * form for right shifts (tfedge_mbqm_right), else the general one. */
typedef struct {
  int32_t multiplier, shift;
  tfedge_rounder r;
} tfedge_scaler;

TFEDGE_INLINE tfedge_scaler tfedge_make_scaler(int32_t multiplier, int32_t shift) {
  tfedge_scaler s;
  s.multiplier = multiplier;
  s.shift = shift;
  s.r = tfedge_mbqm_rounder(shift < 0 ? shift : -1);
  return s;
}

TFEDGE_INLINE int32_t tfedge_scale(int32_t x, const tfedge_scaler *s) {
  return s->shift < 0 ? tfedge_mbqm_right(x, s->multiplier, s->r)
                      : tfedge_mbqm(x, s->multiplier, s->shift);
}

typedef struct {
  tfedge_scaler in1, in2, out;
  int32_t off1, off2, out_off, lo, hi, left;
} tfedge_add_ctx;

/* reference_integer_ops::AddFunc. The left shift of (x + offset) by 20 cannot
 * overflow: |x + offset| <= 255. */
TFEDGE_INLINE int8_t tfedge_add_one(const tfedge_add_ctx *c, int32_t x, int32_t y) {
  const int32_t scaled1 = tfedge_scale((x + c->off1) * (1 << c->left), &c->in1);
  const int32_t scaled2 = tfedge_scale((y + c->off2) * (1 << c->left), &c->in2);
  const int32_t out = tfedge_scale(scaled1 + scaled2, &c->out) + c->out_off;
  return (int8_t)tfedge_clamp(out, c->lo, c->hi);
}

typedef struct {
  tfedge_scaler out;
  int32_t off1, off2, out_off, lo, hi;
} tfedge_mul_ctx;

/* MulElementwise: (x + off1) * (y + off2) fits in int32 (|.| <= 255 * 255). */
TFEDGE_INLINE int8_t tfedge_mul_one(const tfedge_mul_ctx *c, int32_t x, int32_t y) {
  const int32_t out = tfedge_scale((x + c->off1) * (y + c->off2), &c->out) + c->out_off;
  return (int8_t)tfedge_clamp(out, c->lo, c->hi);
}

/* Walks the 6-D broadcast in output order; the innermost dimension is a flat
 * loop with the two input strides (0 or 1 after tfedge's shape compression),
 * specialized for the stride pairs (1, 1), (1, 0) and (0, 1). */
#define TFEDGE_BROADCAST_LOOP(ONE, CTX)                                                     \
  do {                                                                                      \
    const int32_t *d = b->dims;                                                             \
    const int32_t *s1 = b->strides1;                                                        \
    const int32_t *s2 = b->strides2;                                                        \
    int8_t *out = output;                                                                   \
    int32_t i0, i1, i2, i3, i4, i5;                                                         \
    for (i0 = 0; i0 < d[0]; ++i0)                                                           \
      for (i1 = 0; i1 < d[1]; ++i1)                                                         \
        for (i2 = 0; i2 < d[2]; ++i2)                                                       \
          for (i3 = 0; i3 < d[3]; ++i3)                                                     \
            for (i4 = 0; i4 < d[4]; ++i4) {                                                 \
              const int8_t *a1 =                                                            \
                  input1 + i0 * s1[0] + i1 * s1[1] + i2 * s1[2] + i3 * s1[3] + i4 * s1[4];  \
              const int8_t *a2 =                                                            \
                  input2 + i0 * s2[0] + i1 * s2[1] + i2 * s2[2] + i3 * s2[3] + i4 * s2[4];  \
              const int32_t n = d[5], t1 = s1[5], t2 = s2[5];                               \
              if (t1 == 1 && t2 == 1) {                                                     \
                for (i5 = 0; i5 < n; ++i5) out[i5] = ONE(CTX, a1[i5], a2[i5]);              \
              } else if (t1 == 1 && t2 == 0) {                                              \
                const int32_t y = a2[0];                                                    \
                for (i5 = 0; i5 < n; ++i5) out[i5] = ONE(CTX, a1[i5], y);                   \
              } else if (t1 == 0 && t2 == 1) {                                              \
                const int32_t x = a1[0];                                                    \
                for (i5 = 0; i5 < n; ++i5) out[i5] = ONE(CTX, x, a2[i5]);                   \
              } else {                                                                      \
                for (i5 = 0; i5 < n; ++i5) out[i5] = ONE(CTX, a1[i5 * t1], a2[i5 * t2]);    \
              }                                                                             \
              out += n;                                                                     \
            }                                                                               \
  } while (0)

/* The fast ADD: with TFLite's parameters the input with the larger scale has the
 * multiplier 0.5 exactly, (2^30, 0), whose MBQM of (x + offset) << 20 is
 * (x + offset) << 19; the other input's scaled values, plus that offset part,
 * come from a 256-entry table. Both are doubled, so that the output scaling is
 * tfedge_rqd (|sum| < 2^28: each scaled input is at most 255 * 2^19 + 1). */
typedef struct {
  const int32_t *table; /* 2 * (scaled tabled input + half_offset * 2^19), by (uint8_t)x */
  int32_t mke[3];       /* output requantization (tfedge_rqd) */
} tfedge_add_fast;

TFEDGE_INLINE int8_t tfedge_add_fast_one(const tfedge_add_fast *f, int32_t half, int32_t tabled) {
  return tfedge_rqd((int32_t)((uint32_t)f->table[(uint8_t)tabled] + ((uint32_t)half << 20)),
                    f->mke);
}

#define TFEDGE_ADD_FAST_1(F, x, y) tfedge_add_fast_one(F, x, y)
#define TFEDGE_ADD_FAST_2(F, x, y) tfedge_add_fast_one(F, y, x)

/* n outputs of equally shaped inputs, four at a time. */
static void tfedge_add_fast_flat(const tfedge_add_fast *f, const int8_t *half,
                                 const int8_t *tabled, int8_t *out, int32_t n) {
  int32_t i = 0;
#if TFEDGE_DSP
  for (; i + 4 <= n; i += 4) {
    const uint32_t h = tfedge_read4(half + i), t = tfedge_read4(tabled + i);
    const int8_t o0 = tfedge_add_fast_one(f, (int8_t)h, (int8_t)t);
    const int8_t o1 = tfedge_add_fast_one(f, (int8_t)(h >> 8), (int8_t)(t >> 8));
    const int8_t o2 = tfedge_add_fast_one(f, (int8_t)(h >> 16), (int8_t)(t >> 16));
    const int8_t o3 = tfedge_add_fast_one(f, (int8_t)(h >> 24), (int8_t)(t >> 24));
    out[i] = o0;
    out[i + 1] = o1;
    out[i + 2] = o2;
    out[i + 3] = o3;
  }
#endif
  for (; i < n; ++i) out[i] = tfedge_add_fast_one(f, half[i], tabled[i]);
}

static int32_t tfedge_add_try_fast(const tfedge_add_params *p, const tfedge_broadcast *b,
                                   const int8_t *input1, const int8_t *input2, int8_t *output) {
  int32_t table[256];
  tfedge_add_fast f;
  int32_t i, half_first;
  uint32_t bound = 255u << 19; /* |(half + offset) << 19| */
  const int32_t size = b->dims[0] * b->dims[1] * b->dims[2] * b->dims[3] * b->dims[4] * b->dims[5];
  if (p->left_shift != 20 || size < 512) return 0;
  if (p->input1_multiplier == (1 << 30) && p->input1_shift == 0) {
    half_first = 1;
  } else if (p->input2_multiplier == (1 << 30) && p->input2_shift == 0) {
    half_first = 0;
  } else {
    return 0;
  }
  {
    const int32_t off = half_first ? p->input2_offset : p->input1_offset;
    const int32_t m = half_first ? p->input2_multiplier : p->input1_multiplier;
    const int32_t sh = half_first ? p->input2_shift : p->input1_shift;
    const int32_t half_off = half_first ? p->input1_offset : p->input2_offset;
    uint32_t most = 0;
    for (i = -128; i < 128; ++i) {
      const int32_t scaled = tfedge_mbqm((i + off) * (1 << 20), m, sh);
      const uint32_t mag = scaled < 0 ? 0u - (uint32_t)scaled : (uint32_t)scaled;
      if (mag > most) most = mag;
      table[(uint8_t)i] = (int32_t)((uint32_t)(scaled + half_off * (1 << 19)) << 1);
    }
    bound = most >= (1u << 30) ? 0xFFFFFFFFu : bound + most;
  }
  if (!tfedge_rqd_prepare(p->output_multiplier, p->output_shift, p->output_offset, bound,
                          f.mke)) {
    return 0;
  }
  f.table = table;
  if (b->strides1[5] == 1 && b->strides2[5] == 1 && b->dims[0] * b->dims[1] * b->dims[2] *
                                                            b->dims[3] * b->dims[4] == 1) {
    tfedge_add_fast_flat(&f, half_first ? input1 : input2, half_first ? input2 : input1, output,
                         size);
  } else if (half_first) {
    TFEDGE_BROADCAST_LOOP(TFEDGE_ADD_FAST_1, &f);
  } else {
    TFEDGE_BROADCAST_LOOP(TFEDGE_ADD_FAST_2, &f);
  }
  tfedge_clamp_s8(output, size, p->act_min, p->act_max);
  return 1;
}

void tfedge_add_s8(const tfedge_add_params *p, const tfedge_broadcast *b, const int8_t *input1,
                   const int8_t *input2, int8_t *output) {
  tfedge_add_ctx c;
  if (tfedge_add_try_fast(p, b, input1, input2, output)) return;
  c.in1 = tfedge_make_scaler(p->input1_multiplier, p->input1_shift);
  c.in2 = tfedge_make_scaler(p->input2_multiplier, p->input2_shift);
  c.out = tfedge_make_scaler(p->output_multiplier, p->output_shift);
  c.off1 = p->input1_offset;
  c.off2 = p->input2_offset;
  c.out_off = p->output_offset;
  c.lo = p->act_min;
  c.hi = p->act_max;
  c.left = p->left_shift;
  TFEDGE_BROADCAST_LOOP(tfedge_add_one, &c);
}

#if TFEDGE_DSP
/* MUL with the doubled form: D = 2 (x + off1)(y + off2) = SMULxx of the int16
 * pairs (x + off1) and 2 (y + off2), four elements per iteration of the
 * innermost (stride 1, 1) loop; |(x + off1)(y + off2)| <= 255 * 255. */
typedef struct {
  uint32_t off1, off2x2; /* pack16(off1, off1), pack16(2 off2, 2 off2) */
  int32_t mke[3];
} tfedge_mul_fast;

static void tfedge_mul_fast_flat(const tfedge_mul_fast *f, const int8_t *x, const int8_t *y,
                                 int8_t *out, int32_t n) {
  int32_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const uint32_t xv = tfedge_read4(x + i), yv = tfedge_read4(y + i);
    const uint32_t x02 = tfedge_sxtab16(f->off1, xv), x13 = tfedge_sxtab16_ror8(f->off1, xv);
    const uint32_t y02 = tfedge_dbl02(f->off2x2, yv), y13 = tfedge_dbl13(f->off2x2, yv);
    const int8_t o0 = tfedge_rqd(tfedge_smulbb(x02, y02), f->mke);
    const int8_t o1 = tfedge_rqd(tfedge_smulbb(x13, y13), f->mke);
    const int8_t o2 = tfedge_rqd(tfedge_smultt(x02, y02), f->mke);
    const int8_t o3 = tfedge_rqd(tfedge_smultt(x13, y13), f->mke);
    out[i] = o0;
    out[i + 1] = o1;
    out[i + 2] = o2;
    out[i + 3] = o3;
  }
  for (; i < n; ++i) {
    const int32_t xo = x[i] + (int16_t)(f->off1 & 0xFFFFu);
    const int32_t yo = 2 * y[i] + (int16_t)(f->off2x2 & 0xFFFFu);
    out[i] = tfedge_rqd(xo * yo, f->mke);
  }
}

static int32_t tfedge_mul_try_fast(const tfedge_mul_params *p, const tfedge_broadcast *b,
                                   const int8_t *input1, const int8_t *input2, int8_t *output) {
  tfedge_mul_fast f;
  const int32_t *d = b->dims, *s1 = b->strides1, *s2 = b->strides2;
  const int32_t size = d[0] * d[1] * d[2] * d[3] * d[4] * d[5];
  int32_t i0, i1, i2, i3, i4;
  int8_t *out = output;
  if (s1[5] != 1 || s2[5] != 1) return 0;
  if (!tfedge_rqd_prepare(p->output_multiplier, p->output_shift, p->output_offset, 65025u,
                          f.mke)) {
    return 0;
  }
  f.off1 = tfedge_pack16(p->input1_offset, p->input1_offset);
  f.off2x2 = tfedge_pack16(2 * p->input2_offset, 2 * p->input2_offset);
  for (i0 = 0; i0 < d[0]; ++i0)
    for (i1 = 0; i1 < d[1]; ++i1)
      for (i2 = 0; i2 < d[2]; ++i2)
        for (i3 = 0; i3 < d[3]; ++i3)
          for (i4 = 0; i4 < d[4]; ++i4) {
            const int8_t *a1 =
                input1 + i0 * s1[0] + i1 * s1[1] + i2 * s1[2] + i3 * s1[3] + i4 * s1[4];
            const int8_t *a2 =
                input2 + i0 * s2[0] + i1 * s2[1] + i2 * s2[2] + i3 * s2[3] + i4 * s2[4];
            tfedge_mul_fast_flat(&f, a1, a2, out, d[5]);
            out += d[5];
          }
  tfedge_clamp_s8(output, size, p->act_min, p->act_max);
  return 1;
}
#endif

void tfedge_mul_s8(const tfedge_mul_params *p, const tfedge_broadcast *b, const int8_t *input1,
                   const int8_t *input2, int8_t *output) {
  tfedge_mul_ctx c;
#if TFEDGE_DSP
  if (tfedge_mul_try_fast(p, b, input1, input2, output)) return;
#endif
  c.out = tfedge_make_scaler(p->output_multiplier, p->output_shift);
  c.off1 = p->input1_offset;
  c.off2 = p->input2_offset;
  c.out_off = p->output_offset;
  c.lo = p->act_min;
  c.hi = p->act_max;
  TFEDGE_BROADCAST_LOOP(tfedge_mul_one, &c);
}

/* ---- QUANTIZE ------------------------------------------------------------ */

/* One value of the int8 / uint8 input rescaled to the output's quantization
 * (before the output type's clamp). */
TFEDGE_INLINE int32_t tfedge_requant_one(const tfedge_requant_params *p, int32_t q) {
  return tfedge_mbqm(q - p->input_zero_point, p->multiplier, p->shift) + p->output_zero_point;
}

void tfedge_requantize_s8(const tfedge_requant_params *p, const int8_t *input, int8_t *output,
                          int32_t size) {
  int32_t i;
  for (i = 0; i < size; ++i) {
    output[i] = (int8_t)tfedge_clamp(tfedge_requant_one(p, input[i]), -128, 127);
  }
}

void tfedge_requantize_u8_s8(const tfedge_requant_params *p, const uint8_t *input,
                             int8_t *output, int32_t size) {
  int32_t i;
  for (i = 0; i < size; ++i) {
    output[i] = (int8_t)tfedge_clamp(tfedge_requant_one(p, input[i]), -128, 127);
  }
}

void tfedge_requantize_s8_u8(const tfedge_requant_params *p, const int8_t *input,
                             uint8_t *output, int32_t size) {
  int32_t i;
  for (i = 0; i < size; ++i) {
    output[i] = (uint8_t)tfedge_clamp(tfedge_requant_one(p, input[i]), 0, 255);
  }
}

/* ---- Table lookup ---------------------------------------------------------- */

void tfedge_lut_s8(const int8_t *lut, const int8_t *input, int8_t *output, int32_t size) {
  int32_t i = 0;
  for (; i + 4 <= size; i += 4) {
    const int8_t a = lut[(uint8_t)input[i]], b = lut[(uint8_t)input[i + 1]];
    const int8_t c = lut[(uint8_t)input[i + 2]], d = lut[(uint8_t)input[i + 3]];
    output[i] = a;
    output[i + 1] = b;
    output[i + 2] = c;
    output[i + 3] = d;
  }
  for (; i < size; ++i) output[i] = lut[(uint8_t)input[i]];
}

/* ---- HARD_SWISH (int16 fixed point) -------------------------------------- */
/* The reference works on int16_t values; every intermediate is converted back
 * to int16_t exactly where the C++ stores it in an int16_t, so that the unusual
 * parameter ranges (large shifts) wrap the same way. */

/* gemmlowp::SaturatingRoundingDoublingHighMul<int16_t>. */
TFEDGE_INLINE int16_t tfedge_srdhm16(int16_t a, int16_t b) {
  if (a == b && a == INT16_MIN) return INT16_MAX;
  {
    const int32_t ab = (int32_t)a * (int32_t)b;
    const int32_t nudge = ab >= 0 ? (1 << 14) : (1 - (1 << 14));
    return (int16_t)((ab + nudge) / (1 << 15));
  }
}

/* SaturatingDoublingHighMul (truncating, as SQDMULH). */
TFEDGE_INLINE int16_t tfedge_sdhm16(int16_t a, int16_t b) {
  if (a == b && a == INT16_MIN) return INT16_MAX;
  return (int16_t)(((int32_t)a * (int32_t)b) / (1 << 15));
}

/* gemmlowp::RoundingDivideByPOT<int16_t>: all values int16_t, including the
 * mask (which wraps for exponents above 15). */
TFEDGE_INLINE int16_t tfedge_rdbpot16(int16_t x, int32_t exponent) {
  const int16_t mask = (int16_t)(((int64_t)1 << exponent) - 1);
  const int16_t remainder = (int16_t)(x & mask);
  const int16_t threshold = (int16_t)((int16_t)(mask >> 1) + (x < 0 ? 1 : 0));
  return (int16_t)((int16_t)(x >> exponent) + (remainder > threshold ? 1 : 0));
}

TFEDGE_INLINE int16_t tfedge_sat_shl16(int16_t value, int32_t amount) {
  int64_t r = (int64_t)value * ((int64_t)1 << amount);
  if (r > INT16_MAX) r = INT16_MAX;
  if (r < INT16_MIN) r = INT16_MIN;
  return (int16_t)r;
}

void tfedge_hard_swish_s8(const tfedge_hard_swish_params *p, const int8_t *input,
                          int8_t *output, int32_t size) {
  const int16_t out_mult = (int16_t)p->output_multiplier_fixedpoint_int16;
  const int16_t relu_mult = (int16_t)p->reluish_multiplier_fixedpoint_int16;
  const int32_t relu_exp = p->reluish_multiplier_exponent;
  const int32_t out_exp = p->output_multiplier_exponent;
  int32_t i;
  for (i = 0; i < size; ++i) {
    const int16_t value = (int16_t)(input[i] - p->input_zero_point);
    const int16_t hires = (int16_t)(value * (1 << 7));
    const int16_t preshift_output_scale = tfedge_srdhm16(hires, out_mult);
    int16_t reluish = hires;
    int16_t preshift, out;
    if (relu_exp > 0) reluish = tfedge_sat_shl16(reluish, relu_exp - 1);
    reluish = tfedge_srdhm16(reluish, relu_mult);
    if (relu_exp > 0) reluish = tfedge_sat_shl16(reluish, 1);
    if (relu_exp < 0) reluish = tfedge_rdbpot16(reluish, -relu_exp);
    reluish = (int16_t)((reluish + (1 << 15)) >> 1);
    preshift = tfedge_sdhm16(reluish, preshift_output_scale);
    out = tfedge_rdbpot16(preshift, -out_exp);
    out = (int16_t)(out + p->output_zero_point);
    output[i] = (int8_t)(out > 127 ? 127 : (out < -128 ? -128 : out));
  }
}

/* ---- Copy ---------------------------------------------------------------- */

void tfedge_copy_s8(const int8_t *input, int8_t *output, int32_t size) {
  if (input != output && size > 0) memmove(output, input, (size_t)size);
}
