/* tfedge runtime: shared helpers (see tfedge_internal.h). */
#include "tfedge_internal.h"

static int32_t tfedge_bit_length64(uint64_t x) {
  int32_t n = 0;
#if defined(__GNUC__)
  if (x != 0) n = 64 - __builtin_clzll(x);
#else
  while (x != 0) {
    ++n;
    x >>= 1;
  }
#endif
  return n;
}

int32_t tfedge_round_double_scale(int32_t acc, uint32_t mant_lo, uint32_t mant_hi,
                                  int32_t exponent) {
  const int negative = acc < 0;
  const uint32_t a = negative ? 0u - (uint32_t)acc : (uint32_t)acc;
  const uint64_t limit = negative ? 0x80000000u : 0x7FFFFFFFu;
  uint64_t lo64, hi, q, magnitude;
  uint32_t lo;
  int32_t length, dropped = 0, lsb_exponent;
  if (a == 0 || (mant_lo | mant_hi) == 0) return 0;
  /* Exact product a * mant (< 2^84) as hi * 2^32 + lo. */
  lo64 = (uint64_t)a * mant_lo;
  hi = (lo64 >> 32) + (uint64_t)a * mant_hi;
  lo = (uint32_t)lo64;
  length = hi != 0 ? 32 + tfedge_bit_length64(hi) : tfedge_bit_length64(lo);
  if (length > 53) {
    /* Round to 53 significant bits, to nearest, ties to even (1 <= dropped <= 31). */
    uint32_t rem, half;
    dropped = length - 53;
    q = (hi << (32 - dropped)) | (lo >> dropped);
    rem = lo & ((1u << dropped) - 1u);
    half = 1u << (dropped - 1);
    if (rem > half || (rem == half && (q & 1u) != 0)) ++q;
  } else {
    q = (hi << 32) | lo;
  }
  /* |double(acc) * scale| == q * 2^lsb_exponent; round half away from zero. */
  lsb_exponent = exponent + dropped;
  if (lsb_exponent >= 0) {
    if (lsb_exponent >= 32 || q > (limit >> lsb_exponent)) return INT32_MIN;
    magnitude = q << lsb_exponent;
  } else {
    const int32_t k = -lsb_exponent;
    if (k >= 64) return 0;
    magnitude = (q + ((uint64_t)1 << (k - 1))) >> k;
    if (magnitude > limit) return INT32_MIN;
  }
  return negative ? (int32_t)(0u - (uint32_t)magnitude) : (int32_t)(uint32_t)magnitude;
}

int32_t tfedge_rqd_prepare(int32_t multiplier, int32_t shift, int32_t offset, uint32_t bound,
                           int32_t *mke) {
  const int32_t e = -shift;
  /* |acc| < 2^30 keeps D = 2 * acc exact and |SRDHM| <= 2^30; with |offset| <= 128
   * and e <= 22, |k| <= 2^21 + 2^29, so k + r - 1 cannot overflow. */
  if (multiplier < 0 || e < 1 || e > 22 || bound >= (1u << 30) || offset < -128 ||
      offset > 128) {
    return 0;
  }
  mke[0] = multiplier;
  mke[1] = (int32_t)((1u << (e - 1)) + ((uint32_t)offset << e));
  mke[2] = e;
  return 1;
}

uint32_t tfedge_acc_bound(int32_t bias, int32_t taps) {
  const uint64_t b = bias < 0 ? (uint64_t)0 - (uint64_t)(int64_t)bias : (uint64_t)bias;
  const uint64_t total = b + (uint64_t)(uint32_t)taps * TFEDGE_TAP_BOUND;
  return total > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)total;
}

void tfedge_copy_run(int8_t *dst, const int8_t *src, int32_t n) {
  int32_t i = 0;
  uint32_t v;
  if (n >= 64) {
    memcpy(dst, src, (size_t)n);
    return;
  }
  for (; i + 4 <= n; i += 4) {
    memcpy(&v, src + i, 4);
    memcpy(dst + i, &v, 4);
  }
  for (; i < n; ++i) dst[i] = src[i];
}

void tfedge_clamp_s8(int8_t *p, int32_t n, int32_t lo, int32_t hi) {
  int32_t i = 0;
  if (lo <= -128 && hi >= 127) return;
#if TFEDGE_ASM
  {
    const uint32_t lo4 = 0x01010101u * (uint8_t)lo, hi4 = 0x01010101u * (uint8_t)hi;
    for (; i + 4 <= n; i += 4) {
      uint32_t v = tfedge_read4(p + i), t;
      /* GE per byte where v >= lo / v >= hi; SEL picks bytewise. */
      __asm__("ssub8  %[t], %[v], %[lo]\n\t"
              "sel    %[v], %[v], %[lo]\n\t"
              "ssub8  %[t], %[v], %[hi]\n\t"
              "sel    %[v], %[hi], %[v]\n\t"
              : [v] "+r"(v), [t] "=&r"(t)
              : [lo] "r"(lo4), [hi] "r"(hi4)
              : "cc");
      memcpy(p + i, &v, 4);
    }
  }
#endif
  for (; i < n; ++i) p[i] = (int8_t)tfedge_clamp(p[i], lo, hi);
}
