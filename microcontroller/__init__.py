"""Cortex-M deployment: AOT C code generation and the qemu-system-arm harness.

Empty on purpose for now: the AOT runtime and the QEMU harness are the subject of
a later issue. The TFLM host checks live in `tfedge.converters.tflm`.
"""
