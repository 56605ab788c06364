/* tfedge runtime: SOFTMAX (int8 -> int8) in gemmlowp fixed point.
 *
 * Raw int32 values stand for gemmlowp::FixedPoint<int32_t, N> numbers with N
 * integer bits (value = raw / 2^(31 - N)); the comments give N. */
#include "tfedge_internal.h"

#define TFEDGE_SCALED_DIFF_INTEGER_BITS 5 /* input of exp(): Q5.26 */
#define TFEDGE_ACCUM_INTEGER_BITS 12      /* sum of exps: Q12.19 */

/* exp(a) for a in [-1/4, 0), Q0.31 -> Q0.31
 * (gemmlowp::exp_on_interval_between_negative_one_quarter_and_0_excl):
 * Taylor expansion around -1/8. */
static int32_t tfedge_exp_quarter(int32_t a) {
  const int32_t constant_term = 1895147668;     /* exp(-1/8) */
  const int32_t constant_1_over_3 = 715827883;  /* 1/3 */
  const int32_t x = a + (1 << 28);              /* a + 1/8 */
  const int32_t x2 = tfedge_srdhm(x, x);
  const int32_t x3 = tfedge_srdhm(x2, x);
  const int32_t x4 = tfedge_srdhm(x2, x2);
  const int32_t x4_over_4 = tfedge_rdbpot(x4, 2);
  const int32_t poly =
      tfedge_rdbpot(tfedge_srdhm(x4_over_4 + x3, constant_1_over_3) + x2, 1);
  return constant_term + tfedge_srdhm(constant_term, x + poly);
}

/* exp(a) for a <= 0, Q5.26 -> Q0.31 (gemmlowp::exp_on_negative_values): exp of
 * a mod 1/4, times exp(-2^k) for every bit k of the rest. */
static int32_t tfedge_exp_on_negative_values(int32_t a) {
  static const int32_t multipliers[7] = {
      1672461947, /* exp(-1/4) */
      1302514674, /* exp(-1/2) */
      790015084,  /* exp(-1) */
      290630308,  /* exp(-2) */
      39332535,   /* exp(-4) */
      720401,     /* exp(-8) */
      242,        /* exp(-16) */
  };
  const int32_t fractional_bits = 31 - TFEDGE_SCALED_DIFF_INTEGER_BITS;
  const int32_t one_quarter = 1 << (fractional_bits - 2);
  const int32_t mask = one_quarter - 1;
  const int32_t a_mod_quarter_minus_one_quarter = (a & mask) - one_quarter;
  /* Rescale Q5 -> Q0: saturating left shift by 5 (never saturates here). */
  int32_t result = tfedge_exp_quarter(
      tfedge_sat_shl(a_mod_quarter_minus_one_quarter, TFEDGE_SCALED_DIFF_INTEGER_BITS));
  const int32_t remainder = a_mod_quarter_minus_one_quarter - a;
  int32_t k;
  /* Exponents -2 .. +4, all below the 5 integer bits. */
  for (k = 0; k < 7; ++k) {
    const int32_t shift = fractional_bits - 2 + k;
    if (remainder & (1 << shift)) result = tfedge_srdhm(result, multipliers[k]);
  }
  /* (No clamp below -32: only for more than 5 integer bits.) */
  return a == 0 ? INT32_MAX : result;
}

/* 1 / (1 + a) for a in [0, 1), Q0.31 -> Q0.31
 * (gemmlowp::one_over_one_plus_x_for_x_in_0_1): Newton-Raphson division. */
static int32_t tfedge_one_over_one_plus_x(int32_t a) {
  const int32_t half_denominator = tfedge_rounding_half_sum(a, INT32_MAX); /* Q0 */
  const int32_t constant_48_over_17 = 1515870810;                           /* Q2 */
  const int32_t constant_neg_32_over_17 = -1010580540;                      /* Q2 */
  int32_t x = constant_48_over_17 + tfedge_srdhm(half_denominator, constant_neg_32_over_17);
  int32_t i;
  for (i = 0; i < 3; ++i) {
    const int32_t half_denominator_times_x = tfedge_srdhm(half_denominator, x); /* Q2 */
    const int32_t one_minus = (1 << 29) - half_denominator_times_x;           /* Q2 */
    x = x + tfedge_sat_shl(tfedge_srdhm(x, one_minus), 2);                     /* Q4 -> Q2 */
  }
  /* x / 2 as Q1, then Rescale Q1 -> Q0: saturating left shift by 1. */
  return tfedge_sat_shl(x, 1);
}

/* 1 / x for x in Q12.19 (tflite::GetReciprocal): returns a Q0.31 value and the
 * number of bits the reciprocal has to be shifted right. */
static int32_t tfedge_reciprocal(int32_t x, int32_t *num_bits_over_unit) {
  int32_t headroom_plus_one = 0;
  uint32_t u = (uint32_t)x;
  while (headroom_plus_one < 32 && (u & 0x80000000u) == 0) {
    u <<= 1;
    ++headroom_plus_one;
  }
  *num_bits_over_unit = TFEDGE_ACCUM_INTEGER_BITS - headroom_plus_one;
  return tfedge_one_over_one_plus_x((int32_t)(u - 0x80000000u));
}

TFEDGE_INLINE int32_t tfedge_softmax_scaled_diff(const tfedge_softmax_params *p, int32_t diff) {
  /* MultiplyByQuantizedMultiplierGreaterThanOne: SRDHM(diff * 2^left_shift, m). */
  return tfedge_srdhm(tfedge_wrap_shl(diff, p->input_left_shift), p->input_multiplier);
}

void tfedge_softmax_s8(const tfedge_softmax_params *p, const int8_t *input, int8_t *output) {
  const int32_t depth = p->depth;
  int32_t i, c;
  for (i = 0; i < p->outer_size; ++i) {
    const int8_t *in = input + (size_t)i * depth;
    int8_t *out = output + (size_t)i * depth;
    int32_t max_in_row = -128, sum_of_exps = 0, num_bits_over_unit, shifted_scale, exponent;
    for (c = 0; c < depth; ++c) max_in_row = tfedge_max(max_in_row, in[c]);
    for (c = 0; c < depth; ++c) {
      const int32_t diff = in[c] - max_in_row;
      if (diff >= p->diff_min) {
        const int32_t e = tfedge_exp_on_negative_values(tfedge_softmax_scaled_diff(p, diff));
        sum_of_exps += tfedge_rdbpot(e, TFEDGE_ACCUM_INTEGER_BITS); /* Q0 -> Q12 */
      }
    }
    shifted_scale = tfedge_reciprocal(sum_of_exps, &num_bits_over_unit);
    exponent = num_bits_over_unit + 31 - 8;
    for (c = 0; c < depth; ++c) {
      const int32_t diff = in[c] - max_in_row;
      if (diff >= p->diff_min) {
        const int32_t e = tfedge_exp_on_negative_values(tfedge_softmax_scaled_diff(p, diff));
        const int32_t unsat = tfedge_rdbpot(tfedge_srdhm(shifted_scale, e), exponent);
        out[c] = (int8_t)tfedge_clamp(unsat - 128, -128, 127);
      } else {
        out[c] = -128;
      }
    }
  }
}
