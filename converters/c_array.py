"""`.tflite` bytes -> `model_data.cc` / `model_data.h` for firmware builds.

    cc, h = c_array.to_c_source(tflite_bytes, symbol="g_model")
    cc, h = c_array.to_c_source(tflite_bytes, symbol="g_model", namespace="app::ml",
                                section=".rodata.model", alignment=16)

The array is `alignas(16) const unsigned char` (TFLM reads the flatbuffer in place and
needs it aligned), with a `const unsigned int <symbol>_len`. Output is deterministic: the same
bytes and options give the same text, with no dates or paths in it.

What this adds over `xxd -i` and TFLM's `tensorflow/lite/micro/tools/generate_cc_arrays.py`
(which names the array after the input file, `g_<file>_model_data`, and includes the header
by the path the build wrote it to): the symbol, a C++ namespace and a linker section can be
set, the `.cc` includes its header by a plain relative name, and the header has an include
guard. A 5 MB model formats in well under a second (`benchmarks/export_c.py`).

`section` becomes GCC's `__attribute__((section("...")))`, which arm-none-eabi-gcc, clang and
armclang accept; IAR places data with `#pragma location` instead.
"""

import re

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# C and C++ reserved words a symbol may not take.
_RESERVED = frozenset("""
alignas alignof and and_eq asm auto bitand bitor bool break case catch char char8_t char16_t
char32_t class co_await co_return co_yield compl concept const const_cast consteval constexpr
constinit continue decltype default delete do double dynamic_cast else enum explicit export
extern false float for friend goto if inline int long mutable namespace new noexcept not not_eq
nullptr operator or or_eq private protected public register reinterpret_cast requires restrict
return short signed sizeof static static_assert static_cast struct switch template this
thread_local throw true try typedef typeid typename union unsigned using virtual void volatile
wchar_t while xor xor_eq _Alignas _Alignof _Atomic _Bool _Complex _Generic _Imaginary _Noreturn
_Static_assert _Thread_local
""".split())
_BYTES_PER_LINE = 12
_HEADER_NAME = re.compile(r"[A-Za-z0-9_.\-]+\.(h|hpp)\Z")
_SECTION = re.compile(r"[A-Za-z0-9_.$]{1,200}\Z")


def check_identifier(name, argument="symbol"):
    """Raises ValueError unless `name` is a usable C/C++ identifier."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ValueError(
            f"`{argument}` must be a C identifier (letters, digits and _, not starting with a "
            f"digit), e.g. 'g_model'. Received: {argument}={name!r}")
    if name in _RESERVED:
        raise ValueError(f"`{argument}` must not be a C/C++ keyword. Received: {argument}={name!r}")
    if "__" in name or re.match(r"_[A-Z]", name):
        raise ValueError(f"`{argument}` must not contain '__' or start with '_' and a capital "
                         f"letter (reserved for the compiler). Received: {argument}={name!r}")
    return name


# Names the generated files (model_data.h/.cc, model_settings.h, op_resolver.h), tfedge's
# main.cc template and the headers they include declare or use, with where: a model symbol or
# namespace of the same name would not compile, or would change what they mean. Locals and
# parameters count too, since TFLM builds with -Wshadow -Werror. tests/hostile/
# test_hostile_export_c.py checks that every name they use unqualified is here.
RESERVED_NAMES = {}
for _where, _names in (
        ("main.cc (the template application) defines it",
         "main tensor_arena QuantizeToInt8 Milli"),
        ("main.cc or op_resolver.h has a local variable or parameter of that name (TFLM "
         "builds with -Wshadow -Werror; main.cc's `model` also hides the array from "
         "tflite::GetModel)",
         "model resolver interpreter input output value i best best_score score scaled "
         "rounded q scale zero_point added status"),
        ("model_settings.h declares it",
         "kTensorArenaSize kTensorArenaMinimum kTensorArenaBudget kInputCount kOutputCount"),
        ("op_resolver.h declares it", "OpResolver RegisterOps"),
        ("it is TFLM's namespace, which every generated file uses", "tflite"),
        ("it is the C++ standard library's namespace", "std"),
        ("it is the namespace of the FlatBuffers library that TFLM's schema header includes",
         "flatbuffers"),
        ("TFLM declares it in the global namespace and main.cc uses it", "MicroPrintf"),
        ("TFLM's Makefile defines it as a macro (OPTIMIZED_KERNEL_DIR=cmsis_nn)", "CMSIS_NN"),
        ("<cstddef>, which main.cc includes, declares it",
         "size_t ptrdiff_t max_align_t nullptr_t NULL offsetof"),
):
    RESERVED_NAMES.update(dict.fromkeys(_names.split(), _where))
_RESERVED_PATTERNS = (
    (re.compile(r"k(Input|Output)\d+(Dims|Elements|Bytes|Scale|ZeroPoint)\Z"),
     "model_settings.h declares names of this form, one set per input and output"),
    (re.compile(r"(k?TfLite|TFLITE_|TF_LITE_)"),
     "TFLM's C API declares names starting with TfLite, kTfLite, TFLITE_ and TF_LITE_ in the "
     "global namespace"),
    (re.compile(r"u?int(_least|_fast)?\d+_t\Z|u?int(ptr|max)_t\Z"),
     "<cstdint>, which the generated files include, declares it"),
    (re.compile(r"U?INT(_LEAST|_FAST)?(\d+|PTR|MAX)_(MIN|MAX|C)\Z"
                r"|(SIZE|PTRDIFF|SIG_ATOMIC|WCHAR|WINT)_(MIN|MAX)\Z"),
     "<cstdint> defines it as a macro"),
)


def reserved_by(name):
    """Where the generated files or main.cc declare or use `name` (None when they do not)."""
    if name in RESERVED_NAMES:
        return RESERVED_NAMES[name]
    for pattern, where in _RESERVED_PATTERNS:
        if pattern.match(name):
            return where
    return None


def check_symbol(name, argument="symbol"):
    """`check_identifier`, and raises ValueError when `name`, or the `<name>_len` that
    `to_c_source` declares next to it, is a name the generated files or main.cc declare or
    use (`RESERVED_NAMES`): the files would not compile."""
    check_identifier(name, argument)
    for candidate in (name, name + "_len"):
        where = reserved_by(candidate)
        if where is not None:
            what = (f"{name!r}:" if candidate == name else
                    f"{name!r}: its length constant would be {candidate!r}, and")
            raise ValueError(
                f"`{argument}` must not be {what} {where}, so the generated files would not "
                f"compile. Choose another name, e.g. 'g_model'. Received: {argument}={name!r}")
    return name


def include_guard(header_name):
    """The include guard macro of a generated header: "op_resolver.h" -> TFEDGE_OP_RESOLVER_H_."""
    return "TFEDGE_" + re.sub(r"[^A-Za-z0-9]", "_", header_name).upper() + "_"


_guard = include_guard


def check_header_name(header_name, argument="header_name"):
    """Raises ValueError unless `header_name` is a plain file name ending in .h or .hpp."""
    if not isinstance(header_name, str) or not _HEADER_NAME.match(header_name):
        raise ValueError(f"`{argument}` must be a plain file name ending in .h (letters, digits, "
                         f"'_', '-' and '.', no folders), e.g. 'model_data.h'. Received: "
                         f"{argument}={header_name!r}")
    return header_name


def namespace_parts(namespace, argument="namespace"):
    """`"a::b"` -> `("a", "b")`, each part checked by `check_identifier`; None -> ()."""
    if namespace is None:
        return ()
    if not isinstance(namespace, str) or not namespace:
        raise ValueError(f"`{argument}` must be a C++ namespace such as 'tfedge' or 'app::ml', "
                         f"or None for none. Received: {argument}={namespace!r}")
    parts = tuple(namespace.split("::"))
    for part in parts:
        try:
            check_identifier(part, "part")
        except ValueError as exc:
            reason = (str(exc).split(". Received:")[0].replace("`part` ", "each part ")
                      .replace(", e.g. 'g_model'", ""))
            raise ValueError(
                f"`{argument}` must be C identifiers joined by '::', e.g. 'tfedge' or 'app::ml'; "
                f"{reason}, and part {part!r} is not. Received: {argument}={namespace!r}"
            ) from None
        where = reserved_by(part)
        if where is not None:
            raise ValueError(
                f"`{argument}` must not use the name {part!r}: {where}, so the generated files "
                f"would not compile. Choose another name, e.g. 'app::ml'. "
                f"Received: {argument}={namespace!r}")
    return parts


def check_section(section, argument="section"):
    """Raises ValueError unless `section` is a usable linker section name (or None)."""
    if section is None:
        return None
    if not isinstance(section, str) or not _SECTION.match(section):
        raise ValueError(
            f"`{argument}` must be a linker section name of letters, digits, '_', '.' and '$' "
            f"(at most 200 characters), e.g. '.rodata.model' or 'model_section'; pass None for "
            f"the compiler's default (.rodata). Received: {argument}={section!r}")
    return section


def open_namespace(parts):
    """The lines that open the namespaces `parts` (C++11: one `namespace x {` per part)."""
    return "".join(f"namespace {p} {{\n" for p in parts) + ("\n" if parts else "")


def close_namespace(parts):
    return ("\n" if parts else "") + "".join(f"}}  // namespace {p}\n" for p in reversed(parts))


def _hex_lines(data):
    """The bytes as `0x00, 0x01, ...`, _BYTES_PER_LINE a line, each line indented 4 spaces.

    Fast (a 5 MB model in well under a second): `bytes.hex(" ")` formats at C speed, an
    extended-slice assignment turns every 12th separator into a newline, and two `replace`
    calls on the bytes add the `0x` prefixes, commas and indents.
    """
    buf = bytearray(data.hex(" "), "ascii")  # "00 01 02 ...": each byte takes 3 characters
    stride = 3 * _BYTES_PER_LINE
    buf[stride - 1::stride] = b"\n" * len(range(stride - 1, len(buf), stride))
    return (b"    0x" + buf.replace(b" ", b", 0x").replace(b"\n", b",\n    0x")).decode("ascii")


def to_c_source(data, *, symbol="g_model", header_name="model_data.h", alignment=16,
                namespace=None, section=None):
    """Returns (cc_text, h_text) holding `data` as an aligned const byte array.

    `namespace` ("a" or nested "a::b") wraps both declarations in C++ namespaces; `section`
    (e.g. ".rodata.model") puts the array in that linker section, so a linker script can
    place the model in a given flash region. `header_name` is the plain file name the `.cc`
    includes. `symbol` and the namespace's parts must not be names the generated files or
    main.cc declare or use (`check_symbol`, `RESERVED_NAMES`).
    """
    check_symbol(symbol)
    if not isinstance(alignment, int) or isinstance(alignment, bool) or alignment < 1 \
            or alignment & (alignment - 1):
        raise ValueError(f"`alignment` must be a power of two, e.g. 16 (what TFLM needs). "
                         f"Received: alignment={alignment!r}")
    check_header_name(header_name)
    parts = namespace_parts(namespace)
    check_section(section)
    data = bytes(data)
    if not data:
        raise ValueError("`data` is empty: there is no model to export")
    guard = _guard(header_name)
    placement = f", in linker section {section}" if section else ""
    h_text = (
        "// Generated by tfedge. Do not edit.\n"
        f"#ifndef {guard}\n#define {guard}\n\n"
        + open_namespace(parts) +
        f"// The model flatbuffer, {len(data)} bytes, aligned to {alignment} bytes{placement}.\n"
        f"extern const unsigned char {symbol}[];\n"
        f"extern const unsigned int {symbol}_len;\n"
        + close_namespace(parts) +
        f"\n#endif  // {guard}\n")
    attribute = f' __attribute__((section("{section}")))' if section else ""
    cc_text = (
        "// Generated by tfedge. Do not edit.\n"
        f'#include "{header_name}"\n\n'
        + open_namespace(parts) +
        f"alignas({alignment}) const unsigned char {symbol}[]{attribute} = {{\n"
        + _hex_lines(data) +
        "\n};\n"
        f"const unsigned int {symbol}_len = {len(data)};\n"
        + close_namespace(parts))
    return cc_text, h_text


# The start of an array definition as `to_c_source` writes it (an attribute may follow `[]`);
# its initializer runs to the next "};".
_ARRAY = re.compile(r"const unsigned char\s+(\w+)\[\]\s*"
                    r"(?:__attribute__\s*\(\([^;{]*?\)\)\s*)?=\s*\{")
_LEN = re.compile(r"const unsigned int\s+(\w+)_len\s*=\s*(\d+)\s*;")


def _parse_bytes(body):
    """The values of a `0x00, 0x01, ...` initializer. Fast when every value is `0xHH` (what
    `to_c_source` writes); any other C integer literals take the slow path."""
    count, commas = body.count("0x"), body.count(",")
    if count == commas + 1 or (count == commas and body.rstrip().endswith(",")):
        try:
            data = bytes.fromhex(body.replace("0x", " ").replace(",", " "))
        except ValueError:
            data = None
        if data is not None and len(data) == count:  # each value had exactly two hex digits
            return data
    values = []
    for tok in body.split(","):
        if tok.strip():
            value = int(tok.strip().rstrip("uU"), 0)
            if not 0 <= value <= 255:
                raise ValueError(f"the array holds {tok.strip()}, which is not a byte (0..255)")
            values.append(value)
    return bytes(values)


def parse_c_source(cc_text, symbol=None):
    """Reads the bytes back out of a `.cc` written by `to_c_source` (for round-trip checks).

    Namespaces and a section attribute are allowed; `symbol` is the bare array name.
    """
    arrays = {}
    position = 0
    while (m := _ARRAY.search(cc_text, position)) is not None:
        end = cc_text.find("};", m.end())
        if end < 0:
            raise ValueError(f"the array {m.group(1)!r} has no closing '}};'")
        arrays[m.group(1)] = cc_text[m.end():end]
        position = end + 2
    if not arrays:
        raise ValueError("no `const unsigned char NAME[] = {...};` array found in the source")
    if symbol is None:
        if len(arrays) != 1:
            raise ValueError(f"several arrays found ({sorted(arrays)}); pass `symbol`")
        symbol = next(iter(arrays))
    if symbol not in arrays:
        raise ValueError(f"array {symbol!r} not found; the source has {sorted(arrays)}")
    data = _parse_bytes(arrays[symbol])
    lengths = {m.group(1): int(m.group(2)) for m in _LEN.finditer(cc_text)}
    if symbol in lengths and lengths[symbol] != len(data):
        raise ValueError(f"{symbol}_len says {lengths[symbol]} bytes but the array holds "
                         f"{len(data)}")
    return data
