// A minimal TFLM application for the model that `tfedge export-c` exported next to it.
// Written by tfedge as a starting point: edit it freely. It loads the model, registers its
// ops, allocates the tensor arena, fills input 0 from one float, runs the model once and
// prints output 0 with MicroPrintf. Build it with TFLM; see BUILD.md ("Dropping the
// generated files into a TFLM project").

#include <cstddef>
#include <cstdint>

#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/micro/system_setup.h"
#include "tensorflow/lite/schema/schema_generated.h"

#include "${model_header}"
#include "${resolver_header}"
#include "${settings_header}"

${using}static_assert(kTensorArenaSize > 0,
              "kTensorArenaSize is 0 in ${settings_header}: export with the arena measured "
              "(tfedge export-c MODEL.tflite --arena) or set it there");

namespace {

// TFLM places every tensor, scratch buffer and its own bookkeeping in this arena; 16-byte
// alignment lets it use all of it.
alignas(16) uint8_t tensor_arena[kTensorArenaSize];

// float -> int8 with a tensor's scale and zero point: round half away from zero, then
// saturate, as TFLite's quantization does.
int8_t QuantizeToInt8(float value, float scale, int zero_point) {
  float scaled = value / scale;
  if (scaled > 255.0f) scaled = 255.0f;  // saturates below anyway; keeps the cast defined
  if (scaled < -255.0f) scaled = -255.0f;
  const int rounded = static_cast<int>(scaled >= 0.0f ? scaled + 0.5f : scaled - 0.5f);
  int q = rounded + zero_point;
  if (q < -128) q = -128;
  if (q > 127) q = 127;
  return static_cast<int8_t>(q);
}

// Thousandths of `value`, rounded, for MicroPrintf (which has no portable %f).
int Milli(float value) {
  return static_cast<int>(value >= 0.0f ? value * 1000.0f + 0.5f : value * 1000.0f - 0.5f);
}

}  // namespace

int main() {
  // On TFLM's cortex_m_generic target, MicroPrintf writes through the callback that
  // RegisterDebugLogCallback() (tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h)
  // sets: register your UART writer before this line, or nothing is printed.
  tflite::InitializeTarget();

  const tflite::Model* model = tflite::GetModel(${symbol});
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    MicroPrintf("the model has schema version %d; this TFLM reads version %d",
                static_cast<int>(model->version()), TFLITE_SCHEMA_VERSION);
    return 1;
  }

  static ${resolver} resolver;
  if (${register}(resolver) != kTfLiteOk) {
    MicroPrintf("registering the model's ops failed (TFLM said why above)");
    return 1;
  }

  static tflite::MicroInterpreter interpreter(model, resolver, tensor_arena,
                                              kTensorArenaSize);
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    MicroPrintf("AllocateTensors failed with a %d-byte arena: too small (the host needed at "
                "least %d bytes), or an op could not prepare (TFLM said why above)",
                kTensorArenaSize, kTensorArenaMinimum);
    return 1;
  }
  MicroPrintf("tensor arena: %d of %d bytes used",
              static_cast<int>(interpreter.arena_used_bytes()), kTensorArenaSize);

  // Input 0: every element gets `value`. Replace it with your sensor data.
  TfLiteTensor* input = interpreter.input(0);
  if (input->bytes != static_cast<size_t>(kInput0Bytes)) {
    MicroPrintf("input 0 holds %d bytes but ${settings_header} says %d: export both from the "
                "same model", static_cast<int>(input->bytes), kInput0Bytes);
    return 1;
  }
  const float value = 0.5f;
  for (int i = 0; i < kInput0Elements; ++i) {
    if (input->type == kTfLiteInt8) {
      input->data.int8[i] = QuantizeToInt8(value, kInput0Scale, kInput0ZeroPoint);
    } else if (input->type == kTfLiteFloat32) {
      input->data.f[i] = value;
    } else {
      MicroPrintf("input 0 is %s; this template fills int8 and float32 inputs",
                  TfLiteTypeGetName(input->type));
      return 1;
    }
  }

  if (interpreter.Invoke() != kTfLiteOk) {
    MicroPrintf("Invoke failed (TFLM said why above)");
    return 1;
  }

  // Output 0, dequantized, and the index of its largest value (the class of a classifier).
  TfLiteTensor* output = interpreter.output(0);
  int best = 0;
  float best_score = 0.0f;
  for (int i = 0; i < kOutput0Elements; ++i) {
    float score;
    if (output->type == kTfLiteInt8) {
      score = kOutput0Scale * static_cast<float>(output->data.int8[i] - kOutput0ZeroPoint);
    } else if (output->type == kTfLiteFloat32) {
      score = output->data.f[i];
    } else {
      MicroPrintf("output 0 is %s; this template reads int8 and float32 outputs",
                  TfLiteTypeGetName(output->type));
      return 1;
    }
    if (i == 0 || score > best_score) {
      best = i;
      best_score = score;
    }
    MicroPrintf("output[%d] = %d/1000", i, Milli(score));
  }
  MicroPrintf("largest: output[%d] = %d/1000", best, Milli(best_score));
  return 0;
}
