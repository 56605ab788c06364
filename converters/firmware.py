"""`.tflite` bytes -> every file a TFLM firmware build needs, in one call.

    fw = firmware.export(tflite_bytes, int8_kernels=True, ram_budget=256 * 1024)
    fw.files          # {"model_data.cc": text, "model_data.h": ..., "op_resolver.h": ...,
                      #  "model_settings.h": ...}  (+ "main.cc" with template=True)
    fw.arena          # tflm.ArenaReport(minimum=..., recommended=...), or None (arena=False)
    fw.save("out/")   # writes each file atomically; {name: path}

- `model_data.cc/.h`: the flatbuffer as an aligned C array (`c_array.to_c_source`).
- `op_resolver.h`: `OpResolver` and `RegisterOps()` for exactly the model's ops
  (`op_resolver.op_resolver_source`).
- `model_settings.h`: `kTensorArenaSize` (the recommended arena, measured with the TFLM host
  interpreter, see `tflm.recommended_arena_size`), `kTensorArenaMinimum`, and each input's and
  output's element count, bytes, scale and zero point.
- `main.cc` (`template=True`): a minimal TFLM application using the four files above
  (`templates/main.cc`).

Everything is checked before the arena is measured (the slow part, a TFLM subprocess), and
nothing is written until every file is made. The checks include `tfedge lint`'s
(`tfedge.converters.lint.lint` for `target`): an op lint calls a blocker stops the export
with a `BlockerError` listing each one with its fix, unless `allow_blockers=True`, which
exports anyway with a `BlockerWarning` (and registers those ops with TFLM's default kernel,
never an int8-only one). The same model and options give the same text. Strings from the
model (tensor names) reach the files only through `c_text.comment`. `tfedge export-c` is the
command-line face of `export`.
"""

import dataclasses
import importlib.resources
import math
import re
import string
import warnings

from tfedge import _io
from tfedge.converters import c_array, c_text, lint, op_resolver, tflite_reader, tflm

RESOLVER_HEADER = "op_resolver.h"
SETTINGS_HEADER = "model_settings.h"
TEMPLATE = "main.cc"
# The lint target export checks against by default: the same as `tfedge lint`'s, a Cortex-M4
# build of TFLM with CMSIS-NN (what --int8_kernels' Register_*_INT8 kernels are for).
DEFAULT_TARGET = "cortex-m4"


class BlockerError(ValueError):
    """`tfedge lint` finds ops that TFLM cannot run as exported: `findings` (the blocker
    `lint.Finding`s) and the lint `target`."""

    def __init__(self, findings, target):
        self.findings, self.target = tuple(findings), target
        super().__init__(
            f"{blocker_summary(self.findings, target)}: fix the model, or pass "
            "allow_blockers=True to export anyway:\n" + "\n".join(blocker_lines(self.findings)))


class BlockerWarning(UserWarning):
    """`export(..., allow_blockers=True)` exported a model with ops `tfedge lint` calls
    blockers."""


def blocker_summary(findings, target):
    """One line: how many ops `tfedge lint` calls blockers on `target`."""
    count = len(findings)
    return (f"tfedge lint finds {count} blocker{'s' if count != 1 else ''} for {target} "
            f"(TFLM would not run {'these ops' if count != 1 else 'this op'} as exported)")


def blocker_lines(findings):
    """One line per blocker finding: the op, where it is, why (lint's reason) and lint's fix."""
    return [f"  op #{f.index} {f.op} (subgraph 0): {f.reason}; fix: {f.fix}" for f in findings]


@dataclasses.dataclass(frozen=True)
class Firmware:
    """What `export` made: `files` ({file name: text}, in writing order), the resolver's
    `registrations` (`op_resolver.Registration`s), the `arena` (`tflm.ArenaReport`, or None
    when it was not measured) and the `blockers` exported anyway (`lint.Finding`s; empty unless
    `allow_blockers=True` let some through)."""

    files: dict
    registrations: tuple
    arena: object = None
    blockers: tuple = ()

    @property
    def int8_kernel_ops(self):
        """The ops registered with an int8-only kernel (CMSIS-NN in an optimized build)."""
        return [r.op for r in self.registrations if r.kernel]

    def save(self, directory):
        """Writes every file into `directory` (created if needed), all or none: on any
        failure (a full disk, ...) the folder keeps exactly its old files
        (`_io.write_files_atomic`).

        Returns {file name: path}.
        """
        return _io.write_files_atomic(directory, self.files)


def _float_literal(value, what):
    if not math.isfinite(value):
        raise ValueError(f"{what} is {value!r}; a C++ float literal needs a finite value")
    text = "%.9g" % value  # enough digits to give back the exact float32
    if not re.search(r"[.e]", text):
        text += ".0"
    return text + "f"


def _tensor_lines(kind, index, tensor):
    prefix = f"k{kind}{index}"
    shape = ", ".join(str(d) for d in tensor.shape)
    elements = math.prod(tensor.shape)
    quantization = tensor.quantization
    quantized = bool(quantization and quantization.scale)
    if quantized:
        scale = quantization.scale[0]
        zero_point = quantization.zero_point[0] if quantization.zero_point else 0
        meaning = "real value = scale * (q - zero_point)"
        if len(quantization.scale) > 1:
            meaning += f"; per-channel ({len(quantization.scale)} scales), the first one here"
    else:
        scale, zero_point, meaning = 0.0, 0, "not quantized: scale and zero point are 0"
    return [
        f'// {kind} {index} "{c_text.comment(tensor.name)}": {tensor.type_name.lower()} '
        f"[{shape}]; {meaning}.",
        f"constexpr int {prefix}Dims[] = {{{shape}}};",
        f"constexpr int {prefix}Elements = {elements};",
        f"constexpr int {prefix}Bytes = {tensor.nbytes};",
        f"constexpr float {prefix}Scale = "
        f"{_float_literal(scale, f'the scale of {kind.lower()} {index}')};",
        f"constexpr int {prefix}ZeroPoint = {zero_point};",
        "",
    ]


def settings_source(tflite_bytes, arena=None, *, namespace=None, header_name=SETTINGS_HEADER):
    """Returns `model_settings.h`: the arena size (`arena`, a `tflm.ArenaReport`, or None when
    not measured: then kTensorArenaSize is 0 and tfedge's main.cc refuses to compile) and the
    inputs' and outputs' shapes and quantization."""
    model = tflite_reader.read_tflite(tflite_bytes)
    c_array.check_header_name(header_name)
    parts = c_array.namespace_parts(namespace)
    if not model.subgraphs:
        raise ValueError("the model has no subgraph: there are no inputs or outputs to describe")
    main = model.subgraphs[0]
    for index in main.inputs + main.outputs:
        if any(d < 0 for d in main.tensors[index].shape) or main.tensors[index].nbytes is None:
            tensor = main.tensors[index]
            raise ValueError(f"tensor {tensor.name!r} has shape {list(tensor.shape)} and type "
                             f"{tensor.type_name}; model_settings.h needs fixed shapes and "
                             "sized types. Convert with a fixed batch of 1")
    guard = c_array.include_guard(header_name)
    lines = ["// Generated by tfedge. Do not edit.",
             "// The model's tensor arena and its input and output tensors.",
             f"#ifndef {guard}", f"#define {guard}", ""]
    text = "\n".join(lines) + "\n" + c_array.open_namespace(parts)
    if arena is None:
        body = ["// Tensor arena: not measured (exported without the arena). Run `tfedge export-c",
                "// MODEL.tflite --arena` to measure it with the TFLM host interpreter, or set it",
                "// here; tfedge's main.cc refuses to build while it is 0.",
                "constexpr int kTensorArenaSize = 0;",
                "constexpr int kTensorArenaMinimum = 0;"]
    else:
        body = ["// Tensor arena, bytes (declare it alignas(16)). kTensorArenaMinimum is the",
                "// smallest in which the TFLM host interpreter (reference kernels, 64-bit) ran",
                "// the model; kTensorArenaSize adds max(1 KiB, 10%) for optimized kernels'",
                "// scratch buffers and TFLM version differences. On the device,",
                "// interpreter.arena_used_bytes() after AllocateTensors() gives the real figure."]
        if arena.margin_capped:
            body.append("// The RAM budget (kTensorArenaBudget) left less than the full margin.")
        body += [f"constexpr int kTensorArenaSize = {arena.recommended};",
                 f"constexpr int kTensorArenaMinimum = {arena.minimum};"]
        if arena.ram_budget is not None:
            body.append(f"constexpr int kTensorArenaBudget = {arena.ram_budget};")
    body += ["", f"constexpr int kInputCount = {len(main.inputs)};",
             f"constexpr int kOutputCount = {len(main.outputs)};", ""]
    for i, index in enumerate(main.inputs):
        body += _tensor_lines("Input", i, main.tensors[index])
    for i, index in enumerate(main.outputs):
        body += _tensor_lines("Output", i, main.tensors[index])
    text += "\n".join(body[:-1]) + "\n" + c_array.close_namespace(parts)
    return text + f"\n#endif  // {guard}\n"


def main_source(*, symbol="g_model", namespace=None, header_name="model_data.h",
                resolver_header=RESOLVER_HEADER, settings_header=SETTINGS_HEADER,
                resolver_name="OpResolver", register_function="RegisterOps"):
    """Returns `main.cc`, tfedge's TFLM application template, for files made with these
    names."""
    package = importlib.resources.files("tfedge.converters")
    template = package.joinpath("templates").joinpath(TEMPLATE)
    parts = c_array.namespace_parts(namespace)
    qualifier = "::".join(parts) + "::" if parts else ""
    return string.Template(template.read_text(encoding="utf-8")).substitute(
        model_header=header_name, resolver_header=resolver_header,
        settings_header=settings_header,
        using=f"using namespace {'::'.join(parts)};\n" if parts else "",
        symbol=qualifier + symbol, resolver=resolver_name, register=register_function)


def export(tflite_bytes, *, symbol="g_model", namespace=None, section=None, alignment=16,
           header_name="model_data.h", int8_kernels=False, arena=True, ram_budget=None,
           template=False, timeout=120, target=DEFAULT_TARGET, allow_blockers=False):
    """Makes the firmware files of a `.tflite` (see the module docstring); returns a `Firmware`.

    `symbol`, `namespace`, `section`, `alignment`, `header_name`: the C array
    (`c_array.to_c_source`; the `.cc` takes the header's name). `int8_kernels`: register TFLM's
    int8-only kernels where the model is int8 (`op_resolver`). `arena`: measure the tensor arena
    with the TFLM host interpreter; `ram_budget` (bytes, needs `arena`): raise
    `tflm.ArenaBudgetError` when even the minimum arena exceeds it. `template`: add `main.cc`.
    `target`: the chip the firmware's TFLM build is for, as `tfedge lint` takes it
    (`lint.TARGETS`; default "cortex-m4", the same as `tfedge lint`'s: TFLM with CMSIS-NN;
    "generic" is TFLM without CMSIS-NN). `allow_blockers`: export even when lint finds ops
    TFLM cannot run on `target` (a `BlockerWarning` lists them, `Firmware.blockers` holds
    them, and they are registered with TFLM's default kernel, not an int8-only one).

    Raises TFLiteFormatError for bytes that are no `.tflite`, ValueError for a bad option,
    op_resolver.UnsupportedOpError for an op TFLM cannot register, `BlockerError` (a
    ValueError) for lint's blockers, tflm.TFLMError when TFLM cannot run the model, all before
    anything is written; every check runs before the arena is measured.
    """
    if not isinstance(arena, bool):
        raise ValueError(f"`arena` must be True (measure it) or False. Received: arena={arena!r}")
    if not isinstance(allow_blockers, bool):
        raise ValueError("`allow_blockers` must be True (export despite lint's blockers) or "
                         f"False. Received: allow_blockers={allow_blockers!r}")
    if target not in lint.TARGETS:
        raise ValueError(f"`target` must be one of {', '.join(map(repr, lint.TARGETS))}, the "
                         f"chip whose TFLM build the files are for. Received: target={target!r}")
    if ram_budget is not None and not arena:
        raise ValueError("`ram_budget` needs the arena measured (arena=True): there is nothing "
                         f"to check it against. Received: arena=False, ram_budget={ram_budget!r}")
    tflm.check_ram_budget(ram_budget)
    tflite_bytes = bytes(tflite_bytes)
    tflite_reader.read_tflite(tflite_bytes)
    c_array.check_header_name(header_name)
    stem = header_name.rsplit(".", 1)[0]
    cc_name = stem + ".cc"
    if header_name in (RESOLVER_HEADER, SETTINGS_HEADER) or cc_name == TEMPLATE:
        raise ValueError(f"`header_name` must not be {header_name!r}: export writes "
                         f"{RESOLVER_HEADER}, {SETTINGS_HEADER} and {TEMPLATE} itself. "
                         f"Received: header_name={header_name!r}")
    cc_text, h_text = c_array.to_c_source(tflite_bytes, symbol=symbol, header_name=header_name,
                                          alignment=alignment, namespace=namespace,
                                          section=section)
    op_resolver.registrations(tflite_bytes)  # UnsupportedOpError names the op TFLM lacks
    settings_source(tflite_bytes, None, namespace=namespace)  # its checks, before the slow part
    blockers = lint.lint(tflite_bytes, target=target).blockers
    if blockers and not allow_blockers:
        raise BlockerError(blockers, target)
    if blockers:
        warnings.warn(BlockerWarning(
            f"{blocker_summary(blockers, target)}; exported anyway (allow_blockers=True), "
            "with TFLM's default kernel for these ops:\n" + "\n".join(blocker_lines(blockers))),
            stacklevel=2)
    # An op lint calls a blocker never gets an int8-only kernel (e.g. a 5-D TRANSPOSE, which
    # CMSIS-NN's int8 TRANSPOSE refuses).
    default_kernels = sorted({f.op for f in blockers})
    resolver_text = op_resolver.op_resolver_source(tflite_bytes, int8_kernels=int8_kernels,
                                                   namespace=namespace,
                                                   header_name=RESOLVER_HEADER,
                                                   default_kernels=default_kernels)
    registrations = tuple(op_resolver.registrations(tflite_bytes, int8_kernels=int8_kernels,
                                                    default_kernels=default_kernels))
    report = tflm.arena_report(tflite_bytes, ram_budget=ram_budget, timeout=timeout) \
        if arena else None
    files = {cc_name: cc_text, header_name: h_text, RESOLVER_HEADER: resolver_text,
             SETTINGS_HEADER: settings_source(tflite_bytes, report, namespace=namespace)}
    if template:
        files[TEMPLATE] = main_source(symbol=symbol, namespace=namespace,
                                      header_name=header_name)
    return Firmware(files=files, registrations=registrations, arena=report,
                    blockers=tuple(blockers))
