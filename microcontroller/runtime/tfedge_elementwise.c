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
 * (x + offset) << 19; the other input's scaled values come from a 256-entry
 * table; the output scaling is a right shift. */
typedef struct {
  const int32_t *table; /* scaled values of the tabled input, by (uint8_t)x */
  int32_t half_offset;  /* offset of the (2^30, 0) input */
  tfedge_rounder r;     /* output scaling */
  int32_t out_mult, out_off, lo, hi;
} tfedge_add_fast;

TFEDGE_INLINE int8_t tfedge_add_fast_one(const tfedge_add_fast *f, int32_t half, int32_t tabled) {
  const int32_t sum = (half + f->half_offset) * (1 << 19) + f->table[(uint8_t)tabled];
  const int32_t out = tfedge_mbqm_right(sum, f->out_mult, f->r) + f->out_off;
  return (int8_t)tfedge_clamp(out, f->lo, f->hi);
}

#define TFEDGE_ADD_FAST_1(F, x, y) tfedge_add_fast_one(F, x, y)
#define TFEDGE_ADD_FAST_2(F, x, y) tfedge_add_fast_one(F, y, x)

static int32_t tfedge_add_try_fast(const tfedge_add_params *p, const tfedge_broadcast *b,
                                   const int8_t *input1, const int8_t *input2, int8_t *output) {
  int32_t table[256];
  tfedge_add_fast f;
  int32_t i, half_first;
  const int32_t size = b->dims[0] * b->dims[1] * b->dims[2] * b->dims[3] * b->dims[4] * b->dims[5];
  if (p->left_shift != 20 || p->output_shift >= 0 || size < 512) return 0;
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
    for (i = -128; i < 128; ++i) table[(uint8_t)i] = tfedge_mbqm((i + off) * (1 << 20), m, sh);
  }
  f.table = table;
  f.half_offset = half_first ? p->input1_offset : p->input2_offset;
  f.r = tfedge_mbqm_rounder(p->output_shift);
  f.out_mult = p->output_multiplier;
  f.out_off = p->output_offset;
  f.lo = p->act_min;
  f.hi = p->act_max;
  if (half_first) {
    TFEDGE_BROADCAST_LOOP(TFEDGE_ADD_FAST_1, &f);
  } else {
    TFEDGE_BROADCAST_LOOP(TFEDGE_ADD_FAST_2, &f);
  }
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

void tfedge_mul_s8(const tfedge_mul_params *p, const tfedge_broadcast *b, const int8_t *input1,
                   const int8_t *input2, int8_t *output) {
  tfedge_mul_ctx c;
  c.out = tfedge_make_scaler(p->output_multiplier, p->output_shift);
  c.off1 = p->input1_offset;
  c.off2 = p->input2_offset;
  c.out_off = p->output_offset;
  c.lo = p->act_min;
  c.hi = p->act_max;
  TFEDGE_BROADCAST_LOOP(tfedge_mul_one, &c);
}

/* ---- QUANTIZE ------------------------------------------------------------ */

void tfedge_requantize_s8(const tfedge_requant_params *p, const int8_t *input, int8_t *output,
                          int32_t size) {
  int32_t i;
  for (i = 0; i < size; ++i) {
    const int32_t v = tfedge_mbqm(input[i] - p->input_zero_point, p->multiplier, p->shift) +
                      p->output_zero_point;
    output[i] = (int8_t)tfedge_clamp(v, -128, 127);
  }
}

void tfedge_requantize_u8_s8(const tfedge_requant_params *p, const uint8_t *input,
                             int8_t *output, int32_t size) {
  int32_t i;
  for (i = 0; i < size; ++i) {
    const int32_t v = tfedge_mbqm(input[i] - p->input_zero_point, p->multiplier, p->shift) +
                      p->output_zero_point;
    output[i] = (int8_t)tfedge_clamp(v, -128, 127);
  }
}

void tfedge_requantize_s8_u8(const tfedge_requant_params *p, const int8_t *input,
                             uint8_t *output, int32_t size) {
  int32_t i;
  for (i = 0; i < size; ++i) {
    const int32_t v = tfedge_mbqm(input[i] - p->input_zero_point, p->multiplier, p->shift) +
                      p->output_zero_point;
    output[i] = (uint8_t)tfedge_clamp(v, 0, 255);
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
