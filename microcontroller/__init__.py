"""Cortex-M deployment: ahead-of-time C code generation, the int8 runtime, the QEMU harness.

- `codegen.generate(tflite_bytes)`: `model.c` / `model.h` with
  `int tfedge_model_invoke(const int8_t *in, int8_t *out)`, the weights as `const` arrays,
  every kernel's quantization parameters precomputed (`quant`) and one static arena (`planner`).
- `runtime/`: the int8 kernels in portable C99, bit-exact with TFLite's reference kernels, with
  Cortex-M DSP (SMLAD) loops chosen at compile time.
- `qemu`: board support for mps2-an386 (Cortex-M4), mps2-an500 (Cortex-M7) and mps3-an547
  (Cortex-M55), arm-none-eabi-gcc builds, qemu-system-arm runs, a deterministic instruction
  counter.
- `mcu.run(tflite_bytes, board=...)`: all of it, checked byte for byte against LiteRT's reference
  kernels, with flash, RAM and instruction figures (`tfedge mcu run`).

The TFLM host checks live in `tfedge.converters.tflm`.
"""
