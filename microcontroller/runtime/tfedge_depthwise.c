/* tfedge runtime: DEPTHWISE_CONV_2D.
 *
 * Portable loops mirror reference_integer_ops::DepthwiseConvPerChannel. The DSP
 * loops (depth_multiplier 1) take the channels four at a time (then two, then
 * one with the portable loops) and the taps two at a time:
 *
 *  - Per call, the weights are rewritten into a stream in the scratch: per
 *    group of 4 channels the biases with the input offset folded in
 *    (bias + input_offset * sum(w), doubled), for each pair of taps (i, j) four
 *    int16 pair words (2 w_i(c), 2 w_j(c)), the odd last tap as (2 w(c0),
 *    2 w(c2)), (2 w(c1), 2 w(c3)), and the channels' requantization (m, k, e)
 *    (tfedge_rqd). The doubled weights make the accumulators D = 2 * acc.
 *  - Per output pixel the taps are a list of input offsets; taps in the padding
 *    point at a row of input zero points instead (x = zero point: with the
 *    offset folded into the bias, w * zero_point cancels exactly the part of
 *    input_offset * sum(w) that belongs to that tap, as a skipped tap does).
 *    Pixels whose taps are all inside the image share one list.
 *  - A pair of taps: the two input words (4 channels each) are interleaved with
 *    PKHBT / PKHTB into (a0 a1 b0 b1), (a2 a3 b2 b3) and widened with SXTB16
 *    into one (a_c, b_c) pair per channel, each fed to one SMLAD with the
 *    channel's weight pair: 8 MACs in 14 instructions.
 * The sums are those of the reference (mod 2^32), so the outputs are identical.
 * Channels whose multiplier is not fit for the doubled form make the call use
 * plain (undoubled) weights and the general requantization instead.
 */
#include <stddef.h>

#include "tfedge_internal.h"

/* Bytes per channel of the weight stream: biases 4 + requantization 12 + 2 per
 * tap (an int16 weight). */
#define TFEDGE_DW_STREAM_PER_CHANNEL(taps) (16u + 2u * (size_t)(taps))

/* The stream's bytes, rounded up to 8 (the tap lists follow). */
static size_t tfedge_dw_stream_bytes(size_t channels, size_t taps) {
  return (channels * TFEDGE_DW_STREAM_PER_CHANNEL(taps) + 7u) & ~(size_t)7u;
}

size_t tfedge_depthwise_conv2d_s8_scratch_bytes(const tfedge_depthwise_params *p) {
  const size_t channels = (size_t)p->input_c * (size_t)p->depth_multiplier;
  const size_t taps = (size_t)p->filter_h * (size_t)p->filter_w;
  /* The weight stream, two tap lists (8 bytes per entry: pointer differences on
   * 64-bit hosts), the zero points. Kept the same for every build. */
  return tfedge_dw_stream_bytes(channels, taps) + 16u * taps + ((channels + 3u) & ~(size_t)3u);
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

/* One call: `pixels` output pixels in a row, each `base_step` input bytes after
 * the previous one, all channel groups of each; base is the input address of
 * tap (0, 0) at channel 0 of the first pixel (it may lie outside the image),
 * the taps are at base + list[t]. The asm loops read the fields in this order
 * (all 4 bytes on Cortex-M). */
typedef struct {
  uintptr_t base;
  const ptrdiff_t *list;
  const int32_t *ws;  /* the weight stream */
  int8_t *out;        /* advances by 4 * groups4 + 2 * groups2 per pixel */
  int32_t groups4;    /* groups of 4 channels */
  int32_t groups2;    /* 0 or 1 group of 2 channels after them */
  int32_t taps;
  int32_t pixels;
  int32_t base_step;
} tfedge_dw_job;

/* Requantization of one channel: doubled form, or (plain) the general one with
 * the channel index in mke[0]. */
typedef struct {
  const int32_t *mult, *shift;
  int32_t offset;
} tfedge_dw_plain;

TFEDGE_INLINE int8_t tfedge_dw_out(const tfedge_dw_plain *plain, int32_t acc, const int32_t *mke) {
  if (plain == NULL) return tfedge_rqd(acc, mke);
  return tfedge_ssat8(tfedge_mbqm(acc, plain->mult[mke[0]], plain->shift[mke[0]]) +
                      plain->offset);
}

TFEDGE_INLINE uint32_t tfedge_dw_load4(uintptr_t base, ptrdiff_t off) {
  return tfedge_read4((const int8_t *)(base + (uintptr_t)off));
}

TFEDGE_INLINE uint32_t tfedge_dw_load2(uintptr_t base, ptrdiff_t off) {
  const uint8_t *q = (const uint8_t *)(base + (uintptr_t)off);
  return (uint32_t)q[0] | ((uint32_t)q[1] << 8);
}

static void tfedge_dw_pixel_c(const tfedge_dw_job *j, uintptr_t x, int8_t *out,
                              const tfedge_dw_plain *plain) {
  const int32_t pairs = j->taps / 2, odd = j->taps & 1;
  const int32_t *ws = j->ws;
  int32_t g, i;
  for (g = 0; g < j->groups4; ++g, x += 4, out += 4) {
    const ptrdiff_t *list = j->list;
    int32_t a0 = ws[0], a1 = ws[1], a2 = ws[2], a3 = ws[3];
    ws += 4;
    for (i = 0; i < pairs; ++i, list += 2, ws += 4) {
      const uint32_t va = tfedge_dw_load4(x, list[0]), vb = tfedge_dw_load4(x, list[1]);
      const uint32_t lo = (va & 0xFFFFu) | (vb << 16), hi = (va >> 16) | (vb & 0xFFFF0000u);
      a0 = tfedge_smlad(tfedge_sxtb16(lo), (uint32_t)ws[0], a0);
      a1 = tfedge_smlad(tfedge_sxtb16_ror8(lo), (uint32_t)ws[1], a1);
      a2 = tfedge_smlad(tfedge_sxtb16(hi), (uint32_t)ws[2], a2);
      a3 = tfedge_smlad(tfedge_sxtb16_ror8(hi), (uint32_t)ws[3], a3);
    }
    if (odd) {
      const uint32_t v = tfedge_dw_load4(x, list[0]);
      const uint32_t e = tfedge_sxtb16(v), o = tfedge_sxtb16_ror8(v);
      a0 = tfedge_smlabb(e, (uint32_t)ws[0], a0);
      a2 = tfedge_smlatt(e, (uint32_t)ws[0], a2);
      a1 = tfedge_smlabb(o, (uint32_t)ws[1], a1);
      a3 = tfedge_smlatt(o, (uint32_t)ws[1], a3);
      ws += 2;
    }
    out[0] = tfedge_dw_out(plain, a0, ws);
    out[1] = tfedge_dw_out(plain, a1, ws + 3);
    out[2] = tfedge_dw_out(plain, a2, ws + 6);
    out[3] = tfedge_dw_out(plain, a3, ws + 9);
    ws += 12;
  }
  if (j->groups2) {
    const ptrdiff_t *list = j->list;
    int32_t a0 = ws[0], a1 = ws[1];
    ws += 2;
    for (i = 0; i < pairs; ++i, list += 2, ws += 2) {
      const uint32_t v = tfedge_dw_load2(x, list[0]) | (tfedge_dw_load2(x, list[1]) << 16);
      a0 = tfedge_smlad(tfedge_sxtb16(v), (uint32_t)ws[0], a0);
      a1 = tfedge_smlad(tfedge_sxtb16_ror8(v), (uint32_t)ws[1], a1);
    }
    if (odd) {
      const uint32_t v = tfedge_dw_load2(x, list[0]);
      a0 = tfedge_smlabb(tfedge_sxtb16(v), (uint32_t)ws[0], a0);
      a1 = tfedge_smlabt(tfedge_sxtb16_ror8(v), (uint32_t)ws[0], a1);
      ws += 1;
    }
    out[0] = tfedge_dw_out(plain, a0, ws);
    out[1] = tfedge_dw_out(plain, a1, ws + 3);
  }
}

static void tfedge_dw_row_c(const tfedge_dw_job *j, const tfedge_dw_plain *plain) {
  const int32_t channels = 4 * j->groups4 + 2 * j->groups2;
  int32_t i;
  for (i = 0; i < j->pixels; ++i) {
    tfedge_dw_pixel_c(j, j->base + (uintptr_t)((ptrdiff_t)i * j->base_step),
                      j->out + (ptrdiff_t)i * channels, plain);
  }
}

#if TFEDGE_ASM
/* The 4-channel groups of tfedge_dw_pixel_c (doubled form, odd tap counts >= 3)
 * in asm. Registers: r0 input (base + channel), r1 tap list, r2 weight stream,
 * r4-r7 accumulators, r8-r10 input words, the rest weights / counters.
 * Frame (sp): 0 list, 4 taps / 2, 8 out, 12 end of r0. */

/* A pair of taps; WLOAD puts its four weight words in W0..W3. */
#define TFEDGE_DW_PAIR(W0, W1, W2, W3, WLOAD)       \
  "ldrd    r8, r9, [r1], #8\n\t"                    \
  "ldr     r8, [r0, r8]\n\t"                        \
  "ldr     r9, [r0, r9]\n\t"                        \
  "pkhbt   r10, r8, r9, lsl #16\n\t"                \
  "pkhtb   r8, r9, r8, asr #16\n\t"                 \
  WLOAD                                             \
  "sxtb16  r9, r10\n\t"                             \
  "smlad   r4, r9, " W0 ", r4\n\t"                  \
  "sxtb16  r9, r10, ror #8\n\t"                     \
  "smlad   r5, r9, " W1 ", r5\n\t"                  \
  "sxtb16  r9, r8\n\t"                              \
  "smlad   r6, r9, " W2 ", r6\n\t"                  \
  "sxtb16  r9, r8, ror #8\n\t"                      \
  "smlad   r7, r9, " W3 ", r7\n\t"

/* Two weight registers (loop version): the second pair is loaded in between. */
#define TFEDGE_DW_PAIR_LOOP                         \
  "ldrd    r8, r9, [r1], #8\n\t"                    \
  "ldr     r8, [r0, r8]\n\t"                        \
  "ldr     r9, [r0, r9]\n\t"                        \
  "pkhbt   r10, r8, r9, lsl #16\n\t"                \
  "pkhtb   r8, r9, r8, asr #16\n\t"                 \
  "ldrd    r11, r12, [r2], #8\n\t"                  \
  "sxtb16  r9, r10\n\t"                             \
  "smlad   r4, r9, r11, r4\n\t"                     \
  "sxtb16  r9, r10, ror #8\n\t"                     \
  "smlad   r5, r9, r12, r5\n\t"                     \
  "ldrd    r11, r12, [r2], #8\n\t"                  \
  "sxtb16  r9, r8\n\t"                              \
  "smlad   r6, r9, r11, r6\n\t"                     \
  "sxtb16  r9, r8, ror #8\n\t"                      \
  "smlad   r7, r9, r12, r7\n\t"

/* Four weight registers (unrolled versions). */
#define TFEDGE_DW_PAIR_LDM TFEDGE_DW_PAIR("r3", "r11", "r12", "lr", "ldm r2!, {r3, r11, r12, lr}\n\t")

/* The odd last tap (weights (c0, c2), (c1, c3) in W0, W1). */
#define TFEDGE_DW_SINGLE(W0, W1)                    \
  "ldr     r8, [r1]\n\t"                            \
  "ldr     r8, [r0, r8]\n\t"                        \
  "ldrd    " W0 ", " W1 ", [r2], #8\n\t"            \
  "sxtb16  r9, r8\n\t"                              \
  "smlabb  r4, r9, " W0 ", r4\n\t"                  \
  "smlatt  r6, r9, " W0 ", r6\n\t"                  \
  "sxtb16  r9, r8, ror #8\n\t"                      \
  "smlabb  r5, r9, " W1 ", r5\n\t"                  \
  "smlatt  r7, r9, " W1 ", r7\n\t"

/* out++ = tfedge_rqd(ACC) with (m, k, e) in registers M, K, E (lr is out). */
#define TFEDGE_DW_RQ_STORE(ACC, M, K, E)                \
  "smmlar  r12, " ACC ", " M ", " K "\n\t"              \
  "add     r12, r12, " ACC ", asr #31\n\t"              \
  "asr     r12, r12, " E "\n\t"                         \
  "ssat    r12, #8, r12\n\t"                            \
  "strb    r12, [lr], #1\n\t"

/* Requantizes the 4 accumulators and stores them at out (frame), then moves to
 * the next group; falls through when r0 reaches the end. */
#define TFEDGE_DW_EPILOGUE                                 \
  "ldr     lr, [sp, #8]\n\t"                               \
  "ldm     r2!, {r1, r3, r8, r9, r10, r11}\n\t"            \
  TFEDGE_DW_RQ_STORE("r4", "r1", "r3", "r8")               \
  TFEDGE_DW_RQ_STORE("r5", "r9", "r10", "r11")             \
  "ldm     r2!, {r1, r3, r8, r9, r10, r11}\n\t"            \
  TFEDGE_DW_RQ_STORE("r6", "r1", "r3", "r8")               \
  TFEDGE_DW_RQ_STORE("r7", "r9", "r10", "r11")             \
  "str     lr, [sp, #8]\n\t"                               \
  "ldr     r3, [sp, #12]\n\t"                              \
  "add     r0, r0, #4\n\t"                                 \
  "cmp     r0, r3\n\t"

/* The group of 2 channels (r0 at its input, r2 at its stream), pairs in a loop,
 * then the odd last tap. */
#define TFEDGE_DW_GROUP2                                   \
  "ldm     r2!, {r4, r5}\n\t"                              \
  "ldrd    r1, r3, [sp]\n\t"                               \
  "3:\n\t"                                                 \
  "ldrd    r8, r9, [r1], #8\n\t"                           \
  "ldrh    r8, [r0, r8]\n\t"                               \
  "ldrh    r9, [r0, r9]\n\t"                               \
  "pkhbt   r10, r8, r9, lsl #16\n\t"                       \
  "ldrd    r11, r12, [r2], #8\n\t"                         \
  "sxtb16  r9, r10\n\t"                                    \
  "smlad   r4, r9, r11, r4\n\t"                            \
  "sxtb16  r9, r10, ror #8\n\t"                            \
  "smlad   r5, r9, r12, r5\n\t"                            \
  "subs    r3, r3, #1\n\t"                                 \
  "bne     3b\n\t"                                         \
  "ldr     r8, [r1]\n\t"                                   \
  "ldrh    r8, [r0, r8]\n\t"                               \
  "ldr     r11, [r2], #4\n\t"                              \
  "sxtb16  r9, r8\n\t"                                     \
  "smlabb  r4, r9, r11, r4\n\t"                            \
  "sxtb16  r9, r8, ror #8\n\t"                             \
  "smlabt  r5, r9, r11, r5\n\t"                            \
  "ldr     lr, [sp, #8]\n\t"                               \
  "ldm     r2!, {r1, r3, r8, r9, r10, r11}\n\t"            \
  TFEDGE_DW_RQ_STORE("r4", "r1", "r3", "r8")               \
  TFEDGE_DW_RQ_STORE("r5", "r9", "r10", "r11")             \
  "str     lr, [sp, #8]\n\t"

/* Frame (sp): 0 list, 4 taps / 2, 8 out, 12 end of r0 for the 4-channel groups,
 * 16 stream, 20 base of the pixel, 24 base step, 28 pixels left, 32 4 * groups4,
 * 36 groups2. GROUP4 is one 4-channel group (r0 input, r2 stream), ending with
 * the flags of "r0 == end". */
#define TFEDGE_DW_ROW(GROUP4)                                          \
  "push    {r4-r11, lr}\n\t"                                           \
  "sub     sp, sp, #40\n\t"                                            \
  "ldm     r0, {r1-r9}\n\t" /* base list ws out g4 g2 taps pixels step */ \
  "lsr     r7, r7, #1\n\t"                                             \
  "lsl     r5, r5, #2\n\t"                                             \
  "str     r2, [sp, #0]\n\t"                                           \
  "str     r7, [sp, #4]\n\t"                                           \
  "str     r4, [sp, #8]\n\t"                                           \
  "str     r3, [sp, #16]\n\t"                                          \
  "str     r1, [sp, #20]\n\t"                                          \
  "str     r9, [sp, #24]\n\t"                                          \
  "str     r8, [sp, #28]\n\t"                                          \
  "str     r5, [sp, #32]\n\t"                                          \
  "str     r6, [sp, #36]\n\t"                                          \
  "0:\n\t"                                                             \
  "ldr     r0, [sp, #20]\n\t"                                          \
  "ldr     r2, [sp, #16]\n\t"                                          \
  "ldr     r3, [sp, #32]\n\t"                                          \
  "cmp     r3, #0\n\t"                                                 \
  "beq     5f\n\t"                                                     \
  "add     r3, r0, r3\n\t"                                             \
  "str     r3, [sp, #12]\n\t"                                          \
  "1:\n\t"                                                             \
  GROUP4                                                               \
  "bne     1b\n\t"                                                     \
  "5:\n\t"                                                             \
  "ldr     r3, [sp, #36]\n\t"                                          \
  "cmp     r3, #0\n\t"                                                 \
  "beq     6f\n\t"                                                     \
  TFEDGE_DW_GROUP2                                                     \
  "6:\n\t"                                                             \
  "ldrd    r0, r1, [sp, #20]\n\t"                                      \
  "add     r0, r0, r1\n\t"                                             \
  "str     r0, [sp, #20]\n\t"                                          \
  "ldr     r1, [sp, #28]\n\t"                                          \
  "subs    r1, r1, #1\n\t"                                             \
  "str     r1, [sp, #28]\n\t"                                          \
  "bne     0b\n\t"                                                     \
  "add     sp, sp, #40\n\t"                                            \
  "pop     {r4-r11, pc}\n\t"

/* Any odd number of taps >= 3: the pairs in a loop. */
#define TFEDGE_DW_GROUP4_LOOP                                          \
  "ldm     r2!, {r4-r7}\n\t"                                           \
  "ldrd    r1, r3, [sp]\n\t"                                           \
  "2:\n\t"                                                             \
  TFEDGE_DW_PAIR_LOOP                                                  \
  "subs    r3, r3, #1\n\t"                                             \
  "bne     2b\n\t"                                                     \
  TFEDGE_DW_SINGLE("r11", "r12")                                       \
  TFEDGE_DW_EPILOGUE

#define TFEDGE_DW_PAIRS4 TFEDGE_DW_PAIR_LDM TFEDGE_DW_PAIR_LDM TFEDGE_DW_PAIR_LDM TFEDGE_DW_PAIR_LDM

/* 3x3 (9 taps) and 5x5 (25 taps), unrolled. */
#define TFEDGE_DW_GROUP4_9                                             \
  "ldm     r2!, {r4-r7}\n\t"                                           \
  "ldr     r1, [sp]\n\t"                                               \
  TFEDGE_DW_PAIRS4                                                     \
  TFEDGE_DW_SINGLE("r11", "r12")                                       \
  TFEDGE_DW_EPILOGUE

#define TFEDGE_DW_GROUP4_25                                            \
  "ldm     r2!, {r4-r7}\n\t"                                           \
  "ldr     r1, [sp]\n\t"                                               \
  TFEDGE_DW_PAIRS4 TFEDGE_DW_PAIRS4 TFEDGE_DW_PAIRS4                   \
  TFEDGE_DW_SINGLE("r11", "r12")                                       \
  TFEDGE_DW_EPILOGUE

static TFEDGE_NOINLINE __attribute__((naked)) void tfedge_dw_row_asm(
    const tfedge_dw_job *j __attribute__((unused))) {
  __asm__ volatile(TFEDGE_DW_ROW(TFEDGE_DW_GROUP4_LOOP));
}

static TFEDGE_NOINLINE __attribute__((naked)) void tfedge_dw_row9_asm(
    const tfedge_dw_job *j __attribute__((unused))) {
  __asm__ volatile(TFEDGE_DW_ROW(TFEDGE_DW_GROUP4_9));
}

static TFEDGE_NOINLINE __attribute__((naked)) void tfedge_dw_row25_asm(
    const tfedge_dw_job *j __attribute__((unused))) {
  __asm__ volatile(TFEDGE_DW_ROW(TFEDGE_DW_GROUP4_25));
}
#endif /* TFEDGE_ASM */

/* Fills the weight stream of channels [0, groups4 * 4 + groups2 * 2); returns 0
 * if a channel does not fit the doubled form (then call again with fast = 0). */
static int32_t tfedge_dw_stream(const tfedge_depthwise_params *p, const int8_t *filter,
                                const int32_t *bias, const int32_t *out_mult,
                                const int32_t *out_shift, int32_t groups4, int32_t groups2,
                                int32_t fast, int32_t *ws) {
  const int32_t c_all = p->input_c, taps = p->filter_h * p->filter_w;
  const int32_t odd = taps & 1, s = fast ? 2 : 1;
  int32_t g, width, c0 = 0, r, i;
  for (g = 0; g < groups4 + groups2; ++g, c0 += width) {
    width = g < groups4 ? 4 : 2;
    for (r = 0; r < width; ++r) {
      const int32_t c = c0 + r;
      const int32_t b = bias != NULL ? bias[c] : 0;
      uint32_t sum = 0;
      for (i = 0; i < taps; ++i) sum += (uint32_t)(int32_t)filter[i * c_all + c];
      sum = (uint32_t)b + (uint32_t)p->input_offset * sum;
      *ws++ = (int32_t)(sum * (uint32_t)s);
    }
    for (i = 0; i + 1 < taps; i += 2) {
      for (r = 0; r < width; ++r) {
        const int32_t c = c0 + r;
        *ws++ = (int32_t)tfedge_pack16(s * filter[i * c_all + c], s * filter[(i + 1) * c_all + c]);
      }
    }
    if (odd) {
      const int8_t *w = filter + (taps - 1) * c_all + c0;
      if (width == 4) {
        *ws++ = (int32_t)tfedge_pack16(s * w[0], s * w[2]);
        *ws++ = (int32_t)tfedge_pack16(s * w[1], s * w[3]);
      } else {
        *ws++ = (int32_t)tfedge_pack16(s * w[0], s * w[1]);
      }
    }
    for (r = 0; r < width; ++r, ws += 3) {
      const int32_t c = c0 + r;
      if (!fast) {
        ws[0] = c;
        ws[1] = ws[2] = 0;
      } else if (!tfedge_rqd_prepare(out_mult[c], out_shift[c], p->output_offset,
                                     tfedge_acc_bound(bias != NULL ? bias[c] : 0, taps), ws)) {
        return 0;
      }
    }
  }
  return 1;
}

/* Runs j (fast: the asm loops where they apply). */
TFEDGE_INLINE void tfedge_dw_row(const tfedge_dw_job *j, const tfedge_dw_plain *plain) {
#if TFEDGE_ASM
  if (plain == NULL && (j->taps & 1) && j->taps >= 3) {
    if (j->taps == 9) {
      tfedge_dw_row9_asm(j);
    } else if (j->taps == 25) {
      tfedge_dw_row25_asm(j);
    } else {
      tfedge_dw_row_asm(j);
    }
    return;
  }
#endif
  tfedge_dw_row_c(j, plain);
}

static void tfedge_dw_dsp(const tfedge_depthwise_params *p, const int8_t *input,
                          const int8_t *filter, const int32_t *bias, const int32_t *out_mult,
                          const int32_t *out_shift, const int32_t *stream, int8_t *output,
                          void *scratch) {
  const int32_t in_c = p->input_c, taps = p->filter_h * p->filter_w;
  const int32_t groups4 = in_c / 4, groups2 = (in_c & 2) >> 1, c_done = in_c & ~1;
  const int32_t in_w = p->input_w, in_h = p->input_h, out_w = p->output_w;
  const int32_t span_h = p->dilation_h * (p->filter_h - 1);
  const int32_t span_w = p->dilation_w * (p->filter_w - 1);
  const int32_t step = p->stride_w * in_c;
  int32_t *ws_scratch = (int32_t *)scratch;
  ptrdiff_t *inner =
      (ptrdiff_t *)((int8_t *)scratch + tfedge_dw_stream_bytes((size_t)in_c, (size_t)taps));
  ptrdiff_t *border = inner + taps;
  int8_t *zp = (int8_t *)(inner + 2 * taps);
  const int32_t fast =
      stream != NULL ||
      tfedge_dw_stream(p, filter, bias, out_mult, out_shift, groups4, groups2, 1, ws_scratch);
  const tfedge_dw_plain *pl;
  tfedge_dw_plain plain;
  tfedge_dw_job j;
  int8_t *const out_start = output;
  int32_t ox_lo, ox_hi, b, oy, ox, ky, kx;
  if (!fast) tfedge_dw_stream(p, filter, bias, out_mult, out_shift, groups4, groups2, 0, ws_scratch);
  plain.mult = out_mult;
  plain.shift = out_shift;
  plain.offset = p->output_offset;
  pl = fast ? NULL : &plain;
  memset(zp, (int8_t)(-p->input_offset), (size_t)in_c);
  for (ky = 0; ky < p->filter_h; ++ky) {
    for (kx = 0; kx < p->filter_w; ++kx) {
      inner[ky * p->filter_w + kx] =
          ((ptrdiff_t)ky * p->dilation_h * in_w + (ptrdiff_t)kx * p->dilation_w) * in_c;
    }
  }
  /* Output columns whose taps are inside the image (horizontally). */
  for (ox_lo = 0; ox_lo < out_w && ox_lo * p->stride_w - p->pad_w < 0; ++ox_lo) {
  }
  for (ox_hi = ox_lo; ox_hi < out_w && ox_hi * p->stride_w - p->pad_w + span_w < in_w;
       ++ox_hi) {
  }
  j.ws = stream != NULL ? stream : ws_scratch;
  j.groups4 = groups4;
  j.groups2 = groups2;
  j.taps = taps;
  j.base_step = step;
  for (b = 0; b < p->batches; ++b) {
    const int8_t *in_b = input + (size_t)b * in_h * in_w * in_c;
    for (oy = 0; oy < p->output_h; ++oy) {
      const int32_t y0 = oy * p->stride_h - p->pad_h;
      const int32_t rows_inside = y0 >= 0 && y0 + span_h < in_h;
      int32_t ky0, ky1;
      tfedge_dw_window(y0, p->dilation_h, p->filter_h, in_h, &ky0, &ky1);
      for (ox = 0; ox < out_w;) {
        const int32_t x0 = ox * p->stride_w - p->pad_w;
        j.base = (uintptr_t)in_b + (uintptr_t)(((ptrdiff_t)y0 * in_w + x0) * in_c);
        j.out = output;
        if (rows_inside && ox == ox_lo && ox_hi > ox_lo && c_done == in_c) {
          /* The row's inside pixels in one call. */
          j.list = inner;
          j.pixels = ox_hi - ox_lo;
          tfedge_dw_row(&j, pl);
          output += (size_t)j.pixels * in_c;
          ox = ox_hi;
          continue;
        }
        if (rows_inside && x0 >= 0 && x0 + span_w < in_w) {
          j.list = inner;
        } else {
          for (ky = 0; ky < p->filter_h; ++ky) {
            const int32_t iy = y0 + p->dilation_h * ky;
            for (kx = 0; kx < p->filter_w; ++kx) {
              const int32_t ix = x0 + p->dilation_w * kx;
              const int32_t t = ky * p->filter_w + kx;
              border[t] = iy >= 0 && iy < in_h && ix >= 0 && ix < in_w
                              ? inner[t]
                              : (ptrdiff_t)((uintptr_t)zp - j.base);
            }
          }
          j.list = border;
        }
        j.pixels = 1;
        tfedge_dw_row(&j, pl);
        if (c_done < in_c) {
          int32_t kx0, kx1;
          tfedge_dw_window(x0, p->dilation_w, p->filter_w, in_w, &kx0, &kx1);
          tfedge_dw_pixel_portable(p, in_b, filter, bias, out_mult, out_shift, y0, x0, ky0,
                                   ky1, kx0, kx1, c_done, output);
        }
        output += in_c;
        ++ox;
      }
    }
  }
  tfedge_clamp_s8(out_start, p->batches * p->output_h * out_w * in_c, p->act_min, p->act_max);
}

#endif /* TFEDGE_DSP */

void tfedge_depthwise_conv2d_s8(const tfedge_depthwise_params *p, const int8_t *input,
                                const int8_t *filter, const int32_t *bias,
                                const int32_t *out_mult, const int32_t *out_shift,
                                const int32_t *stream, int8_t *output, void *scratch) {
  const int32_t in_c = p->input_c, mult = p->depth_multiplier;
  const int32_t out_c = in_c * mult;
  int32_t b, oy, ox;
#if TFEDGE_DSP
  if (mult == 1 && scratch != NULL && in_c >= 2) {
    tfedge_dw_dsp(p, input, filter, bias, out_mult, out_shift, stream, output, scratch);
    return;
  }
#else
  (void)scratch;
  (void)stream;
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
        tfedge_dw_pixel_portable(p, in_b, filter, bias, out_mult, out_shift, y0, x0, ky0, ky1,
                                 kx0, kx1, 0, output);
        output += out_c;
      }
    }
  }
}
