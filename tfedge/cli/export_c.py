"""Write the files a TFLM firmware build needs from a `.tflite`: C array, op resolver, arena.

Example:

    tfedge export-c model.tflite --output_dir=firmware --symbol=g_kws_model \\
        --namespace=app::ml --section=.rodata.model --int8_kernels \\
        --ram_budget=262144 --template

writes firmware/model_data.cc and firmware/model_data.h (the model as an `alignas(16)` array
`app::ml::g_kws_model` in linker section .rodata.model), firmware/op_resolver.h (a
`tflite::MicroMutableOpResolver<N>` registering exactly the model's ops, with TFLM's int8-only
kernels where the model is int8: CMSIS-NN's in an OPTIMIZED_KERNEL_DIR=cmsis_nn build),
firmware/model_settings.h (kTensorArenaSize, measured with the TFLM host interpreter plus a
margin, and the input/output shapes and quantization) and, with --template,
firmware/main.cc (a minimal TFLM application using them). It fails, writing nothing, when
the arena exceeds --ram_budget bytes or TFLM cannot run the model. --noarena skips the
measurement. BUILD.md says where the files go in a TFLM project.

Before anything slow, it runs `tfedge lint`'s checks for --target (default cortex-m4, the same
as `tfedge lint`'s: a TFLM build with CMSIS-NN; --target=generic for TFLM without it) and
refuses a model with blockers, listing each op, why and the fix; --allow_blockers exports it
anyway with a warning on stderr, registering those ops with TFLM's default kernels.
"""

import sys
import warnings

from absl import flags

from tfedge.converters import c_array
from tfedge.converters import lint as lint_lib

_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Folder for the generated files.",
                                  required=True)
_SYMBOL = flags.DEFINE_string("symbol", "g_model", "C symbol of the model array; not a name "
                              "the generated files use (main, kTensorArenaSize, OpResolver, "
                              "tflite, ...: c_array.RESERVED_NAMES).")
_NAMESPACE = flags.DEFINE_string("namespace", None, "C++ namespace of every generated "
                                 "declaration, e.g. app or app::ml; none by default.")
_SECTION = flags.DEFINE_string("section", None, "Linker section of the model array, e.g. "
                               ".rodata.model; the compiler's default by default.")
_ALIGNMENT = flags.DEFINE_integer("alignment", 16, "Alignment of the model array in bytes, a "
                                  "power of two (TFLM needs 16).", lower_bound=1)
_HEADER_NAME = flags.DEFINE_string("header_name", "model_data.h", "File name of the model "
                                   "header; the .cc file takes the same name.")
_INT8_KERNELS = flags.DEFINE_boolean("int8_kernels", False, "Register TFLM's int8-only "
                                     "kernels (Register_XXX_INT8) for the ops that are int8 in "
                                     "the model.")
_ARENA = flags.DEFINE_boolean("arena", True, "Measure the tensor arena with the TFLM host "
                              "interpreter (seconds); --noarena leaves kTensorArenaSize 0.")
_RAM_BUDGET = flags.DEFINE_integer("ram_budget", None, "RAM for the tensor arena, in bytes; "
                                   "an error if the arena needs more.", lower_bound=1)
_TEMPLATE = flags.DEFINE_boolean("template", False, "Also write main.cc, a minimal TFLM "
                                 "application.")
_TARGET = flags.DEFINE_enum("target", "cortex-m4", list(lint_lib.TARGETS),
                            "Chip whose TFLM build the files are for, checked as `tfedge lint "
                            "--target` does (default cortex-m4, the same as tfedge lint's: "
                            "TFLM with CMSIS-NN; generic: TFLM without CMSIS-NN).")
_ALLOW_BLOCKERS = flags.DEFINE_boolean("allow_blockers", False, "Export even when tfedge lint "
                                       "finds ops TFLM cannot run on --target (listed on "
                                       "stderr; they get TFLM's default kernels).")


def _validator(check):
    def validate(value):
        try:
            check(value)
        except ValueError as exc:
            raise flags.ValidationError(str(exc))
        return True

    return validate


flags.register_validator("symbol", _validator(c_array.check_symbol))
flags.register_validator("namespace", _validator(c_array.namespace_parts))
flags.register_validator("section", _validator(c_array.check_section))
flags.register_validator("header_name", _validator(c_array.check_header_name))
flags.register_validator(
    "alignment", lambda a: a & (a - 1) == 0,
    message="--alignment must be a power of two, e.g. 16 (what TFLM needs)")
flags.register_multi_flags_validator(
    ["arena", "ram_budget"], lambda f: f["arena"] or f["ram_budget"] is None,
    message="--ram_budget needs the arena measured: drop --noarena")


def main(argv):
    error = "tfedge export-c: error:"
    if len(argv) < 2:
        sys.exit(f"{error} no model given: tfedge export-c MODEL.tflite --output_dir=DIR")
    if len(argv) > 2:
        sys.exit(f"{error} one model at a time; received {len(argv) - 1}: "
                 f"{' '.join(argv[1:])}")
    from tfedge.converters import firmware, op_resolver, tflite_reader, tflm

    path = argv[1]
    try:
        with open(path, "rb") as f:
            model = f.read()
    except OSError as exc:
        sys.exit(f"{error} cannot read the model {path!r}: {exc.strerror or exc}")
    try:
        tflite_reader.read_tflite(model)
    except tflite_reader.TFLiteFormatError as exc:
        sys.exit(f"{error} {path!r} is not a .tflite model: {exc}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", firmware.BlockerWarning)  # said below, in full
            fw = firmware.export(
                model, symbol=_SYMBOL.value, namespace=_NAMESPACE.value, section=_SECTION.value,
                alignment=_ALIGNMENT.value, header_name=_HEADER_NAME.value,
                int8_kernels=_INT8_KERNELS.value, arena=_ARENA.value,
                ram_budget=_RAM_BUDGET.value, template=_TEMPLATE.value, target=_TARGET.value,
                allow_blockers=_ALLOW_BLOCKERS.value)
    except firmware.BlockerError as exc:
        sys.exit(f"{error} {firmware.blocker_summary(exc.findings, exc.target)}: fix the model "
                 "(each fix below), pass the --target you build for, or --allow_blockers to "
                 "export anyway; nothing written\n"
                 + "\n".join(firmware.blocker_lines(exc.findings)))
    except (ValueError, OSError, op_resolver.UnsupportedOpError, tflm.TFLMError) as exc:
        sys.exit(f"{error} {exc}")
    try:
        paths = fw.save(_OUTPUT_DIR.value)
    except OSError as exc:
        if not exc.strerror:  # _io's own errors name the path and the fix
            sys.exit(f"{error} {exc}")
        sys.exit(f"{error} cannot write the files into --output_dir={_OUTPUT_DIR.value}: "
                 f"{exc.strerror}; the folder keeps the files it had (all or none are "
                 "written). Free space or choose another folder")
    if fw.blockers:
        print(f"tfedge export-c: warning: {firmware.blocker_summary(fw.blockers, _TARGET.value)}"
              "; exported anyway (--allow_blockers), with TFLM's default kernel for "
              f"{'these ops' if len(fw.blockers) > 1 else 'this op'}:\n"
              + "\n".join(firmware.blocker_lines(fw.blockers)), file=sys.stderr)
    for path in paths.values():
        print(f"wrote {path}")
    ops = [r.op for r in fw.registrations]
    print(f"op resolver: {len(ops)} ops: {', '.join(ops)}")
    if _INT8_KERNELS.value:
        optimized = fw.int8_kernel_ops
        print(f"int8 kernels (CMSIS-NN with OPTIMIZED_KERNEL_DIR=cmsis_nn): "
              f"{', '.join(optimized) if optimized else 'none'}")
    if fw.arena is None:
        print("tensor arena: not measured (--noarena); kTensorArenaSize is 0")
        return
    arena = fw.arena
    print(f"tensor arena: minimum {arena.minimum:,} bytes (TFLM host interpreter), "
          f"recommended {arena.recommended:,} bytes (kTensorArenaSize)")
    if arena.ram_budget is not None:
        note = " (the budget left less than the full margin)" if arena.margin_capped else ""
        print(f"RAM budget: {arena.ram_budget:,} bytes, {arena.headroom:,} left{note}")
