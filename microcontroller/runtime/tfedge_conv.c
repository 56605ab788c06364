/* tfedge runtime: CONV_2D (incl. grouped).
 *
 * Portable loops mirror reference_integer_ops::ConvPerChannel. The DSP loops
 * (TFEDGE_DSP) compute the same int32 accumulators as a GEMM over the receptive
 * fields ("columns") of output pixels, K = filter_h * filter_w * filter_c
 * values each, padded with zeros to K4 (a multiple of 4):
 *
 *  - Gather: for a pair of output pixels (a, b), both columns are written to
 *    the scratch as int16 values 2 * (x + input_offset), interleaved so that a
 *    group of four k-values is four consecutive words [a(k0,k2), b(k0,k2),
 *    a(k1,k3), b(k1,k3)]. Taps in the padding read the input zero point, so
 *    they become 0, exactly like a skipped tap. Channels that are a multiple of
 *    4 are read one word at a time; other counts (the RGB stem: K = 27) are
 *    first copied tap row by tap row into a byte staging row.
 *  - GEMM, 2 output channels x 2 pixels per block (tfedge_gemm2x2): each
 *    weight word (w0, w1, w2, w3), read in place from the filter, is widened
 *    with SXTB16 into (w0, w2) and (w1, w3) and fed to 8 SMLADs: 16 MACs in 16
 *    instructions (2 LDR, 2 LDRD, 4 SXTB16, 8 SMLAD), the loop unrolled twice.
 *    Single-pixel convolutions (squeeze-excite, 1x1 heads) use 4 channels x
 *    1 pixel blocks instead (tfedge_gemm4x1).
 *  - Requantization in the same block, from the registers (tfedge_rqd: 4
 *    instructions per output; the doubled inputs make the doubled accumulator
 *    D = 2 * acc, and the table holds 2 * bias). Blocks that do not divide the
 *    channels overlap the previous block (they rewrite equal values); an odd
 *    last pixel is computed as both pixels of a pair. A filter whose K is no
 *    multiple of 4 is read past each row's end into the next row, where the
 *    zero column values cancel it; the last rows come from a padded copy.
 *  - The fused activation's clamp runs over the whole output at the end.
 * Channels whose multiplier is not fit for the doubled form (tfedge_rqd_prepare)
 * make the whole call take the same loops with plain (undoubled) accumulators
 * and the general MultiplyByQuantizedMultiplier. Integer sums are
 * order-independent (mod 2^32), so the accumulators, and the outputs, are
 * identical to the reference.
 */
#include "tfedge_internal.h"

static size_t tfedge_conv_k4(const tfedge_conv_params *p) {
  const size_t k = (size_t)p->filter_h * (size_t)p->filter_w * (size_t)p->filter_c;
  return (k + 3u) & ~(size_t)3u;
}

/* Filters whose K is no multiple of 4 are read past each row's end; up to
 * TFEDGE_CONV_COPY bytes they are copied whole into the scratch with 4 zero
 * bytes after them, larger ones only their last 4 rows. */
#define TFEDGE_CONV_COPY 2048u

static size_t tfedge_conv_copy_rows(const tfedge_conv_params *p) {
  const size_t k = (size_t)p->filter_h * (size_t)p->filter_w * (size_t)p->filter_c;
  const size_t n = (size_t)p->output_c;
  return n * k <= TFEDGE_CONV_COPY ? n : (n < 4u ? n : 4u);
}

/* Convolutions of 2 pixels or more whose sign-extended filter (int16, in the
 * 2x2 blocks' order, overlapping last blocks included) takes at most
 * TFEDGE_CONV_EXT bytes get it in the scratch (tfedge_gemm2x2x). */
#define TFEDGE_CONV_EXT 16384u

static size_t tfedge_conv_ext_bytes(const tfedge_conv_params *p) {
  const size_t groups = (size_t)(p->input_c / p->filter_c);
  const size_t per_group = (size_t)p->output_c / groups;
  const size_t n = groups * ((per_group + 1u) / 2u) * 4u * tfedge_conv_k4(p);
  if ((size_t)p->output_h * (size_t)p->output_w < 2u || per_group < 2u) return 0;
  return n <= TFEDGE_CONV_EXT ? n : 0;
}

size_t tfedge_conv2d_s8_scratch_bytes(const tfedge_conv_params *p) {
  const size_t k = (size_t)p->filter_h * (size_t)p->filter_w * (size_t)p->filter_c;
  const size_t k4 = tfedge_conv_k4(p);
  const size_t groups = (size_t)(p->input_c / p->filter_c);
  /* Two int16 columns, the requantization tables (8 words per 2 channels or 16
   * per 4, plus the overlapping last block of each group), the padding bytes;
   * when filter_c is no multiple of 4 two byte staging rows; then the
   * sign-extended filter, or when K is no multiple of 4 the padded copy of the
   * filter (or of its last rows). Kept the same for every build. */
  size_t n = 4u * k4 + 16u * (size_t)p->output_c + 64u * groups +
             (((size_t)p->filter_c + 3u) & ~(size_t)3u);
  const size_t ext = tfedge_conv_ext_bytes(p);
  if ((p->filter_c & 3) != 0) n += 2u * (k4 + 4u);
  if (ext > 0) {
    n += ext;
  } else if (k != k4) {
    n += (tfedge_conv_copy_rows(p) * k + 4u + 3u) & ~(size_t)3u;
  }
  return n;
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

/* One call of a GEMM block loop, laid out as the asm loops' stack frame (keep
 * the order: all fields are 4 bytes on Cortex-M). */
typedef struct {
  const uint32_t *col; /* the gathered columns of pixels a and b */
  const int8_t *w;     /* row a of the first block (row b: + k) */
  int32_t km4;         /* filter row stride k, minus 4 */
  int32_t n4;          /* K4 / 4 >= 1 */
  const int32_t *tab;  /* 8 words per block */
  int8_t *out;         /* pixel a, first channel of the first block */
  int32_t out_step;    /* pixel b = out + out_step (0: the same pixel) */
  int8_t *out_end;     /* out + 2 * blocks */
  int32_t w_advance;   /* 2k - 4 n4: row a of the next block from the end of this one */
} tfedge_gemm2x2_job;

typedef struct {
  const uint32_t *col; /* the gathered column of one pixel */
  const int8_t *w;     /* row 0 of the first block (rows 1-3: + k, 2k, 3k) */
  int32_t k;
  int32_t k3;          /* 3k */
  int32_t n4;
  const int32_t *tab;  /* 16 words per block */
  int8_t *out;
  int8_t *out_end;     /* out + 4 * blocks */
  int32_t w_advance;   /* 4k - 4 n4 */
} tfedge_gemm4x1_job;

/* 2x2 blocks over the sign-extended filter: per block and k-group the words
 * (a(k0,k2), a(k1,k3), b(k0,k2), b(k1,k3)) of its two channels, one LDM. */
typedef struct {
  const uint32_t *col;
  int32_t n4;
  const uint32_t *w;   /* the first block's words */
  const int32_t *tab;  /* 8 words per block */
  int8_t *out;
  int32_t out_step;
  int8_t *out_end;     /* out + 2 * blocks */
} tfedge_gemm2x2x_job;

/* The 7 column words (K = 27, padded with the zero point) of a 3x3 RGB tap
 * window: rows of 9 bytes at r0, r0 + row, r0 + 2 row; nothing outside them is
 * read. */
TFEDGE_INLINE void tfedge_stem_words(const int8_t *r0, int32_t row, uint32_t zp, uint32_t *w) {
  const int8_t *r1 = r0 + row, *r2 = r1 + row;
  w[0] = tfedge_read4(r0);
  w[1] = tfedge_read4(r0 + 4);
  w[2] = (tfedge_read4(r1 - 1) & 0xFFFFFF00u) | (uint8_t)r0[8];
  w[3] = tfedge_read4(r1 + 3);
  w[4] = ((uint32_t)(uint8_t)r1[7] | ((uint32_t)(uint8_t)r1[8] << 8)) |
         (((uint32_t)(uint8_t)r2[0] | ((uint32_t)(uint8_t)r2[1] << 8)) << 16);
  w[5] = tfedge_read4(r2 + 2);
  w[6] = (tfedge_read4(r2 + 5) >> 8) | (zp << 24);
}

/* Pointwise (1x1, stride 1) convolution of `pairs` pixel pairs of one group:
 * per pair the doubled columns of pixels a (in) and b (in + b_off) are
 * gathered into col, then tfedge_gemm2x2x's blocks run over the group's
 * channels. Laid out as the asm loop's stack frame. */
typedef struct {
  uint32_t *col;
  int32_t n4;
  const uint32_t *w;     /* the group's extended filter */
  const int32_t *tab;    /* the group's tables */
  int8_t *out_run;       /* (asm: the block loop's running output) */
  int32_t out_step;      /* pixel b's output offset */
  int8_t *out_end;       /* (asm: the block loop's end) */
  const int8_t *in;      /* pixel a of the first pair, the group's first channel */
  int32_t in_step;       /* input bytes per pair */
  int32_t pairs;         /* >= 1 */
  int8_t *out;           /* pixel a of the first pair, the group's first channel */
  int32_t out_pair_step; /* output bytes per pair */
  int32_t b_off;         /* pixel b's input offset (0: the same pixel) */
  uint32_t off4;         /* pack16(2 input_offset, 2 input_offset) */
  int32_t out_bytes;     /* 2 * blocks */
  int32_t row;           /* tfedge_stem: input bytes per image row */
} tfedge_pw_job;

/* How the tables are read when the doubled form is not exact for some channel:
 * tab holds the plain biases and the channel indexes instead of (m, k, e). */
typedef struct {
  const int32_t *mult, *shift;
  int32_t offset;
} tfedge_gemm_plain;

TFEDGE_INLINE int8_t tfedge_plain_out(const tfedge_gemm_plain *g, int32_t acc, int32_t c) {
  return tfedge_ssat8(tfedge_mbqm(acc, g->mult[c], g->shift[c]) + g->offset);
}

/* 2 channels (rows w, w + k) x 2 pixels per block; block i uses rows w + 2ik,
 * tab + 8i = {bias a, bias b, (m, k, e) a, (m, k, e) b} and writes out + 2i,
 * out + out_step + 2i. With `plain`, tab + 8i = {bias a, bias b, channel a,
 * channel b, ...}. */
static void tfedge_gemm2x2_c(const tfedge_gemm2x2_job *j, const tfedge_gemm_plain *plain) {
  const int32_t k = j->km4 + 4, step = j->out_step;
  const int8_t *w = j->w;
  const int32_t *t = j->tab;
  int8_t *out = j->out;
  int32_t i;
  for (; out != j->out_end; w += 2 * k, t += 8, out += 2) {
    const uint32_t *col = j->col;
    const int8_t *w0 = w, *w1 = w + k;
    int32_t s00 = t[0], s10 = t[0], s01 = t[1], s11 = t[1];
    for (i = 0; i < j->n4; ++i, col += 4) {
      const uint32_t v0 = tfedge_read4(w0 + 4 * i), v1 = tfedge_read4(w1 + 4 * i);
      uint32_t u = tfedge_sxtb16(v0);
      s00 = tfedge_smlad(col[0], u, s00);
      s10 = tfedge_smlad(col[1], u, s10);
      u = tfedge_sxtb16(v1);
      s01 = tfedge_smlad(col[0], u, s01);
      s11 = tfedge_smlad(col[1], u, s11);
      u = tfedge_sxtb16_ror8(v0);
      s00 = tfedge_smlad(col[2], u, s00);
      s10 = tfedge_smlad(col[3], u, s10);
      u = tfedge_sxtb16_ror8(v1);
      s01 = tfedge_smlad(col[2], u, s01);
      s11 = tfedge_smlad(col[3], u, s11);
    }
    if (plain == NULL) {
      out[step] = tfedge_rqd(s10, t + 2);
      out[0] = tfedge_rqd(s00, t + 2);
      out[step + 1] = tfedge_rqd(s11, t + 5);
      out[1] = tfedge_rqd(s01, t + 5);
    } else {
      out[step] = tfedge_plain_out(plain, s10, t[2]);
      out[0] = tfedge_plain_out(plain, s00, t[2]);
      out[step + 1] = tfedge_plain_out(plain, s11, t[3]);
      out[1] = tfedge_plain_out(plain, s01, t[3]);
    }
  }
}

static void tfedge_gemm2x2x_c(const tfedge_gemm2x2x_job *j, const tfedge_gemm_plain *plain) {
  const int32_t step = j->out_step;
  const uint32_t *w = j->w;
  const int32_t *t = j->tab;
  int8_t *out = j->out;
  int32_t i;
  for (; out != j->out_end; t += 8, out += 2) {
    const uint32_t *col = j->col;
    int32_t s00 = t[0], s10 = t[0], s01 = t[1], s11 = t[1];
    for (i = 0; i < j->n4; ++i, col += 4, w += 4) {
      s00 = tfedge_smlad(col[0], w[0], s00);
      s10 = tfedge_smlad(col[1], w[0], s10);
      s01 = tfedge_smlad(col[0], w[2], s01);
      s11 = tfedge_smlad(col[1], w[2], s11);
      s00 = tfedge_smlad(col[2], w[1], s00);
      s10 = tfedge_smlad(col[3], w[1], s10);
      s01 = tfedge_smlad(col[2], w[3], s01);
      s11 = tfedge_smlad(col[3], w[3], s11);
    }
    if (plain == NULL) {
      out[step] = tfedge_rqd(s10, t + 2);
      out[0] = tfedge_rqd(s00, t + 2);
      out[step + 1] = tfedge_rqd(s11, t + 5);
      out[1] = tfedge_rqd(s01, t + 5);
    } else {
      out[step] = tfedge_plain_out(plain, s10, t[2]);
      out[0] = tfedge_plain_out(plain, s00, t[2]);
      out[step + 1] = tfedge_plain_out(plain, s11, t[3]);
      out[1] = tfedge_plain_out(plain, s01, t[3]);
    }
  }
}

#if !TFEDGE_ASM
/* Column words va, vb of pixels a, b -> their doubled pairs at col[0..3]
 * (TFEDGE_COL_PAIR of the asm loops). */
TFEDGE_INLINE void tfedge_col_pair(uint32_t *col, uint32_t off4, uint32_t va, uint32_t vb) {
  col[0] = tfedge_dbl02(off4, va);
  col[1] = tfedge_dbl02(off4, vb);
  col[2] = tfedge_dbl13(off4, va);
  col[3] = tfedge_dbl13(off4, vb);
}

/* The blocks over the group's channels for the pixel pair at out, from the
 * columns in j->col (TFEDGE_PAIR_BLOCKS_AND_NEXT of the asm loops). */
static void tfedge_pair_blocks(const tfedge_pw_job *j, int8_t *out) {
  tfedge_gemm2x2x_job g;
  g.col = j->col;
  g.n4 = j->n4;
  g.w = j->w;
  g.tab = j->tab;
  g.out = out;
  g.out_step = j->out_step;
  g.out_end = out + j->out_bytes;
  tfedge_gemm2x2x_c(&g, NULL);
}

static void tfedge_pw_c(const tfedge_pw_job *j) {
  const int8_t *in = j->in;
  int8_t *out = j->out;
  int32_t pair, i;
  for (pair = 0; pair < j->pairs; ++pair, in += j->in_step, out += j->out_pair_step) {
    for (i = 0; i < j->n4; ++i) {
      tfedge_col_pair(j->col + 4 * i, j->off4, tfedge_read4(in + 4 * i),
                      tfedge_read4(in + j->b_off + 4 * i));
    }
    tfedge_pair_blocks(j, out);
  }
}

/* A run of pixel pairs of a 3x3 RGB convolution (tfedge_stem_words; pixel b is
 * b_off input bytes after pixel a), as tfedge_pw_c. The 28th column value is
 * left as is: the widened filter is zero there. */
static void tfedge_stem_c(const tfedge_pw_job *j) {
  const int8_t *in = j->in;
  int8_t *out = j->out;
  int32_t pair, i;
  for (pair = 0; pair < j->pairs; ++pair, in += j->in_step, out += j->out_pair_step) {
    uint32_t wa[7], wb[7];
    tfedge_stem_words(in, j->row, 0, wa);
    tfedge_stem_words(in + j->b_off, j->row, 0, wb);
    for (i = 0; i < 7; ++i) tfedge_col_pair(j->col + 4 * i, j->off4, wa[i], wb[i]);
    tfedge_pair_blocks(j, out);
  }
}
#endif

/* 4 channels (rows w + {0, 1, 2, 3} k) x 1 pixel per block; block i uses rows
 * from w + 4ik, tab + 16i = {4 biases, 4 x (m, k, e)} (plain: {4 biases, 4
 * channels}), writes out + 4i. The column is [a(k0,k2), a(k1,k3)] per group. */
static void tfedge_gemm4x1_c(const tfedge_gemm4x1_job *j, const tfedge_gemm_plain *plain) {
  const int32_t k = j->k;
  const int8_t *w = j->w;
  const int32_t *t = j->tab;
  int8_t *out = j->out;
  int32_t i, r;
  for (; out != j->out_end; w += 4 * k, t += 16, out += 4) {
    int32_t s[4];
    for (r = 0; r < 4; ++r) {
      const uint32_t *col = j->col;
      const int8_t *wr = w + r * k;
      int32_t acc = t[r];
      for (i = 0; i < j->n4; ++i, col += 2) {
        const uint32_t v = tfedge_read4(wr + 4 * i);
        acc = tfedge_smlad(col[0], tfedge_sxtb16(v), acc);
        acc = tfedge_smlad(col[1], tfedge_sxtb16_ror8(v), acc);
      }
      s[r] = acc;
    }
    for (r = 0; r < 4; ++r) {
      out[r] = plain == NULL ? tfedge_rqd(s[r], t + 4 + 3 * r)
                             : tfedge_plain_out(plain, s[r], t[4 + r]);
    }
  }
}

#if TFEDGE_ASM
/* The loops above in hand-scheduled asm (doubled form only), all 14 registers. */

/* One k-group of the 2x2 block: r0 col, r1 w (row a, post-incremented), r2 =
 * k - 4 (row b relative to the incremented w), r4 s00, r5 s10, r6 s01, r7 s11,
 * r8-r12 temporaries. */
#define TFEDGE_GEMM2X2_STEP               \
  "ldr    r8, [r1], #4\n\t"               \
  "ldr    r9, [r1, r2]\n\t"               \
  "ldrd   r10, r11, [r0], #8\n\t"         \
  "sxtb16 r12, r8\n\t"                    \
  "smlad  r4, r10, r12, r4\n\t"           \
  "smlad  r5, r11, r12, r5\n\t"           \
  "sxtb16 r12, r9\n\t"                    \
  "smlad  r6, r10, r12, r6\n\t"           \
  "smlad  r7, r11, r12, r7\n\t"           \
  "ldrd   r10, r11, [r0], #8\n\t"         \
  "sxtb16 r12, r8, ror #8\n\t"            \
  "smlad  r4, r10, r12, r4\n\t"           \
  "smlad  r5, r11, r12, r5\n\t"           \
  "sxtb16 r12, r9, ror #8\n\t"            \
  "smlad  r6, r10, r12, r6\n\t"           \
  "smlad  r7, r11, r12, r7\n\t"

/* OUT = tfedge_rqd(ACC) with (m, k, e) in registers M, K, E (tfedge_internal.h). */
#define TFEDGE_RQD(OUT, ACC, M, K, E)                 \
  "smmlar " OUT ", " ACC ", " M ", " K "\n\t"         \
  "add    " OUT ", " OUT ", " ACC ", asr #31\n\t"     \
  "asr    " OUT ", " OUT ", " E "\n\t"                \
  "ssat   " OUT ", #8, " OUT "\n\t"
#define TFEDGE_RQD_R12(ACC) TFEDGE_RQD("r12", ACC, "r8", "r9", "r10")

/* Frame (sp): 0 col, 4 w, 8 k - 4, 12 n4, 16 tab, 20 out, 24 out_step,
 * 28 out end, 32 w advance per block (2k - 4 n4). */
static TFEDGE_NOINLINE __attribute__((naked)) void tfedge_gemm2x2_asm(
    const tfedge_gemm2x2_job *j __attribute__((unused))) {
  __asm__ volatile(
      "push   {r4-r11, lr}\n\t"
      "ldm    r0, {r1-r9}\n\t"
      "sub    sp, sp, #44\n\t"
      "stm    sp, {r1-r9}\n\t"
      "1:\n\t"
      "ldm    sp, {r0, r1, r2, r3, lr}\n\t"
      "ldrd   r6, r7, [lr], #8\n\t" /* biases a, b */
      "lsrs   r3, r3, #1\n\t"      /* C: odd number of groups; Z: fewer than 2 */
      /* The first group adds the biases. */
      "ldr    r8, [r1], #4\n\t"
      "ldr    r9, [r1, r2]\n\t"
      "ldrd   r10, r11, [r0], #8\n\t"
      "sxtb16 r12, r8\n\t"
      "smlad  r4, r10, r12, r6\n\t"
      "smlad  r5, r11, r12, r6\n\t"
      "sxtb16 r12, r9\n\t"
      "smlad  r6, r10, r12, r7\n\t"
      "smlad  r7, r11, r12, r7\n\t"
      "ldrd   r10, r11, [r0], #8\n\t"
      "sxtb16 r12, r8, ror #8\n\t"
      "smlad  r4, r10, r12, r4\n\t"
      "smlad  r5, r11, r12, r5\n\t"
      "sxtb16 r12, r9, ror #8\n\t"
      "smlad  r6, r10, r12, r6\n\t"
      "smlad  r7, r11, r12, r7\n\t"
      "bcs    2f\n\t"
      TFEDGE_GEMM2X2_STEP
      "subs   r3, r3, #1\n\t"
      "2:\n\t"
      "beq    3f\n\t"
      "4:\n\t"
      TFEDGE_GEMM2X2_STEP
      TFEDGE_GEMM2X2_STEP
      "subs   r3, r3, #1\n\t"
      "bne    4b\n\t"
      "3:\n\t"
      "ldrd   r0, r2, [sp, #20]\n\t" /* out, step */
      "ldm    lr!, {r8, r9, r10}\n\t"
      TFEDGE_RQD_R12("r5")
      "strb   r12, [r0, r2]\n\t"
      TFEDGE_RQD_R12("r4")
      "strb   r12, [r0], #1\n\t"
      "ldm    lr!, {r8, r9, r10}\n\t"
      TFEDGE_RQD_R12("r7")
      "strb   r12, [r0, r2]\n\t"
      TFEDGE_RQD_R12("r6")
      "strb   r12, [r0], #1\n\t"
      "strd   lr, r0, [sp, #16]\n\t"
      "ldrd   r3, r9, [sp, #28]\n\t" /* out end, w advance */
      "add    r1, r1, r9\n\t"
      "str    r1, [sp, #4]\n\t"
      "cmp    r0, r3\n\t"
      "bne    1b\n\t"
      "add    sp, sp, #44\n\t"
      "pop    {r4-r11, pc}\n\t");
}

/* One k-group of the extended 2x2 block: r0 col, r1 weights, r3 s00, r4 s10,
 * r5 s01, r6 s11, r7-r10 weight words, r11-r12 column words. */
#define TFEDGE_GEMM2X2X_STEP              \
  "ldm    r1!, {r7-r10}\n\t"              \
  "ldrd   r11, r12, [r0], #8\n\t"         \
  "smlad  r3, r11, r7, r3\n\t"            \
  "smlad  r4, r12, r7, r4\n\t"            \
  "smlad  r5, r11, r9, r5\n\t"            \
  "smlad  r6, r12, r9, r6\n\t"            \
  "ldrd   r11, r12, [r0], #8\n\t"         \
  "smlad  r3, r11, r8, r3\n\t"            \
  "smlad  r4, r12, r8, r4\n\t"            \
  "smlad  r5, r11, r10, r5\n\t"           \
  "smlad  r6, r12, r10, r6\n\t"

/* The block loop of tfedge_gemm2x2x over a frame at sp laid out as its job
 * (0 col, 4 n4, 8 w, 12 tab, 16 out, 20 out_step, 24 out end), with w in r1
 * and tab in lr running on from block to block. */
#define TFEDGE_GEMM2X2X_BLOCKS                                        \
  "1:\n\t"                                                            \
  "ldrd   r0, r2, [sp]\n\t" /* col, n4 */                             \
  "ldrd   r5, r6, [lr], #8\n\t" /* biases a, b */                     \
  /* The first group adds the biases. */                              \
  "ldm    r1!, {r7-r10}\n\t"                                          \
  "ldrd   r11, r12, [r0], #8\n\t"                                     \
  "smlad  r3, r11, r7, r5\n\t"                                        \
  "smlad  r4, r12, r7, r5\n\t"                                        \
  "smlad  r5, r11, r9, r6\n\t"                                        \
  "smlad  r6, r12, r9, r6\n\t"                                        \
  "ldrd   r11, r12, [r0], #8\n\t"                                     \
  "smlad  r3, r11, r8, r3\n\t"                                        \
  "smlad  r4, r12, r8, r4\n\t"                                        \
  "smlad  r5, r11, r10, r5\n\t"                                       \
  "smlad  r6, r12, r10, r6\n\t"                                       \
  "subs   r2, r2, #1\n\t"                                             \
  "beq    3f\n\t"                                                     \
  "lsrs   r2, r2, #1\n\t" /* C: an odd number of groups left; Z: < 2 */ \
  "bcc    2f\n\t"                                                     \
  TFEDGE_GEMM2X2X_STEP                                                \
  "beq    3f\n\t"                                                     \
  "2:\n\t"                                                            \
  TFEDGE_GEMM2X2X_STEP                                                \
  TFEDGE_GEMM2X2X_STEP                                                \
  "subs   r2, r2, #1\n\t"                                             \
  "bne    2b\n\t"                                                     \
  "3:\n\t"                                                            \
  "ldrd   r0, r2, [sp, #16]\n\t" /* out, step */                      \
  "ldm    lr!, {r7, r8, r9}\n\t"                                      \
  TFEDGE_RQD("r11", "r4", "r7", "r8", "r9")                           \
  "strb   r11, [r0, r2]\n\t"                                          \
  TFEDGE_RQD("r11", "r3", "r7", "r8", "r9")                           \
  "strb   r11, [r0], #1\n\t"                                          \
  "ldm    lr!, {r7, r8, r9}\n\t"                                      \
  TFEDGE_RQD("r11", "r6", "r7", "r8", "r9")                           \
  "strb   r11, [r0, r2]\n\t"                                          \
  TFEDGE_RQD("r11", "r5", "r7", "r8", "r9")                           \
  "strb   r11, [r0], #1\n\t"                                          \
  "ldr    r2, [sp, #24]\n\t"                                          \
  "str    r0, [sp, #16]\n\t"                                          \
  "cmp    r0, r2\n\t"                                                 \
  "bne    1b\n\t"

static TFEDGE_NOINLINE __attribute__((naked)) void tfedge_gemm2x2x_asm(
    const tfedge_gemm2x2x_job *j __attribute__((unused))) {
  __asm__ volatile(
      "push   {r4-r11, lr}\n\t"
      "ldm    r0, {r1-r7}\n\t"
      "sub    sp, sp, #28\n\t"
      "stm    sp, {r1-r7}\n\t"
      "mov    r1, r3\n\t"
      "mov    lr, r4\n\t"
      TFEDGE_GEMM2X2X_BLOCKS
      "add    sp, sp, #28\n\t"
      "pop    {r4-r11, pc}\n\t");
}

/* Column words of pixels a, b in r9, r10 -> doubled pairs, stored at r3. */
#define TFEDGE_COL_PAIR                   \
  "sxtab16 r5, r4, r9\n\t"                \
  "sxtab16 r5, r5, r9\n\t"                \
  "sxtab16 r6, r4, r10\n\t"               \
  "sxtab16 r6, r6, r10\n\t"               \
  "sxtab16 r7, r4, r9, ror #8\n\t"        \
  "sxtab16 r7, r7, r9, ror #8\n\t"        \
  "sxtab16 r8, r4, r10, ror #8\n\t"       \
  "sxtab16 r8, r8, r10, ror #8\n\t"       \
  "stm    r3!, {r5-r8}\n\t"

/* The end of a pixel pair in tfedge_pw_asm / tfedge_stem_asm (their frames
 * share the job's layout; FRAME is the frame's size): the block loop over the
 * group's channels, then the next pair, and the return. */
#define TFEDGE_PAIR_BLOCKS_AND_NEXT(FRAME)                            \
  "ldrd   r1, lr, [sp, #8]\n\t"  /* w, tab */                         \
  "ldr    r0, [sp, #40]\n\t"                                          \
  "ldr    r2, [sp, #56]\n\t"                                          \
  "add    r2, r0, r2\n\t"                                             \
  "str    r0, [sp, #16]\n\t"                                          \
  "str    r2, [sp, #24]\n\t"                                          \
  TFEDGE_GEMM2X2X_BLOCKS                                              \
  "ldrd   r0, r1, [sp, #28]\n\t" /* in, in_step */                    \
  "add    r0, r0, r1\n\t"                                             \
  "str    r0, [sp, #28]\n\t"                                          \
  "ldrd   r0, r1, [sp, #40]\n\t" /* out (pair), out_pair_step */      \
  "add    r0, r0, r1\n\t"                                             \
  "str    r0, [sp, #40]\n\t"                                          \
  "ldr    r0, [sp, #36]\n\t"                                          \
  "subs   r0, r0, #1\n\t"                                             \
  "str    r0, [sp, #36]\n\t"                                          \
  "bne    0b\n\t"                                                     \
  "add    sp, sp, #" FRAME "\n\t"                                     \
  "pop    {r4-r11, pc}\n\t"

/* tfedge_pw_c. Frame (sp): the job, 60 bytes, fields at 0 col, 4 n4, 8 w,
 * 12 tab, 16 out (running), 20 out_step, 24 out end, 28 in, 32 in_step,
 * 36 pairs, 40 out (pair), 44 out_pair_step, 48 b_off, 52 off4, 56 out bytes. */
static TFEDGE_NOINLINE __attribute__((naked)) void tfedge_pw_asm(
    const tfedge_pw_job *j __attribute__((unused))) {
  __asm__ volatile(
      "push   {r4-r11, lr}\n\t"
      "sub    sp, sp, #60\n\t"
      "ldm    r0!, {r1-r8}\n\t"
      "stm    sp, {r1-r8}\n\t"
      "ldm    r0, {r1-r7}\n\t"
      "add    r0, sp, #32\n\t"
      "stm    r0, {r1-r7}\n\t"
      "0:\n\t"
      /* Gather the pair's doubled columns. */
      "ldr    r0, [sp, #28]\n\t"
      "ldrd   r1, r4, [sp, #48]\n\t" /* b_off, off4 */
      "add    r1, r0, r1\n\t"
      "ldrd   r3, r2, [sp]\n\t"      /* col, n4 */
      "4:\n\t"
      "ldr    r9, [r0], #4\n\t"
      "ldr    r10, [r1], #4\n\t"
      TFEDGE_COL_PAIR
      "subs   r2, r2, #1\n\t"
      "bne    4b\n\t"
      TFEDGE_PAIR_BLOCKS_AND_NEXT("60"));
}

/* Frame (sp): 0 col, 4 w, 8 k, 12 3k, 16 n4, 20 tab, 24 out, 28 out end,
 * 32 w advance per block (4k - 4 n4). Registers in the loop: r0 col, r1 w,
 * r2 k, r3 3k, r4 count, r5-r8 accumulators, r9-r12 temporaries, lr tab. */
#define TFEDGE_GEMM4X1_ROW(ADDR, ACC)     \
  "ldr    r9, " ADDR "\n\t"               \
  "sxtb16 r12, r9\n\t"                    \
  "smlad  " ACC ", r10, r12, " ACC "\n\t" \
  "sxtb16 r12, r9, ror #8\n\t"            \
  "smlad  " ACC ", r11, r12, " ACC "\n\t"

static TFEDGE_NOINLINE __attribute__((naked)) void tfedge_gemm4x1_asm(
    const tfedge_gemm4x1_job *j __attribute__((unused))) {
  __asm__ volatile(
      "push   {r4-r11, lr}\n\t"
      "ldm    r0, {r1-r9}\n\t"
      "sub    sp, sp, #44\n\t"
      "stm    sp, {r1-r9}\n\t"
      "1:\n\t"
      "ldm    sp, {r0, r1, r2, r3, r4, lr}\n\t"
      "ldm    lr!, {r5-r8}\n\t" /* biases */
      "2:\n\t"
      "ldrd   r10, r11, [r0], #8\n\t"
      TFEDGE_GEMM4X1_ROW("[r1, r2]", "r6")
      TFEDGE_GEMM4X1_ROW("[r1, r2, lsl #1]", "r7")
      TFEDGE_GEMM4X1_ROW("[r1, r3]", "r8")
      TFEDGE_GEMM4X1_ROW("[r1], #4", "r5")
      "subs   r4, r4, #1\n\t"
      "bne    2b\n\t"
      "ldr    r0, [sp, #24]\n\t" /* out */
      "ldm    lr!, {r9, r10, r11}\n\t"
      TFEDGE_RQD("r12", "r5", "r9", "r10", "r11")
      "strb   r12, [r0], #1\n\t"
      "ldm    lr!, {r9, r10, r11}\n\t"
      TFEDGE_RQD("r12", "r6", "r9", "r10", "r11")
      "strb   r12, [r0], #1\n\t"
      "ldm    lr!, {r9, r10, r11}\n\t"
      TFEDGE_RQD("r12", "r7", "r9", "r10", "r11")
      "strb   r12, [r0], #1\n\t"
      "ldm    lr!, {r9, r10, r11}\n\t"
      TFEDGE_RQD("r12", "r8", "r9", "r10", "r11")
      "strb   r12, [r0], #1\n\t"
      "strd   lr, r0, [sp, #20]\n\t"
      "ldrd   r3, r9, [sp, #28]\n\t" /* out end, w advance */
      "add    r1, r1, r9\n\t"
      "str    r1, [sp, #4]\n\t"
      "cmp    r0, r3\n\t"
      "bne    1b\n\t"
      "add    sp, sp, #44\n\t"
      "pop    {r4-r11, pc}\n\t");
}
#endif /* TFEDGE_ASM */

TFEDGE_INLINE void tfedge_gemm2x2(const tfedge_gemm2x2_job *j, const tfedge_gemm_plain *plain) {
#if TFEDGE_ASM
  if (plain == NULL) {
    tfedge_gemm2x2_asm(j);
    return;
  }
#endif
  tfedge_gemm2x2_c(j, plain);
}

TFEDGE_INLINE void tfedge_gemm2x2x(const tfedge_gemm2x2x_job *j,
                                   const tfedge_gemm_plain *plain) {
#if TFEDGE_ASM
  if (plain == NULL) {
    tfedge_gemm2x2x_asm(j);
    return;
  }
#endif
  tfedge_gemm2x2x_c(j, plain);
}

#if TFEDGE_ASM

/* tfedge_stem_c: the frame of tfedge_pw_asm plus 60 row. */
static TFEDGE_NOINLINE __attribute__((naked)) void tfedge_stem_asm(
    const tfedge_pw_job *j __attribute__((unused))) {
  __asm__ volatile(
      "push   {r4-r11, lr}\n\t"
      "sub    sp, sp, #68\n\t"
      "ldm    r0!, {r1-r8}\n\t"
      "stm    sp, {r1-r8}\n\t"
      "ldm    r0, {r1-r8}\n\t"
      "add    r0, sp, #32\n\t"
      "stm    r0, {r1-r8}\n\t"
      "0:\n\t"
      "ldr    r0, [sp, #28]\n\t"      /* pixel a's tap (0, 0) */
      "ldrd   r1, r4, [sp, #48]\n\t"  /* b_off, off4 */
      "add    r1, r0, r1\n\t"
      "ldr    r2, [sp, #60]\n\t"      /* row */
      "ldr    r3, [sp]\n\t"           /* col */
      "ldr    r9, [r0]\n\t"
      "ldr    r10, [r1]\n\t"
      TFEDGE_COL_PAIR
      "ldr    r9, [r0, #4]\n\t"
      "ldr    r10, [r1, #4]\n\t"
      TFEDGE_COL_PAIR
      "add    r11, r0, r2\n\t"
      "add    r12, r1, r2\n\t"
      "ldr    r9, [r11, #-1]\n\t"
      "ldrb   r5, [r0, #8]\n\t"
      "bfi    r9, r5, #0, #8\n\t"
      "ldr    r10, [r12, #-1]\n\t"
      "ldrb   r5, [r1, #8]\n\t"
      "bfi    r10, r5, #0, #8\n\t"
      TFEDGE_COL_PAIR
      "ldr    r9, [r11, #3]\n\t"
      "ldr    r10, [r12, #3]\n\t"
      TFEDGE_COL_PAIR
      "add    r0, r11, r2\n\t"
      "add    r1, r12, r2\n\t"
      "ldrh   r9, [r11, #7]\n\t"
      "ldrh   r5, [r0]\n\t"
      "orr    r9, r9, r5, lsl #16\n\t"
      "ldrh   r10, [r12, #7]\n\t"
      "ldrh   r5, [r1]\n\t"
      "orr    r10, r10, r5, lsl #16\n\t"
      TFEDGE_COL_PAIR
      "ldr    r9, [r0, #2]\n\t"
      "ldr    r10, [r1, #2]\n\t"
      TFEDGE_COL_PAIR
      "ldr    r9, [r0, #5]\n\t"
      "lsr    r9, r9, #8\n\t"
      "ldr    r10, [r1, #5]\n\t"
      "lsr    r10, r10, #8\n\t"
      TFEDGE_COL_PAIR
      TFEDGE_PAIR_BLOCKS_AND_NEXT("68"));
}
#endif

TFEDGE_INLINE void tfedge_stem(const tfedge_pw_job *j) {
#if TFEDGE_ASM
  tfedge_stem_asm(j);
#else
  tfedge_stem_c(j);
#endif
}

TFEDGE_INLINE void tfedge_pw(const tfedge_pw_job *j) {
#if TFEDGE_ASM
  tfedge_pw_asm(j);
#else
  tfedge_pw_c(j);
#endif
}

TFEDGE_INLINE void tfedge_gemm4x1(const tfedge_gemm4x1_job *j, const tfedge_gemm_plain *plain) {
#if TFEDGE_ASM
  if (plain == NULL) {
    tfedge_gemm4x1_asm(j);
    return;
  }
#endif
  tfedge_gemm4x1_c(j, plain);
}

/* Column words of n input bytes (n a multiple of 4) of pixels a and b (2x2
 * layout), or of pixel a alone (4x1 layout: sb == NULL). */
static void tfedge_col_words(const int8_t *sa, const int8_t *sb, int32_t n, uint32_t off,
                             int32_t dbl, uint32_t *col) {
  int32_t i;
  if (sb == NULL) {
    if (dbl) {
      for (i = 0; i < n; i += 4, col += 2) {
        const uint32_t va = tfedge_read4(sa + i);
        col[0] = tfedge_dbl02(off, va);
        col[1] = tfedge_dbl13(off, va);
      }
    } else {
      for (i = 0; i < n; i += 4, col += 2) {
        const uint32_t va = tfedge_read4(sa + i);
        col[0] = tfedge_sxtab16(off, va);
        col[1] = tfedge_sxtab16_ror8(off, va);
      }
    }
  } else if (dbl) {
    for (i = 0; i < n; i += 4, col += 4) {
      const uint32_t va = tfedge_read4(sa + i), vb = tfedge_read4(sb + i);
      col[0] = tfedge_dbl02(off, va);
      col[1] = tfedge_dbl02(off, vb);
      col[2] = tfedge_dbl13(off, va);
      col[3] = tfedge_dbl13(off, vb);
    }
  } else {
    for (i = 0; i < n; i += 4, col += 4) {
      const uint32_t va = tfedge_read4(sa + i), vb = tfedge_read4(sb + i);
      col[0] = tfedge_sxtab16(off, va);
      col[1] = tfedge_sxtab16(off, vb);
      col[2] = tfedge_sxtab16_ror8(off, va);
      col[3] = tfedge_sxtab16_ror8(off, vb);
    }
  }
}

/* Copies n bytes (word loads and stores where possible, never past src + n). */
TFEDGE_INLINE void tfedge_copy_bytes(int8_t *dst, const int8_t *src, int32_t n) {
  int32_t i = 0;
  for (; i + 4 <= n; i += 4) tfedge_write4(dst + i, tfedge_read4(src + i));
  for (; i < n; ++i) dst[i] = src[i];
}

/* Everything the gathers need about one call. */
typedef struct {
  const tfedge_conv_params *p;
  const int8_t *zp;  /* filter_c bytes of the input zero point */
  int32_t k4;        /* K rounded up to 4 */
  uint32_t off;      /* pack16 of the input offset, doubled when dbl */
  int32_t dbl;       /* double the column values */
  int32_t row, col;  /* input bytes between taps: dilation_h rows, dilation_w pixels */
  int32_t stem;      /* a 3x3 filter over 3 input channels (tfedge_stem_words) */
} tfedge_gather_ctx;

/* The input of tap (ky, kx) of the pixel whose tap (0, 0) is at (y0, x0) (the
 * zero points if it is in the padding). */
TFEDGE_INLINE const int8_t *tfedge_tap(const tfedge_gather_ctx *c, const int8_t *in_g,
                                       int32_t y0, int32_t x0, int32_t ky, int32_t kx) {
  const tfedge_conv_params *p = c->p;
  const int32_t iy = y0 + p->dilation_h * ky, ix = x0 + p->dilation_w * kx;
  if (iy < 0 || iy >= p->input_h || ix < 0 || ix >= p->input_w) return c->zp;
  return in_g + ((size_t)iy * p->input_w + ix) * p->input_c;
}

/* 1 when every tap of the pixel whose tap (0, 0) is at (y0, x0) is inside. */
TFEDGE_INLINE int32_t tfedge_inside(const tfedge_conv_params *p, int32_t y0, int32_t x0) {
  return y0 >= 0 && x0 >= 0 && y0 + p->dilation_h * (p->filter_h - 1) < p->input_h &&
         x0 + p->dilation_w * (p->filter_w - 1) < p->input_w;
}

/* The K input bytes of a pixel into stage[0..k4) (zero points after K). */
static void tfedge_conv_stage(const tfedge_gather_ctx *c, const int8_t *in_g, int32_t y0,
                              int32_t x0, int8_t *stage) {
  const tfedge_conv_params *p = c->p;
  const int32_t fc = p->filter_c, fw = p->filter_w;
  int32_t ky, kx, j = 0;
  if (p->dilation_w == 1 && tfedge_inside(p, y0, x0)) {
    /* Each tap row is one run of fw * fc bytes. */
    const int8_t *src = in_g + ((size_t)y0 * p->input_w + x0) * p->input_c;
    for (ky = 0; ky < p->filter_h; ++ky, j += fw * fc, src += c->row) {
      tfedge_copy_bytes(stage + j, src, fw * fc);
    }
  } else {
    for (ky = 0; ky < p->filter_h; ++ky) {
      for (kx = 0; kx < fw; ++kx, j += fc) {
        tfedge_copy_bytes(stage + j, tfedge_tap(c, in_g, y0, x0, ky, kx), fc);
      }
    }
  }
  for (; j < c->k4; ++j) stage[j] = c->zp[0];
}

/* Columns of the pixels whose taps (0, 0) are at (ya, xa), (yb, xb) (2x2
 * layout), or of the first alone (4x1 layout: two == 0). */
static void tfedge_conv_gather(const tfedge_gather_ctx *c, const int8_t *in_g, int32_t ya,
                               int32_t xa, int32_t yb, int32_t xb, int32_t two, int8_t *stage,
                               uint32_t *col) {
  const tfedge_conv_params *p = c->p;
  if ((p->filter_c & 3) == 0) {
    const int32_t fc = p->filter_c, step = two ? 4 : 2;
    int32_t ky, kx;
    if (tfedge_inside(p, ya, xa) && (!two || tfedge_inside(p, yb, xb))) {
      const int8_t *sa = in_g + ((size_t)ya * p->input_w + xa) * p->input_c;
      const int8_t *sb = two ? in_g + ((size_t)yb * p->input_w + xb) * p->input_c : NULL;
      if (p->filter_w == 1 || c->col == fc) {
        /* Each tap row is one run of fw * fc bytes (1x1: all of K). */
        const int32_t run = p->filter_w * fc;
        for (ky = 0; ky < p->filter_h; ++ky, sa += c->row, col += step * (run / 4)) {
          tfedge_col_words(sa, sb, run, c->off, c->dbl, col);
          if (sb != NULL) sb += c->row;
        }
      } else {
        for (ky = 0; ky < p->filter_h; ++ky) {
          for (kx = 0; kx < p->filter_w; ++kx, col += step * (fc / 4)) {
            const ptrdiff_t o = (ptrdiff_t)ky * c->row + (ptrdiff_t)kx * c->col;
            tfedge_col_words(sa + o, sb != NULL ? sb + o : NULL, fc, c->off, c->dbl, col);
          }
        }
      }
    } else {
      for (ky = 0; ky < p->filter_h; ++ky) {
        for (kx = 0; kx < p->filter_w; ++kx, col += step * (fc / 4)) {
          tfedge_col_words(tfedge_tap(c, in_g, ya, xa, ky, kx),
                           two ? tfedge_tap(c, in_g, yb, xb, ky, kx) : NULL, fc, c->off, c->dbl,
                           col);
        }
      }
    }
  } else if (c->stem && two && tfedge_inside(p, ya, xa) && tfedge_inside(p, yb, xb)) {
    uint32_t wa[7], wb[7];
    const uint32_t off = c->off;
    int32_t i;
    tfedge_stem_words(in_g + ((size_t)ya * p->input_w + xa) * 3, c->row,
                      (uint8_t)c->zp[0], wa);
    tfedge_stem_words(in_g + ((size_t)yb * p->input_w + xb) * 3, c->row,
                      (uint8_t)c->zp[0], wb);
    if (c->dbl) {
      for (i = 0; i < 7; ++i, col += 4) {
        const uint32_t va = wa[i], vb = wb[i];
        col[0] = tfedge_dbl02(off, va);
        col[1] = tfedge_dbl02(off, vb);
        col[2] = tfedge_dbl13(off, va);
        col[3] = tfedge_dbl13(off, vb);
      }
    } else {
      for (i = 0; i < 7; ++i, col += 4) {
        const uint32_t va = wa[i], vb = wb[i];
        col[0] = tfedge_sxtab16(off, va);
        col[1] = tfedge_sxtab16(off, vb);
        col[2] = tfedge_sxtab16_ror8(off, va);
        col[3] = tfedge_sxtab16_ror8(off, vb);
      }
    }
  } else {
    int8_t *sb = stage + c->k4 + 4;
    tfedge_conv_stage(c, in_g, ya, xa, stage);
    if (two) tfedge_conv_stage(c, in_g, yb, xb, sb);
    tfedge_col_words(stage, two ? sb : NULL, c->k4, c->off, c->dbl, col);
  }
}

/* The table entry of channel oc: 2 * bias and (m, k, e) when fast, else the
 * plain bias and the channel. Returns 0 if the doubled form does not fit. */
TFEDGE_INLINE int32_t tfedge_conv_entry(const tfedge_conv_params *p, const int32_t *bias,
                                        const int32_t *mult, const int32_t *shift,
                                        int32_t k_size, int32_t oc, int32_t fast,
                                        int32_t *b, int32_t *mke) {
  const int32_t bv = bias != NULL ? bias[oc] : 0;
  if (!fast) {
    *b = bv;
    mke[0] = oc;
    return 1;
  }
  *b = (int32_t)((uint32_t)bv << 1);
  return tfedge_rqd_prepare(mult[oc], shift[oc], p->output_offset,
                            tfedge_acc_bound(bv, k_size), mke);
}

/* The jobs of one group: blocks of `width` channels (2 or 4) from channel oc0,
 * the last block overlapping when width does not divide n. Fills the tables
 * (from tab) and returns their end; *ok becomes 0 if a channel cannot use the
 * doubled form. */
static int32_t *tfedge_conv_tables(const tfedge_conv_params *p, const int32_t *bias,
                                   const int32_t *mult, const int32_t *shift, int32_t oc0,
                                   int32_t n, int32_t width, int32_t fast, int32_t *tab,
                                   int32_t *ok) {
  const int32_t k_size = p->filter_h * p->filter_w * p->filter_c;
  const int32_t blocks = (n + width - 1) / width;
  int32_t i, r;
  for (i = 0; i < blocks; ++i) {
    const int32_t c0 = i + 1 < blocks ? i * width : n - width;
    for (r = 0; r < width; ++r) {
      int32_t mke[3] = {0, 0, 0};
      int32_t b;
      if (!tfedge_conv_entry(p, bias, mult, shift, k_size, oc0 + c0 + r, fast, &b, mke)) {
        *ok = 0;
      }
      tab[r] = b;
      if (width == 2) {
        if (fast) {
          tab[2 + 3 * r] = mke[0];
          tab[3 + 3 * r] = mke[1];
          tab[4 + 3 * r] = mke[2];
        } else {
          tab[2 + r] = mke[0];
        }
      } else if (fast) {
        tab[4 + 3 * r] = mke[0];
        tab[5 + 3 * r] = mke[1];
        tab[6 + 3 * r] = mke[2];
      } else {
        tab[4 + r] = mke[0];
      }
    }
    tab += 4 * width;
  }
  return tab;
}

/* The sign-extended filter of one group in its 2x2 blocks' order (the blocks
 * of tfedge_conv_tables), K padded with zeros to K4; returns the end. */
static uint32_t *tfedge_conv_extend(const tfedge_conv_params *p, const int8_t *filter,
                                    int32_t oc0, int32_t n, uint32_t *ext) {
  const int32_t k = p->filter_h * p->filter_w * p->filter_c, k4 = (k + 3) & ~3;
  const int32_t blocks = (n + 1) / 2;
  int32_t i, r, j, q;
  for (i = 0; i < blocks; ++i) {
    const int32_t c0 = oc0 + (i + 1 < blocks ? 2 * i : n - 2);
    for (j = 0; j < k4; j += 4, ext += 4) {
      for (r = 0; r < 2; ++r) {
        const int8_t *w = filter + (size_t)(c0 + r) * k + j;
        uint32_t v = 0;
        if (j + 4 <= k) {
          v = tfedge_read4(w);
        } else {
          for (q = 0; j + q < k; ++q) v |= (uint32_t)(uint8_t)w[q] << (8 * q);
        }
        ext[2 * r] = tfedge_sxtb16(v);
        ext[2 * r + 1] = tfedge_sxtb16_ror8(v);
      }
    }
  }
  return ext;
}

/* The jobs of one group's blocks: all but the last in `main`, the last in
 * `last` (overlapping the previous block when `width` does not divide the
 * channels, and from the padded copy of the filter's last rows when needed);
 * `main` may hold no block, `last` is then unused when it is not needed. The
 * output fields are filled per pixel (tfedge_conv_jobs_at). */
typedef struct {
  tfedge_gemm2x2_job main2, last2;
  tfedge_gemm4x1_job main4, last4;
  tfedge_gemm2x2x_job mainx, lastx;
  int32_t ext; /* the x jobs (extended filter) instead of main2 / last2 */
  int32_t main_bytes; /* output bytes of `main` per pixel: width * its blocks */
  int32_t has_last, oc0, c_last;
} tfedge_conv_jobs;

static void tfedge_conv_jobs_init(const tfedge_conv_params *p, const uint32_t *col,
                                  const int8_t *filter, const int8_t *wlast,
                                  const uint32_t *ext, int32_t oc0, int32_t n, int32_t width,
                                  int32_t n4, const int32_t *tab, tfedge_conv_jobs *jobs) {
  const int32_t k = p->filter_h * p->filter_w * p->filter_c;
  const int32_t blocks = (n + width - 1) / width;
  const int32_t c_last = oc0 + n - width;
  const int32_t last_copy = wlast != NULL && c_last + width == p->output_c;
  const int32_t split = (n % width) != 0 || last_copy;
  const int32_t main = split ? blocks - 1 : blocks;
  const int8_t *w_last = last_copy ? wlast : filter + (size_t)c_last * k;
  jobs->main_bytes = width * main;
  jobs->has_last = split;
  jobs->oc0 = oc0;
  jobs->c_last = c_last;
  jobs->main2.col = jobs->last2.col = col;
  jobs->main2.km4 = jobs->last2.km4 = k - 4;
  jobs->main2.n4 = jobs->last2.n4 = n4;
  jobs->main2.w_advance = jobs->last2.w_advance = 2 * k - 4 * n4;
  jobs->main2.w = filter + (size_t)oc0 * k;
  jobs->main2.tab = tab;
  jobs->last2.w = w_last;
  jobs->last2.tab = tab + 8 * (blocks - 1);
  jobs->main4.col = jobs->last4.col = col;
  jobs->main4.k = jobs->last4.k = k;
  jobs->main4.k3 = jobs->last4.k3 = 3 * k;
  jobs->main4.n4 = jobs->last4.n4 = n4;
  jobs->main4.w_advance = jobs->last4.w_advance = 4 * k - 4 * n4;
  jobs->main4.w = filter + (size_t)oc0 * k;
  jobs->main4.tab = tab;
  jobs->last4.w = w_last;
  jobs->last4.tab = tab + 16 * (blocks - 1);
  jobs->ext = ext != NULL;
  if (ext != NULL) {
    /* The extended filter needs no padded copy: only an odd count splits. */
    jobs->has_last = (n % 2) != 0;
    jobs->main_bytes = 2 * (jobs->has_last ? blocks - 1 : blocks);
    jobs->mainx.col = jobs->lastx.col = col;
    jobs->mainx.n4 = jobs->lastx.n4 = n4;
    jobs->mainx.w = ext;
    jobs->mainx.tab = tab;
    jobs->lastx.w = ext + (size_t)4 * n4 * (blocks - 1);
    jobs->lastx.tab = tab + 8 * (blocks - 1);
  }
  jobs->main2.out = jobs->main2.out_end = jobs->last2.out = jobs->last2.out_end = NULL;
  jobs->main4.out = jobs->main4.out_end = jobs->last4.out = jobs->last4.out_end = NULL;
  jobs->main2.out_step = jobs->last2.out_step = 0;
}

/* Runs the jobs for the pixel pair at out (pixel b at out + out_step). */
static void tfedge_conv_jobs_at2(tfedge_conv_jobs *jobs, int8_t *out, int32_t out_step,
                                 const tfedge_gemm_plain *plain) {
  if (jobs->ext) {
    if (jobs->main_bytes > 0) {
      jobs->mainx.out = out + jobs->oc0;
      jobs->mainx.out_end = jobs->mainx.out + jobs->main_bytes;
      jobs->mainx.out_step = out_step;
      tfedge_gemm2x2x(&jobs->mainx, plain);
    }
    if (jobs->has_last) {
      jobs->lastx.out = out + jobs->c_last;
      jobs->lastx.out_end = jobs->lastx.out + 2;
      jobs->lastx.out_step = out_step;
      tfedge_gemm2x2x(&jobs->lastx, plain);
    }
    return;
  }
  if (jobs->main_bytes > 0) {
    jobs->main2.out = out + jobs->oc0;
    jobs->main2.out_end = jobs->main2.out + jobs->main_bytes;
    jobs->main2.out_step = out_step;
    tfedge_gemm2x2(&jobs->main2, plain);
  }
  if (jobs->has_last) {
    jobs->last2.out = out + jobs->c_last;
    jobs->last2.out_end = jobs->last2.out + 2;
    jobs->last2.out_step = out_step;
    tfedge_gemm2x2(&jobs->last2, plain);
  }
}

static void tfedge_conv_jobs_at1(tfedge_conv_jobs *jobs, int8_t *out,
                                 const tfedge_gemm_plain *plain) {
  if (jobs->main_bytes > 0) {
    jobs->main4.out = out + jobs->oc0;
    jobs->main4.out_end = jobs->main4.out + jobs->main_bytes;
    tfedge_gemm4x1(&jobs->main4, plain);
  }
  if (jobs->has_last) {
    jobs->last4.out = out + jobs->c_last;
    jobs->last4.out_end = jobs->last4.out + 4;
    tfedge_gemm4x1(&jobs->last4, plain);
  }
}

static void tfedge_conv2d_dsp(const tfedge_conv_params *p, const int8_t *input,
                              const int8_t *filter, const int32_t *bias,
                              const int32_t *out_mult, const int32_t *out_shift,
                              const int32_t *tables, int8_t *output, void *scratch) {
  const int32_t in_c = p->input_c, fc = p->filter_c, out_c = p->output_c;
  const int32_t groups = in_c / fc;
  const int32_t per_group = out_c / groups;
  const int32_t k_size = p->filter_h * p->filter_w * fc;
  const int32_t k4 = (int32_t)tfedge_conv_k4(p), n4 = k4 / 4;
  const int32_t out_w = p->output_w, pixels = p->output_h * out_w;
  const int32_t in_image = p->input_h * p->input_w * in_c;
  /* Single pixels take 4-channel blocks (when there are 4 channels). */
  const int32_t width = pixels == 1 && per_group >= 4 ? 4 : 2;
  /* Scratch: columns, tables, padding bytes, [staging], [filter copy]. */
  uint32_t *col = (uint32_t *)scratch;
  int32_t *tab_scratch = (int32_t *)(col + k4);
  const int32_t *tab = tables != NULL ? tables : tab_scratch;
  int8_t *zp = (int8_t *)(tab_scratch + 4 * out_c + 16 * groups);
  int8_t *stage = zp + ((fc + 3) & ~3);
  const int8_t *wlast = NULL;
  uint32_t *ext = NULL;
  int32_t ok = 1, fast, b, g, pix, pw;
  tfedge_gemm_plain plain;
  tfedge_gather_ctx ctx;
  memset(zp, (int8_t)(-p->input_offset), (size_t)fc);
  if (tfedge_conv_ext_bytes(p) > 0) {
    uint32_t *e = (uint32_t *)(stage + ((fc & 3) != 0 ? 2 * (k4 + 4) : 0));
    ext = e;
    for (g = 0; g < groups; ++g) e = tfedge_conv_extend(p, filter, g * per_group, per_group, e);
  } else if (k_size != k4) {
    /* The filter (or its last rows) and 4 zero bytes. */
    const int32_t rows = (int32_t)tfedge_conv_copy_rows(p);
    int8_t *copy = stage + ((fc & 3) != 0 ? 2 * (k4 + 4) : 0);
    memcpy(copy, filter + (size_t)(out_c - rows) * k_size, (size_t)(rows * k_size));
    memset(copy + rows * k_size, 0, 4);
    if (rows == out_c) {
      filter = copy;
    } else {
      wlast = copy + rows * k_size - width * k_size;
    }
  }
  /* Tables for every group (unless precomputed); if a channel does not fit the
   * doubled form, again in the plain form. */
  for (fast = 1; fast >= 0 && tables == NULL; --fast) {
    int32_t *t = tab_scratch;
    ok = 1;
    for (g = 0; g < groups; ++g) {
      t = tfedge_conv_tables(p, bias, out_mult, out_shift, g * per_group, per_group, width,
                             fast, t, &ok);
    }
    if (ok) break;
  }
  if (tables != NULL) fast = 1;
  plain.mult = out_mult;
  plain.shift = out_shift;
  plain.offset = p->output_offset;
  ctx.p = p;
  ctx.zp = zp;
  ctx.k4 = k4;
  ctx.dbl = fast;
  ctx.off = fast ? tfedge_pack16(2 * p->input_offset, 2 * p->input_offset)
                 : tfedge_pack16(p->input_offset, p->input_offset);
  ctx.row = p->dilation_h * p->input_w * in_c;
  ctx.col = p->dilation_w * in_c;
  ctx.stem = in_c == 3 && p->filter_h == 3 && p->filter_w == 3 && p->dilation_w == 1;
  pw = p->filter_h == 1 && p->filter_w == 1 && p->stride_h == 1 && p->stride_w == 1 &&
       p->pad_h == 0 && p->pad_w == 0 && p->input_h == p->output_h &&
       p->input_w == p->output_w;
  for (b = 0; b < p->batches; ++b) {
    const int8_t *in_b = input + (size_t)b * in_image;
    int8_t *out_b = output + (size_t)b * pixels * out_c;
    const int32_t *t = tab;
    for (g = 0; g < groups; ++g) {
      const int8_t *in_g = in_b + g * fc;
      const int32_t oc0 = g * per_group;
      const int32_t blocks = (per_group + width - 1) / width;
      tfedge_conv_jobs jobs;
      if (fast && ext != NULL && pw && (per_group & 1) == 0) {
        /* Pointwise: the pixel pairs in one asm loop. Its gather reads K4 bytes
         * per pixel (past the group when filter_c is no multiple of 4: the
         * widened filter is zero there); the pixels whose read would pass the
         * end of the input take the general gather instead. */
        const int32_t over = g + 1 == groups && k4 > fc;
        const int32_t run = over ? (pixels - 1) / 2 : pixels / 2;
        tfedge_pw_job j;
        j.col = col;
        j.n4 = n4;
        j.w = ext + (size_t)g * 4 * n4 * blocks;
        j.tab = t;
        j.out_step = out_c;
        j.in = in_g;
        j.in_step = 2 * in_c;
        j.pairs = run;
        j.out = out_b + oc0;
        j.out_pair_step = 2 * out_c;
        j.b_off = in_c;
        j.off4 = ctx.off;
        j.out_bytes = 2 * blocks;
        j.out_run = j.out_end = NULL;
        j.row = 0;
        if (j.pairs > 0) tfedge_pw(&j);
        if (over) {
          tfedge_conv_jobs_init(p, col, filter, wlast, j.w, oc0, per_group, 2, n4, t, &jobs);
          for (pix = 2 * run; pix < pixels; pix += 2) {
            const int32_t pix_b = pix + 1 < pixels ? pix + 1 : pix;
            tfedge_conv_gather(&ctx, in_g, pix / out_w, pix % out_w, pix_b / out_w,
                               pix_b % out_w, 1, stage, col);
            tfedge_conv_jobs_at2(&jobs, out_b + (size_t)pix * out_c, (pix_b - pix) * out_c,
                                 NULL);
          }
        } else if (pixels & 1) {
          /* The odd last pixel as both pixels of a pair. */
          j.in = in_g + (size_t)(pixels - 1) * in_c;
          j.out = out_b + (size_t)(pixels - 1) * out_c + oc0;
          j.pairs = 1;
          j.b_off = 0;
          j.out_step = 0;
          tfedge_pw(&j);
        }
        t += 4 * width * blocks;
        continue;
      }
      tfedge_conv_jobs_init(p, col, filter, wlast,
                            ext != NULL ? ext + (size_t)g * 4 * n4 * blocks : NULL, oc0,
                            per_group, width, n4, t, &jobs);
      if (width == 4) {
        tfedge_conv_gather(&ctx, in_g, -p->pad_h, -p->pad_w, 0, 0, 0, stage, col);
        tfedge_conv_jobs_at1(&jobs, out_b, fast ? NULL : &plain);
      } else {
        int32_t ya = 0, xa = 0;
        /* Stems: runs of pixel pairs inside the image, one row at a time. */
        const int32_t stem_runs = fast && ext != NULL && ctx.stem && (out_w & 1) == 0 &&
                                  (per_group & 1) == 0;
        tfedge_pw_job sj;
        sj.col = col;
        sj.n4 = n4;
        sj.w = ext != NULL ? ext + (size_t)g * 4 * n4 * blocks : NULL;
        sj.tab = t;
        sj.out_step = out_c;
        sj.in_step = 2 * p->stride_w * in_c;
        sj.out_pair_step = 2 * out_c;
        sj.b_off = p->stride_w * in_c;
        sj.off4 = ctx.off;
        sj.out_bytes = 2 * blocks;
        sj.row = p->input_w * in_c;
        sj.out_run = sj.out_end = NULL;
        for (pix = 0; pix < pixels; pix += 2) {
          if (stem_runs) {
            /* The pairs from (ya, xa) on whose pixels are both inside. */
            const int32_t y0 = ya * p->stride_h - p->pad_h;
            int32_t x = xa;
            while (x + 1 < out_w && tfedge_inside(p, y0, x * p->stride_w - p->pad_w) &&
                   tfedge_inside(p, y0, (x + 1) * p->stride_w - p->pad_w)) {
              x += 2;
            }
            if (x > xa) {
              sj.in = in_g + ((size_t)y0 * p->input_w + xa * p->stride_w - p->pad_w) * in_c;
              sj.out = out_b + (size_t)pix * out_c + oc0;
              sj.pairs = (x - xa) / 2;
              tfedge_stem(&sj);
              pix += x - xa - 2;
              xa = x;
              if (xa >= out_w) {
                xa = 0;
                ++ya;
              }
              continue;
            }
          }
          /* An odd last pixel is both pixels of the pair. */
          int32_t yb = ya, xb = xa + 1;
          if (xb == out_w) {
            xb = 0;
            ++yb;
          }
          if (pix + 1 == pixels) {
            yb = ya;
            xb = xa;
          }
          tfedge_conv_gather(&ctx, in_g, ya * p->stride_h - p->pad_h, xa * p->stride_w - p->pad_w,
                             yb * p->stride_h - p->pad_h, xb * p->stride_w - p->pad_w, 1, stage,
                             col);
          tfedge_conv_jobs_at2(&jobs, out_b + (size_t)pix * out_c, pix + 1 < pixels ? out_c : 0,
                               fast ? NULL : &plain);
          xa = xb + 1;
          ya = yb;
          if (xa >= out_w) {
            xa = 0;
            ++ya;
          }
        }
      }
      t += 4 * width * blocks;
    }
  }
  tfedge_clamp_s8(output, p->batches * pixels * out_c, p->act_min, p->act_max);
}

#endif /* TFEDGE_DSP */

void tfedge_conv2d_s8(const tfedge_conv_params *p, const int8_t *input, const int8_t *filter,
                      const int32_t *bias, const int32_t *out_mult, const int32_t *out_shift,
                      const int32_t *tables, int8_t *output, void *scratch) {
#if TFEDGE_DSP
  const int32_t per_group = p->output_c / (p->input_c / p->filter_c);
  if (scratch != NULL && per_group >= 2) {
    tfedge_conv2d_dsp(p, input, filter, bias, out_mult, out_shift, tables, output, scratch);
    return;
  }
#else
  (void)scratch;
  (void)tables;
#endif
  tfedge_conv2d_portable(p, input, filter, bias, out_mult, out_shift, output);
}
