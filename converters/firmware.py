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
nothing is written until every file is made. The same model and options give the same text.
`tfedge export-c` is the command-line face of `export`.
"""

import dataclasses
import importlib.resources
import math
import os
import re
import string

from tfedge import _io
from tfedge.converters import c_array, op_resolver, tflite_reader, tflm

RESOLVER_HEADER = "op_resolver.h"
SETTINGS_HEADER = "model_settings.h"
TEMPLATE = "main.cc"


@dataclasses.dataclass(frozen=True)
class Firmware:
    """What `export` made: `files` ({file name: text}, in writing order), the resolver's
    `registrations` (`op_resolver.Registration`s) and the `arena` (`tflm.ArenaReport`, or None
    when it was not measured)."""

    files: dict
    registrations: tuple
    arena: object = None

    @property
    def int8_kernel_ops(self):
        """The ops registered with an int8-only kernel (CMSIS-NN in an optimized build)."""
        return [r.op for r in self.registrations if r.kernel]

    def save(self, directory):
        """Writes every file into `directory` (created if needed), each atomically.

        Returns {file name: path}.
        """
        _io.ensure_dir(directory)
        paths = {}
        for name, text in self.files.items():
            paths[name] = os.path.join(os.fspath(directory), name)
            _io.write_atomic(paths[name], text)
        return paths


def _float_literal(value, what):
    if not math.isfinite(value):
        raise ValueError(f"{what} is {value!r}; a C++ float literal needs a finite value")
    text = "%.9g" % value  # enough digits to give back the exact float32
    if not re.search(r"[.e]", text):
        text += ".0"
    return text + "f"


def _comment_text(name):
    """A tensor name made safe for a // comment: printable ASCII, at most 60 characters."""
    text = "".join(c if " " <= c <= "~" else "?" for c in name)
    return text if len(text) <= 60 else text[:57] + "..."


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
        f'// {kind} {index} "{_comment_text(tensor.name)}": {tensor.type_name.lower()} '
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
           template=False, timeout=120):
    """Makes the firmware files of a `.tflite` (see the module docstring); returns a `Firmware`.

    `symbol`, `namespace`, `section`, `alignment`, `header_name`: the C array
    (`c_array.to_c_source`; the `.cc` takes the header's name). `int8_kernels`: register TFLM's
    int8-only kernels where the model is int8 (`op_resolver`). `arena`: measure the tensor arena
    with the TFLM host interpreter; `ram_budget` (bytes, needs `arena`): raise
    `tflm.ArenaBudgetError` when even the minimum arena exceeds it. `template`: add `main.cc`.

    Raises TFLiteFormatError for bytes that are no `.tflite`, ValueError for a bad option,
    op_resolver.UnsupportedOpError for an op TFLM cannot register, tflm.TFLMError when TFLM
    cannot run the model, all before anything is written.
    """
    if not isinstance(arena, bool):
        raise ValueError(f"`arena` must be True (measure it) or False. Received: arena={arena!r}")
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
    resolver_text = op_resolver.op_resolver_source(tflite_bytes, int8_kernels=int8_kernels,
                                                   namespace=namespace,
                                                   header_name=RESOLVER_HEADER)
    registrations = tuple(op_resolver.registrations(tflite_bytes, int8_kernels=int8_kernels))
    settings_source(tflite_bytes, None, namespace=namespace)  # its checks, before the slow part
    report = tflm.arena_report(tflite_bytes, ram_budget=ram_budget, timeout=timeout) \
        if arena else None
    files = {cc_name: cc_text, header_name: h_text, RESOLVER_HEADER: resolver_text,
             SETTINGS_HEADER: settings_source(tflite_bytes, report, namespace=namespace)}
    if template:
        files[TEMPLATE] = main_source(symbol=symbol, namespace=namespace,
                                      header_name=header_name)
    return Firmware(files=files, registrations=registrations, arena=report)
