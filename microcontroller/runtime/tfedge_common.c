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

int32_t tfedge_rq_table(const int32_t *mult, const int32_t *shift, int32_t offset, int32_t n,
                        tfedge_rq *tab) {
  int32_t i, fast = 1;
  for (i = 0; i < n; ++i) {
    tab[i].multiplier = mult[i];
    /* Folding the offset into the rounding constant needs |offset| << (e - 1)
     * to stay below 2^30 (the high word of x * m is below 2^30). */
    if (shift[i] < 0 && -shift[i] - 1 <= 22) {
      const tfedge_rounder r = tfedge_mbqm_rounder(shift[i]);
      tab[i].round_lo = r.lo;
      tab[i].round_hi = (int32_t)((uint32_t)r.hi + ((uint32_t)offset << r.shift));
      tab[i].shift1 = r.shift;
    } else {
      tab[i].round_lo = (uint32_t)shift[i];
      tab[i].round_hi = offset;
      tab[i].shift1 = -1;
      fast = 0;
    }
  }
  return fast;
}

/* MBQM(x) + offset for one table entry. */
TFEDGE_INLINE int32_t tfedge_rq_apply(int32_t x, const tfedge_rq *e) {
  if (e->shift1 < 0) return tfedge_mbqm(x, e->multiplier, (int32_t)e->round_lo) + e->round_hi;
  {
    tfedge_rounder r;
    r.lo = e->round_lo;
    r.hi = e->round_hi;
    r.shift = e->shift1;
    return tfedge_mbqm_right(x, e->multiplier, r);
  }
}

TFEDGE_INLINE int8_t tfedge_ssat8(int32_t v) {
  return (int8_t)(v < -128 ? -128 : (v > 127 ? 127 : v));
}

#if TFEDGE_ASM
/* One requantization: AND, SUBS, SBC, SMLAL, ASR (tfedge_mbqm_right, with the
 * output offset folded into the rounding constant), then SSAT to int8. */
#define TFEDGE_RQ_ASM(X)                                   \
  "and    %[t], " X ", #0x80000000\n\t"                    \
  "subs   %[lo], %[rl], %[t]\n\t"                          \
  "sbc    %[hi], %[rh], #0\n\t"                            \
  "smlal  %[lo], %[hi], " X ", %[m]\n\t"                   \
  "asr    " X ", %[hi], %[e1]\n\t"                         \
  "ssat   " X ", #8, " X "\n\t"
#endif

void tfedge_rq_rows2(const int32_t *acc, const tfedge_rq *tab, int32_t n, int32_t fast,
                     int8_t *out_a, int8_t *out_b) {
  int32_t j;
#if TFEDGE_ASM
  if (fast && n > 0) {
    /* 22 instructions per channel (two outputs) in 13 registers. */
    int32_t x, m, rl, rh, e1, t, lo, hi;
    __asm__ volatile(
        "1:\n\t"
        "ldrd   %[m], %[rl], [%[tab]], #8\n\t"
        "ldrd   %[rh], %[e1], [%[tab]], #8\n\t"
        "ldr    %[x], [%[acc]], #4\n\t"
        TFEDGE_RQ_ASM("%[x]")
        "strb   %[x], [%[oa]], #1\n\t"
        "ldr    %[x], [%[acc]], #4\n\t"
        TFEDGE_RQ_ASM("%[x]")
        "strb   %[x], [%[ob]], #1\n\t"
        "subs   %[n], %[n], #1\n\t"
        "bne    1b\n\t"
        : [acc] "+r"(acc), [tab] "+r"(tab), [n] "+r"(n), [oa] "+r"(out_a), [ob] "+r"(out_b),
          [x] "=&r"(x), [m] "=&r"(m), [rl] "=&r"(rl), [rh] "=&r"(rh), [e1] "=&r"(e1),
          [t] "=&r"(t), [lo] "=&r"(lo), [hi] "=&r"(hi)
        :
        : "cc", "memory");
    return;
  }
#else
  (void)fast;
#endif
  for (j = 0; j < n; ++j) {
    out_a[j] = tfedge_ssat8(tfedge_rq_apply(acc[2 * j], tab + j));
    out_b[j] = tfedge_ssat8(tfedge_rq_apply(acc[2 * j + 1], tab + j));
  }
}

void tfedge_rq_row(const int32_t *acc, const tfedge_rq *tab, int32_t n, int32_t fast,
                   int8_t *out) {
  int32_t j;
#if TFEDGE_ASM
  if (fast && n > 0) {
    int32_t a, m, rl, rh, e1, t, lo, hi;
    __asm__ volatile(
        "1:\n\t"
        "ldrd   %[m], %[rl], [%[tab]], #8\n\t"
        "ldrd   %[rh], %[e1], [%[tab]], #8\n\t"
        "ldr    %[a], [%[acc]], #4\n\t"
        TFEDGE_RQ_ASM("%[a]")
        "strb   %[a], [%[out]], #1\n\t"
        "subs   %[n], %[n], #1\n\t"
        "bne    1b\n\t"
        : [acc] "+r"(acc), [tab] "+r"(tab), [n] "+r"(n), [out] "+r"(out), [a] "=&r"(a),
          [m] "=&r"(m), [rl] "=&r"(rl), [rh] "=&r"(rh), [e1] "=&r"(e1), [t] "=&r"(t),
          [lo] "=&r"(lo), [hi] "=&r"(hi)
        :
        : "cc", "memory");
    return;
  }
#else
  (void)fast;
#endif
  for (j = 0; j < n; ++j) out[j] = tfedge_ssat8(tfedge_rq_apply(acc[j], tab + j));
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
