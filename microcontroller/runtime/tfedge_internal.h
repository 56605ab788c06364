/*
 * tfedge runtime: private helpers shared by the kernels (not part of the API).
 *
 * Integer fixed-point primitives with the exact semantics of gemmlowp's
 * fixedpoint.h and TFLite's kernels/internal/common.h (double-rounding
 * MultiplyByQuantizedMultiplier, i.e. TFLITE_SINGLE_ROUNDING off, which is how
 * LiteRT's reference kernels are built), plus the Cortex-M DSP intrinsics the
 * optimized loops use.
 *
 * Signed overflow: where TFLite relies on two's complement wrap-around in
 * practice (e.g. x * (1 << shift)), the helpers compute in uint32_t and convert
 * back, which GCC and Clang define as modulo 2^32.
 */
#ifndef TFEDGE_INTERNAL_H
#define TFEDGE_INTERNAL_H

#include <stdint.h>
#include <string.h>

#include "tfedge_kernels.h"

#if defined(__GNUC__)
#define TFEDGE_INLINE static inline __attribute__((always_inline))
#define TFEDGE_NOINLINE __attribute__((noinline))
#else
#define TFEDGE_INLINE static inline
#define TFEDGE_NOINLINE
#endif

/* The hand-scheduled asm loops need 13 registers: they are used when the
 * compiler optimizes (at -O0 GCC cannot find 13 free registers); otherwise the
 * same loops are compiled from C with the intrinsics. */
#if defined(__ARM_FEATURE_DSP) && !defined(TFEDGE_EMULATE_DSP) && !defined(TFEDGE_NO_DSP) && \
    defined(__OPTIMIZE__) && !defined(TFEDGE_NO_ASM)
#define TFEDGE_ASM 1
#else
#define TFEDGE_ASM 0
#endif

/* ---- DSP extension selection ------------------------------------------ */
/*
 * TFEDGE_DSP is 1 when the SMLAD loops are compiled: on a core with the DSP
 * extension (__ARM_FEATURE_DSP: Cortex-M4, M7, M33 with DSP, M55), or on any
 * host with -DTFEDGE_EMULATE_DSP (portable emulations of the few intrinsics,
 * so that the host tests run the very same loops). -DTFEDGE_NO_DSP forces the
 * portable loops everywhere.
 */
#if defined(TFEDGE_NO_DSP)
#define TFEDGE_DSP 0
#elif defined(__ARM_FEATURE_DSP) && !defined(TFEDGE_EMULATE_DSP)
#define TFEDGE_DSP 1
#include <arm_acle.h>
/* (x[0], x[2]) and (x[1], x[3]) of four int8 lanes, sign-extended to int16. */
TFEDGE_INLINE uint32_t tfedge_sxtb16(uint32_t x) { return (uint32_t)__sxtb16((int32_t)x); }
TFEDGE_INLINE uint32_t tfedge_sxtb16_ror8(uint32_t x) {
  uint32_t r;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
  return r;
}
/* a + sign-extended (x[0], x[2]) / (x[1], x[3]), lane-wise in 16 bits. */
TFEDGE_INLINE uint32_t tfedge_sxtab16(uint32_t a, uint32_t x) {
  return (uint32_t)__sxtab16((int32_t)a, (int32_t)x);
}
TFEDGE_INLINE uint32_t tfedge_sxtab16_ror8(uint32_t a, uint32_t x) {
  uint32_t r;
  __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(x));
  return r;
}
/* acc + lo(a) * lo(b) + hi(a) * hi(b), 16-bit signed lanes, 32-bit wrap. */
TFEDGE_INLINE int32_t tfedge_smlad(uint32_t a, uint32_t b, int32_t acc) {
  return __smlad((int32_t)a, (int32_t)b, acc);
}
TFEDGE_INLINE int32_t tfedge_smlabb(uint32_t a, uint32_t b, int32_t acc) {
  return __smlabb((int32_t)a, (int32_t)b, acc);
}
TFEDGE_INLINE int32_t tfedge_smlatt(uint32_t a, uint32_t b, int32_t acc) {
  return __smlatt((int32_t)a, (int32_t)b, acc);
}
TFEDGE_INLINE int32_t tfedge_smlabt(uint32_t a, uint32_t b, int32_t acc) {
  return __smlabt((int32_t)a, (int32_t)b, acc);
}
TFEDGE_INLINE int32_t tfedge_smulbb(uint32_t a, uint32_t b) {
  int32_t r;
  __asm__("smulbb %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
  return r;
}
TFEDGE_INLINE int32_t tfedge_smultt(uint32_t a, uint32_t b) {
  int32_t r;
  __asm__("smultt %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
  return r;
}
/* Bytewise signed max of four int8 lanes (SSUB8 sets GE, SEL picks). */
TFEDGE_INLINE uint32_t tfedge_max8(uint32_t a, uint32_t b) {
  uint32_t r, t;
  __asm__("ssub8  %[t], %[a], %[b]\n\t"
          "sel    %[r], %[a], %[b]\n\t"
          : [r] "=r"(r), [t] "=&r"(t)
          : [a] "r"(a), [b] "r"(b)
          : "cc");
  return r;
}
#elif defined(TFEDGE_EMULATE_DSP)
#define TFEDGE_DSP 1
TFEDGE_INLINE uint32_t tfedge_lane16(int32_t v) { return (uint32_t)v & 0xFFFFu; }
TFEDGE_INLINE int32_t tfedge_lo16(uint32_t x) { return (int32_t)(int16_t)(uint16_t)(x & 0xFFFFu); }
TFEDGE_INLINE int32_t tfedge_hi16(uint32_t x) { return (int32_t)(int16_t)(uint16_t)(x >> 16); }
TFEDGE_INLINE uint32_t tfedge_sxtb16(uint32_t x) {
  return tfedge_lane16((int8_t)(uint8_t)(x & 0xFFu)) |
         (tfedge_lane16((int8_t)(uint8_t)((x >> 16) & 0xFFu)) << 16);
}
TFEDGE_INLINE uint32_t tfedge_sxtb16_ror8(uint32_t x) {
  return tfedge_sxtb16((x >> 8) | (x << 24));
}
TFEDGE_INLINE uint32_t tfedge_sxtab16(uint32_t a, uint32_t x) {
  const uint32_t e = tfedge_sxtb16(x);
  return ((a + e) & 0xFFFFu) | (((a >> 16) + (e >> 16)) << 16);
}
TFEDGE_INLINE uint32_t tfedge_sxtab16_ror8(uint32_t a, uint32_t x) {
  return tfedge_sxtab16(a, (x >> 8) | (x << 24));
}
TFEDGE_INLINE int32_t tfedge_smlad(uint32_t a, uint32_t b, int32_t acc) {
  const uint32_t sum = (uint32_t)acc + (uint32_t)(tfedge_lo16(a) * tfedge_lo16(b)) +
                       (uint32_t)(tfedge_hi16(a) * tfedge_hi16(b));
  return (int32_t)sum;
}
TFEDGE_INLINE int32_t tfedge_smlabb(uint32_t a, uint32_t b, int32_t acc) {
  return (int32_t)((uint32_t)acc + (uint32_t)(tfedge_lo16(a) * tfedge_lo16(b)));
}
TFEDGE_INLINE int32_t tfedge_smlatt(uint32_t a, uint32_t b, int32_t acc) {
  return (int32_t)((uint32_t)acc + (uint32_t)(tfedge_hi16(a) * tfedge_hi16(b)));
}
TFEDGE_INLINE int32_t tfedge_smlabt(uint32_t a, uint32_t b, int32_t acc) {
  return (int32_t)((uint32_t)acc + (uint32_t)(tfedge_lo16(a) * tfedge_hi16(b)));
}
TFEDGE_INLINE int32_t tfedge_smulbb(uint32_t a, uint32_t b) { return tfedge_lo16(a) * tfedge_lo16(b); }
TFEDGE_INLINE int32_t tfedge_smultt(uint32_t a, uint32_t b) { return tfedge_hi16(a) * tfedge_hi16(b); }
TFEDGE_INLINE uint32_t tfedge_max8(uint32_t a, uint32_t b) {
  uint32_t r = 0;
  int32_t i;
  for (i = 0; i < 32; i += 8) {
    const int32_t x = (int8_t)(uint8_t)(a >> i), y = (int8_t)(uint8_t)(b >> i);
    r |= (uint32_t)(uint8_t)(x > y ? x : y) << i;
  }
  return r;
}
#else
#define TFEDGE_DSP 0
#endif

#if TFEDGE_DSP
/* Unaligned-safe 32-bit load of four int8 values (one LDR on Cortex-M3 and up). */
TFEDGE_INLINE uint32_t tfedge_read4(const int8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}
/* Two int16 lanes (a, b) packed as the DSP instructions expect them. */
TFEDGE_INLINE uint32_t tfedge_pack16(int32_t a, int32_t b) {
  return ((uint32_t)a & 0xFFFFu) | ((uint32_t)b << 16);
}
#endif

/* ---- gemmlowp / TFLite fixed point -------------------------------------- */

TFEDGE_INLINE int32_t tfedge_wrap_shl(int32_t x, int32_t s) {
  return (int32_t)((uint32_t)x << s);
}

TFEDGE_INLINE int32_t tfedge_min(int32_t a, int32_t b) { return a < b ? a : b; }
TFEDGE_INLINE int32_t tfedge_max(int32_t a, int32_t b) { return a > b ? a : b; }
TFEDGE_INLINE int32_t tfedge_clamp(int32_t x, int32_t lo, int32_t hi) {
  return x < lo ? lo : (x > hi ? hi : x);
}

/* gemmlowp::SaturatingRoundingDoublingHighMul<int32_t> without the INT32_MIN *
 * INT32_MIN case (never reached when b >= 0, e.g. a quantized multiplier).
 * gemmlowp adds a nudge of 2^30 or 1 - 2^30 by sign and divides by 2^31
 * truncating; both cases equal floor((a*b + 2^30) / 2^31), one 64-bit add and
 * an arithmetic shift (SMULL, ADDS, ADC and two shifts on Cortex-M). */
TFEDGE_INLINE int32_t tfedge_srdhm_nosat(int32_t a, int32_t b) {
  return (int32_t)(((int64_t)a * (int64_t)b + ((int64_t)1 << 30)) >> 31);
}

/* gemmlowp::SaturatingRoundingDoublingHighMul<int32_t>. */
TFEDGE_INLINE int32_t tfedge_srdhm(int32_t a, int32_t b) {
  if (a == b && a == INT32_MIN) return INT32_MAX;
  return tfedge_srdhm_nosat(a, b);
}

/* gemmlowp::RoundingDivideByPOT<int32_t>, 0 <= exponent <= 31. */
TFEDGE_INLINE int32_t tfedge_rdbpot(int32_t x, int32_t exponent) {
  const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* tflite::MultiplyByQuantizedMultiplier (int32 x, double rounding), for
 * multiplier >= 0 as tflite::QuantizeMultiplier makes them:
 * RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x << left, m), right).
 *
 * The right shift is computed in 4 instructions instead of gemmlowp's mask and
 * threshold: r = SRDHM(...) lies in [-2^31 + 1, 2^31 - 2] (|m| < 2^31), so with
 * s = r - (r < 0), ((s >> (e - 1)) + 1) >> 1 == floor((r + 2^(e-1) - (r < 0)) / 2^e),
 * which is gemmlowp's round-half-away-from-zero division by 2^e (e >= 1); no
 * step can overflow. */
TFEDGE_INLINE int32_t tfedge_mbqm(int32_t x, int32_t multiplier, int32_t shift) {
  int32_t r, s;
  if (shift > 0) {
    x = tfedge_wrap_shl(x, shift);
    shift = 0;
  }
  r = tfedge_srdhm_nosat(x, multiplier);
  if (shift == 0) return r;
  s = r + (r >> 31);
  return ((s >> (-shift - 1)) + 1) >> 1;
}

/* MultiplyByQuantizedMultiplier for a right shift e = -shift >= 1, in one
 * 64-bit multiply-accumulate: both roundings of the double-rounding reference
 * (SRDHM's at bit 31, RoundingDivideByPOT's at bit 31 + e) fold into one
 * constant added before a single arithmetic shift:
 *   MBQM(x, m, -e) == (x * m + 2^30 + 2^(30 + e) - (x < 0) * 2^31) >> (31 + e).
 * (RoundingDivideByPOT(r, e) == floor((r + 2^(e-1) - (r < 0)) / 2^e) with
 * r = floor((x * m + 2^30) / 2^31); r < 0 can be replaced by x < 0, which only
 * differs when r == 0, where both give 0.) On Cortex-M: AND, SUBS, SBC, SMLAL
 * and ASR. tfedge_mbqm_rounder() computes the constant once per channel. */
typedef struct {
  uint32_t lo;
  int32_t hi;
  int32_t shift; /* e - 1 */
} tfedge_rounder;

TFEDGE_INLINE tfedge_rounder tfedge_mbqm_rounder(int32_t shift) {
  tfedge_rounder r;
  const int32_t e = -shift; /* >= 1 */
  r.lo = 0x40000000u + ((uint32_t)(e == 1) << 31);
  r.hi = (int32_t)(((uint32_t)1 << e) >> 2);
  r.shift = e - 1;
  return r;
}

TFEDGE_INLINE int32_t tfedge_mbqm_right(int32_t x, int32_t multiplier, tfedge_rounder r) {
  const uint64_t c = (((uint64_t)(uint32_t)r.hi << 32) | r.lo) - ((uint32_t)x & 0x80000000u);
  const int64_t n = (int64_t)c + (int64_t)x * (int64_t)multiplier;
  return (int32_t)(n >> 32) >> r.shift;
}

/* ---- Requantization of doubled accumulators (DSP paths) ------------------ */
/*
 * The DSP loops accumulate D = 2 * acc (their int16 operands, inputs or weights,
 * are doubled ahead of the loop, the bias too), which turns
 * MultiplyByQuantizedMultiplier(acc, m, -e) + offset into 4 instructions:
 *
 *   t = SMMLAR(D, m, k)            = k + floor((2 * acc * m + 2^31) / 2^32)
 *                                  = k + SRDHM(acc, m)              (= k + r)
 *   t = t + (D >> 31)              = k + r - (acc < 0)
 *   out = SSAT8(t >> e)
 *
 * with k = 2^(e - 1) + offset * 2^e: RoundingDivideByPOT(r, e) is
 * floor((r + 2^(e-1) - (r < 0)) / 2^e), and (r < 0) can be replaced by
 * (acc < 0) (for m >= 0 they differ only where r == 0, and both give 0 there).
 * Exact when 1 <= e <= 22 and |acc| < 2^30 (then D is exact, and |k + r| stays
 * below 2^31); tfedge_rqd_prepare checks both from a bound on |acc|. Other
 * channels (multipliers of 0.5 and above, huge biases) take the general
 * tfedge_mbqm path of the caller.
 */

/* Largest |x + input_offset| * |w| of one int8 tap: 255 * 128. */
#define TFEDGE_TAP_BOUND 32640u

/* (m, k, e) of one channel into mke[0..2]; returns 0 (and leaves mke alone)
 * when the doubled form is not exact for accumulators up to `bound` in
 * magnitude (bound < 2^32: |bias| + taps * TFEDGE_TAP_BOUND). */
int32_t tfedge_rqd_prepare(int32_t multiplier, int32_t shift, int32_t offset, uint32_t bound,
                           int32_t *mke);

/* |bias| + taps * TFEDGE_TAP_BOUND, saturated to 2^32 - 1. */
uint32_t tfedge_acc_bound(int32_t bias, int32_t taps);

#if defined(__ARM_FEATURE_SAT) && !defined(TFEDGE_EMULATE_DSP)
#include <arm_acle.h>
TFEDGE_INLINE int8_t tfedge_ssat8(int32_t v) { return (int8_t)__ssat(v, 8); }
#else
TFEDGE_INLINE int8_t tfedge_ssat8(int32_t v) {
  return (int8_t)(v < -128 ? -128 : (v > 127 ? 127 : v));
}
#endif

/* ((acc << 32) + a * b + 2^31) >> 32, the high word of the 64-bit sum (SMMLAR). */
#if TFEDGE_DSP && !defined(TFEDGE_EMULATE_DSP)
TFEDGE_INLINE int32_t tfedge_smmlar(int32_t a, int32_t b, int32_t acc) {
  int32_t r;
  __asm__("smmlar %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
  return r;
}
#else
TFEDGE_INLINE int32_t tfedge_smmlar(int32_t a, int32_t b, int32_t acc) {
  const uint64_t sum = ((uint64_t)(uint32_t)acc << 32) + (uint64_t)((int64_t)a * (int64_t)b) +
                       0x80000000u;
  return (int32_t)(uint32_t)(sum >> 32);
}
#endif

/* The requantized int8 value of a doubled accumulator d (see above). */
TFEDGE_INLINE int8_t tfedge_rqd(int32_t d, const int32_t *mke) {
  const int32_t t = (int32_t)((uint32_t)tfedge_smmlar(d, mke[0], mke[1]) + (uint32_t)(d >> 31));
  return tfedge_ssat8(t >> mke[2]);
}

#if TFEDGE_DSP
/* Lane-wise (a + b) of two int16 pairs. */
TFEDGE_INLINE uint32_t tfedge_add16(uint32_t a, uint32_t b) {
  return ((a + b) & 0xFFFFu) | (((a >> 16) + (b >> 16)) << 16);
}

/* The int16 pairs (2 * (x[0] + o), 2 * (x[2] + o)) and (2 * (x[1] + o),
 * 2 * (x[3] + o)) of four int8 values x; off4 = pack16(2 * o, 2 * o). */
TFEDGE_INLINE uint32_t tfedge_dbl02(uint32_t off4, uint32_t x) {
  return tfedge_sxtab16(tfedge_sxtab16(off4, x), x);
}
TFEDGE_INLINE uint32_t tfedge_dbl13(uint32_t off4, uint32_t x) {
  return tfedge_sxtab16_ror8(tfedge_sxtab16_ror8(off4, x), x);
}

TFEDGE_INLINE void tfedge_write4(int8_t *p, uint32_t v) { memcpy(p, &v, 4); }
#endif

/* memcpy for the short runs of CONCATENATION / SPLIT (word copies below 64 bytes). */
void tfedge_copy_run(int8_t *dst, const int8_t *src, int32_t n);

/* Clamps n int8 values to [lo, hi] in place (4 at a time with SSUB8 / SEL). */
void tfedge_clamp_s8(int8_t *p, int32_t n, int32_t lo, int32_t hi);

/* SaturatingRoundingMultiplyByPOT<exponent> for a positive compile-time exponent. */
TFEDGE_INLINE int32_t tfedge_sat_shl(int32_t x, int32_t exponent) {
  const int32_t threshold = (int32_t)(((int64_t)1 << (31 - exponent)) - 1);
  if (x > threshold) return INT32_MAX;
  if (x < -threshold) return INT32_MIN;
  return tfedge_wrap_shl(x, exponent);
}

/* gemmlowp::RoundingHalfSum<int32_t>. */
TFEDGE_INLINE int32_t tfedge_rounding_half_sum(int32_t a, int32_t b) {
  const int64_t sum = (int64_t)a + (int64_t)b;
  const int64_t sign = sum >= 0 ? 1 : -1;
  return (int32_t)((sum + sign) / 2);
}

/* Requantizes an int32 accumulator with per-channel (multiplier, shift), adds the
 * output offset and clamps: the tail of every TFLite int8 conv kernel. */
TFEDGE_INLINE int8_t tfedge_requant_s8(int32_t acc, int32_t multiplier, int32_t shift,
                                       int32_t out_offset, int32_t act_min, int32_t act_max) {
  const int32_t v = tfedge_mbqm(acc, multiplier, shift) + out_offset;
  return (int8_t)tfedge_clamp(v, act_min, act_max);
}

/* round(double(acc) * scale) with round-half-away-from-zero, computed exactly
 * with integers, where scale = mant * 2^exponent (mant < 2^53 the significand of
 * the double, split as mant_lo/mant_hi). The product is first rounded to 53
 * significant bits (round to nearest even), as the double multiplication does.
 * Results outside int32 give INT32_MIN, as x86's cvttsd2si does in LiteRT. */
int32_t tfedge_round_double_scale(int32_t acc, uint32_t mant_lo, uint32_t mant_hi,
                                  int32_t exponent);

#endif /* TFEDGE_INTERNAL_H */
