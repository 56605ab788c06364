/*
 * tfedge runtime: int8 kernels for ahead-of-time compiled TFLite models.
 *
 * Every kernel is bit-exact with the int8 reference kernel that LiteRT runs
 * with OpResolverType.BUILTIN_REF. All quantization parameters are computed
 * ahead of time by tfedge.microcontroller.quant (one Python function per
 * struct below, same field names), so no kernel uses floating point.
 *
 * Conventions
 *  - Plain C99, no allocation, no mutable globals; kernels are reentrant.
 *  - Tensors are dense, row-major, NHWC for images. Sizes are int32_t.
 *  - Weights keep TFLite's layouts: CONV_2D [out_c, kh, kw, in_c / groups],
 *    DEPTHWISE_CONV_2D [1, kh, kw, in_c * depth_multiplier], FULLY_CONNECTED
 *    [out, in]. Biases are int32 per output channel (NULL: no bias).
 *  - "offset" fields follow TFLite: input_offset = -input_zero_point,
 *    output_offset = output_zero_point.
 *  - act_min / act_max: the fused-activation clamp in the output's quantized
 *    domain (tflite::CalculateActivationRangeQuantized).
 *  - Per-channel multipliers/shifts are the (quantized_multiplier, shift) pairs
 *    of tflite::QuantizeMultiplier; shift > 0 is a left shift.
 *  - Output buffers must not overlap inputs, except where a function says so.
 *
 * Build options
 *  - On cores with the DSP extension (__ARM_FEATURE_DSP: Cortex-M4, M7, M33,
 *    M55) CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED use SMLAD / SMLABB
 *    loops (hand-scheduled asm functions when optimizing, ACLE intrinsics
 *    otherwise), and ADD, MUL, pooling and MEAN SIMD loops; their results are
 *    identical to the portable loops.
 *    -DTFEDGE_NO_DSP disables them, -DTFEDGE_NO_ASM keeps them in C (needed
 *    with -fno-omit-frame-pointer: the asm loops use 13 registers), and
 *    -DTFEDGE_EMULATE_DSP compiles them on any host (for testing).
 *  - Little-endian targets; two's complement conversions as GCC and Clang do
 *    them.
 *  - Kernels that take scratch memory give its size in a *_scratch_bytes
 *    function (quant.py gives the same number ahead of time).
 */
#ifndef TFEDGE_KERNELS_H
#define TFEDGE_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TFEDGE_MAX_DIMS 6

/* Requantization of FULLY_CONNECTED accumulators (tfedge_fc_params.rounding). */
#define TFEDGE_ROUND_GEMMLOWP 0 /* MultiplyByQuantizedMultiplier (TFLM, conv kernels) */
#define TFEDGE_ROUND_DOUBLE 1   /* round(acc * (double)scale): LiteRT's reference FC */

/* ------------------------------------------------------------------------
 * CONV_2D
 * ------------------------------------------------------------------------ */
typedef struct {
  int32_t batches;
  int32_t input_h, input_w, input_c;
  int32_t filter_h, filter_w;
  int32_t filter_c; /* input channels per group; groups = input_c / filter_c */
  int32_t output_h, output_w, output_c;
  int32_t stride_h, stride_w;
  int32_t dilation_h, dilation_w;
  int32_t pad_h, pad_w; /* padding before the first row / column */
  int32_t input_offset;
  int32_t output_offset;
  int32_t act_min, act_max;
} tfedge_conv_params;

/* Bytes of scratch tfedge_conv2d_s8 needs (the same in every build; the
 * portable loops do not touch it): two int16 receptive fields of K =
 * filter_h * filter_w * filter_c values rounded up to 4 (4 * K4 bytes), the
 * requantization tables (16 * output_c + 64 * groups), filter_c rounded up to
 * 4 (padding values), 2 * (K4 + 4) more when filter_c is no multiple of 4
 * (staging rows), and for two output pixels or more the filter widened to
 * int16 (groups * ceil(output_c / groups / 2) * 4 * K4 bytes) when that is at
 * most 16 KB, otherwise, when K is no multiple of 4, a padded copy of the
 * filter (of its last 4 rows when it is above 2 KB). quant.conv2d gives the
 * same number ahead of time. */
size_t tfedge_conv2d_s8_scratch_bytes(const tfedge_conv_params *p);

/* CONV_2D, int8 in/out, int8 per-channel weights (zero point 0), grouped when
 * filter_c < input_c (output channel o uses group o / (output_c / groups)).
 * Mirrors tflite::reference_integer_ops::ConvPerChannel.
 *   input   [batches, input_h, input_w, input_c]
 *   filter  [output_c, filter_h, filter_w, filter_c]
 *   bias    [output_c] or NULL
 *   out_mult, out_shift  [output_c]
 *   tables  NULL, or the DSP loops' requantization tables precomputed by
 *           quant.conv2d(..., bias=...) (arrays["tables"]); the DSP build
 *           builds them in the scratch when NULL, the portable one ignores them
 *   output  [batches, output_h, output_w, output_c]
 *   scratch tfedge_conv2d_s8_scratch_bytes(p) bytes, 4-byte aligned; NULL makes
 *           the DSP build fall back to the portable loops. */
void tfedge_conv2d_s8(const tfedge_conv_params *p, const int8_t *input, const int8_t *filter,
                      const int32_t *bias, const int32_t *out_mult, const int32_t *out_shift,
                      const int32_t *tables, int8_t *output, void *scratch);

/* ------------------------------------------------------------------------
 * DEPTHWISE_CONV_2D
 * ------------------------------------------------------------------------ */
typedef struct {
  int32_t batches;
  int32_t input_h, input_w, input_c;
  int32_t filter_h, filter_w;
  int32_t depth_multiplier; /* output_c = input_c * depth_multiplier */
  int32_t output_h, output_w;
  int32_t stride_h, stride_w;
  int32_t dilation_h, dilation_w;
  int32_t pad_h, pad_w;
  int32_t input_offset;
  int32_t output_offset;
  int32_t act_min, act_max;
} tfedge_depthwise_params;

/* Bytes of scratch tfedge_depthwise_conv2d_s8 needs: (16 + 2 * taps) * input_c
 * * depth_multiplier rounded up to 8 (the weight stream), 16 * taps (tap
 * lists), input_c * depth_multiplier rounded up to 4 (padding values), with
 * taps = filter_h * filter_w. The same in every build; the portable loops do
 * not touch it. */
size_t tfedge_depthwise_conv2d_s8_scratch_bytes(const tfedge_depthwise_params *p);

/* DEPTHWISE_CONV_2D; output channel c * depth_multiplier + m reads input
 * channel c. Mirrors tflite::reference_integer_ops::DepthwiseConvPerChannel.
 *   input  [batches, input_h, input_w, input_c]
 *   filter [1, filter_h, filter_w, input_c * depth_multiplier]
 *   bias, out_mult, out_shift [input_c * depth_multiplier] (bias may be NULL)
 *   stream NULL, or the DSP loops' weight stream precomputed by
 *          quant.depthwise_conv2d(..., filter=..., bias=...) (arrays["stream"]);
 *          the DSP build builds it in the scratch when NULL, the portable one
 *          ignores it
 *   output [batches, output_h, output_w, input_c * depth_multiplier]
 *   scratch tfedge_depthwise_conv2d_s8_scratch_bytes(p) bytes, 4-byte aligned;
 *           NULL makes the DSP build fall back to the portable loops. */
void tfedge_depthwise_conv2d_s8(const tfedge_depthwise_params *p, const int8_t *input,
                                const int8_t *filter, const int32_t *bias,
                                const int32_t *out_mult, const int32_t *out_shift,
                                const int32_t *stream, int8_t *output, void *scratch);

/* ------------------------------------------------------------------------
 * FULLY_CONNECTED
 * ------------------------------------------------------------------------ */
typedef struct {
  int32_t batches;      /* rows of input: input elements / input_depth */
  int32_t input_depth;  /* accumulation depth */
  int32_t output_depth; /* units */
  int32_t input_offset;
  int32_t filter_offset; /* -filter zero point (0 for int8 weights) */
  int32_t output_offset;
  int32_t act_min, act_max;
  int32_t per_channel; /* 1: requantization per output unit, 0: one for all */
  int32_t rounding;    /* TFEDGE_ROUND_GEMMLOWP or TFEDGE_ROUND_DOUBLE */
} tfedge_fc_params;

/* FULLY_CONNECTED, int8 in/out/weights.
 *   input  [batches, input_depth]; filter [output_depth, input_depth]
 *   bias   [output_depth] or NULL; output [batches, output_depth]
 * Requantization, n = output_depth if per_channel else 1:
 *   TFEDGE_ROUND_GEMMLOWP: out_mult[n], out_shift[n] from QuantizeMultiplier
 *     (tflite::reference_integer_ops::FullyConnected{,PerChannel} with
 *     multipliers, as TFLite Micro runs it).
 *   TFEDGE_ROUND_DOUBLE: the effective scale s = in_scale * w_scale / out_scale
 *     (in double) as s = mant * 2^e: out_mult[2i] = low 32 bits of mant,
 *     out_mult[2i+1] = high bits, out_shift[i] = e; the result is
 *     round(double(acc) * s), exactly as LiteRT's reference kernels compute it
 *     (FullyConnected{,PerChannel} with float scales), in integer arithmetic. */
void tfedge_fully_connected_s8(const tfedge_fc_params *p, const int8_t *input,
                               const int8_t *filter, const int32_t *bias,
                               const int32_t *out_mult, const int32_t *out_shift,
                               int8_t *output);

/* ------------------------------------------------------------------------
 * Elementwise binary ops with broadcasting (ADD, MUL)
 * ------------------------------------------------------------------------ */
typedef struct {
  int32_t dims[TFEDGE_MAX_DIMS];     /* output shape, padded with leading 1s */
  int32_t strides1[TFEDGE_MAX_DIMS]; /* input 1 element stride per output dim, 0 = broadcast */
  int32_t strides2[TFEDGE_MAX_DIMS]; /* same for input 2 */
} tfedge_broadcast;

typedef struct {
  int32_t input1_offset, input2_offset, output_offset;
  int32_t left_shift; /* 20 for int8 */
  int32_t input1_multiplier, input1_shift;
  int32_t input2_multiplier, input2_shift;
  int32_t output_multiplier, output_shift;
  int32_t act_min, act_max;
} tfedge_add_params;

/* ADD; output laid out as b->dims. Mirrors reference_integer_ops::Add /
 * BroadcastAdd6DSlow (AddFunc). The output may alias an input of its shape.
 * From 512 elements on, one input's scaled values come from a table built
 * per call (1 KB of stack). */
void tfedge_add_s8(const tfedge_add_params *p, const tfedge_broadcast *b, const int8_t *input1,
                   const int8_t *input2, int8_t *output);

typedef struct {
  int32_t input1_offset, input2_offset, output_offset;
  int32_t output_multiplier, output_shift;
  int32_t act_min, act_max;
} tfedge_mul_params;

/* MUL, e.g. (1,H,W,C) * (1,1,1,C). Mirrors reference_integer_ops::Mul /
 * BroadcastMul6DSlow. The output may alias an input of its shape. */
void tfedge_mul_s8(const tfedge_mul_params *p, const tfedge_broadcast *b, const int8_t *input1,
                   const int8_t *input2, int8_t *output);

/* ------------------------------------------------------------------------
 * AVERAGE_POOL_2D, MAX_POOL_2D
 * ------------------------------------------------------------------------ */
typedef struct {
  int32_t batches;
  int32_t input_h, input_w, channels;
  int32_t output_h, output_w;
  int32_t filter_h, filter_w;
  int32_t stride_h, stride_w;
  int32_t pad_h, pad_w;
  int32_t act_min, act_max;
} tfedge_pool_params;

/* AVERAGE_POOL_2D: mean of the window cells inside the input, rounded half away
 * from zero (reference_integer_ops::AveragePool). Input and output share
 * quantization. */
void tfedge_avg_pool_s8(const tfedge_pool_params *p, const int8_t *input, int8_t *output);

/* MAX_POOL_2D (reference_integer_ops::MaxPool). */
void tfedge_max_pool_s8(const tfedge_pool_params *p, const int8_t *input, int8_t *output);

/* ------------------------------------------------------------------------
 * MEAN (reduce over any axes)
 * ------------------------------------------------------------------------ */
#define TFEDGE_MEAN_DIMS 4
typedef struct {
  /* Kept dimensions (outermost first, unused = 1) with their input strides:
   * the output is these dims in row-major order (keep_dims does not matter). */
  int32_t kept_dims[TFEDGE_MEAN_DIMS];
  int32_t kept_strides[TFEDGE_MEAN_DIMS];
  /* Reduced dimensions with their input strides (unused = 1). */
  int32_t reduced_dims[TFEDGE_MEAN_DIMS];
  int32_t reduced_strides[TFEDGE_MEAN_DIMS];
  int32_t count; /* product of reduced_dims */
  int32_t input_zero_point, output_zero_point;
  int32_t multiplier, shift; /* in_scale / out_scale with 1/count folded in */
} tfedge_mean_params;

/* MEAN of int8 (reference_ops::QuantizedMeanOrSum, compute_sum = false). */
void tfedge_mean_s8(const tfedge_mean_params *p, const int8_t *input, int8_t *output);

/* ------------------------------------------------------------------------
 * SOFTMAX
 * ------------------------------------------------------------------------ */
typedef struct {
  int32_t outer_size; /* elements / depth */
  int32_t depth;      /* last dimension */
  int32_t input_multiplier, input_left_shift;
  int32_t diff_min;
} tfedge_softmax_params;

/* SOFTMAX over the last dimension, int8 in, int8 out (scale 1/256, zero point
 * -128): gemmlowp fixed point, reference_ops::Softmax<int8_t, int8_t>. */
void tfedge_softmax_s8(const tfedge_softmax_params *p, const int8_t *input, int8_t *output);

/* ------------------------------------------------------------------------
 * HARD_SWISH
 * ------------------------------------------------------------------------ */
typedef struct {
  int32_t input_zero_point, output_zero_point;
  int32_t reluish_multiplier_fixedpoint_int16, reluish_multiplier_exponent;
  int32_t output_multiplier_fixedpoint_int16, output_multiplier_exponent;
} tfedge_hard_swish_params;

/* HARD_SWISH, int16 fixed point as reference_ops::HardSwish<int8_t>. The output
 * may alias the input. (quant.hard_swish_lut gives the same map as a table.) */
void tfedge_hard_swish_s8(const tfedge_hard_swish_params *p, const int8_t *input,
                          int8_t *output, int32_t size);

/* ------------------------------------------------------------------------
 * Table lookup (LOGISTIC, or any int8 -> int8 elementwise map)
 * ------------------------------------------------------------------------ */
/* output[i] = lut[(uint8_t)input[i]]: TFLite's int8 LUT order (0..127, then
 * -128..-1). LOGISTIC's reference int8 kernel is exactly such a table
 * (quant.logistic_lut). The output may alias the input. */
void tfedge_lut_s8(const int8_t *lut, const int8_t *input, int8_t *output, int32_t size);

/* ------------------------------------------------------------------------
 * QUANTIZE (requantization between integer types)
 * ------------------------------------------------------------------------ */
typedef struct {
  int32_t input_zero_point, output_zero_point;
  int32_t multiplier, shift; /* in_scale / out_scale */
} tfedge_requant_params;

/* QUANTIZE int8 -> int8, uint8 -> int8, int8 -> uint8 (reference_ops::Requantize):
 * out = clamp(MBQM(in - input_zero_point) + output_zero_point). */
void tfedge_requantize_s8(const tfedge_requant_params *p, const int8_t *input, int8_t *output,
                          int32_t size);
void tfedge_requantize_u8_s8(const tfedge_requant_params *p, const uint8_t *input,
                             int8_t *output, int32_t size);
void tfedge_requantize_s8_u8(const tfedge_requant_params *p, const int8_t *input,
                             uint8_t *output, int32_t size);

/* ------------------------------------------------------------------------
 * Data movement: RESHAPE, CONCATENATION, SPLIT / SPLIT_V, TRANSPOSE, PAD
 * ------------------------------------------------------------------------ */

/* RESHAPE (and any other byte copy): memmove when input != output. */
void tfedge_copy_s8(const int8_t *input, int8_t *output, int32_t size);

typedef struct {
  int32_t num_inputs;
  int32_t outer_size; /* product of the dims before the axis */
} tfedge_concat_params;

/* CONCATENATION along any axis: for each of outer_size rows, copies
 * copy_sizes[i] (= input i's axis dim * product of the dims after the axis)
 * elements of every input in turn. requant: NULL (TFLite requires equal input
 * and output quantization for int8), or num_inputs pointers, each NULL (copy)
 * or the parameters of a QUANTIZE into the output's quantization. */
void tfedge_concatenation_s8(const tfedge_concat_params *p, const int8_t *const *inputs,
                             const int32_t *copy_sizes,
                             const tfedge_requant_params *const *requant, int8_t *output);

typedef struct {
  int32_t num_outputs;
  int32_t outer_size; /* product of the dims before the axis */
} tfedge_split_params;

/* SPLIT and SPLIT_V: the inverse of the concatenation above. */
void tfedge_split_s8(const tfedge_split_params *p, const int8_t *input, int8_t *const *outputs,
                     const int32_t *copy_sizes);

typedef struct {
  int32_t num_dims; /* 1..TFEDGE_MAX_DIMS */
  int32_t out_dims[TFEDGE_MAX_DIMS];
  int32_t in_strides[TFEDGE_MAX_DIMS]; /* input element stride of output dim i */
} tfedge_transpose_params;

/* TRANSPOSE (up to 6-D): output[o] = input[sum_i o_i * in_strides[i]]. */
void tfedge_transpose_s8(const tfedge_transpose_params *p, const int8_t *input, int8_t *output);

typedef struct {
  int32_t num_dims; /* 1..TFEDGE_MAX_DIMS */
  int32_t input_dims[TFEDGE_MAX_DIMS];
  int32_t pad_before[TFEDGE_MAX_DIMS];
  int32_t pad_after[TFEDGE_MAX_DIMS];
  int32_t pad_value; /* the output zero point for PAD, the constant for PADV2 */
} tfedge_pad_params;

/* PAD / PADV2 with a constant. */
void tfedge_pad_s8(const tfedge_pad_params *p, const int8_t *input, int8_t *output);

#ifdef __cplusplus
}
#endif

#endif /* TFEDGE_KERNELS_H */
