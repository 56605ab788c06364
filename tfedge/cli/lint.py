"""Say how TFLM with CMSIS-NN kernels would run each op of a .tflite on a Cortex-M target.

Example:

    tfedge lint model.tflite --target=cortex-m4
    tfedge lint model.tflite --target=cortex-m55 --json --output=lint.json

prints one row per op of the main subgraph: "optimized" (a CMSIS-NN kernel runs it),
"reference" (TFLM's portable kernel runs it, with the reason) or "blocker" (it will not run
under TFLM, or it defeats an int8 deployment, with the fix). --target=generic is a TFLM build
without CMSIS-NN. --json prints the report as JSON instead of a table; --output=FILE writes it
to FILE (atomically) and prints one summary line.

Exit status: 0 when no op is a blocker, 1 when some op is a blocker, 2 when the model could
not be linted (a bad path or file, bad flags; the message on stderr starts with
"tfedge lint: error:"), so that a build script can tell a model to fix from a call to fix;
141 (128 + SIGPIPE) when the reader of the output went away early (`... | head -1`).
"""

import os
import sys

from absl import flags

from tfedge.converters import lint as lint_lib

_TARGET = flags.DEFINE_enum("target", "cortex-m4", list(lint_lib.TARGETS),
                            "Chip whose TFLM + CMSIS-NN build to check against; generic: TFLM "
                            "without CMSIS-NN.")
_JSON = flags.DEFINE_boolean("json", False, "Print the report as JSON instead of a table.")
_OUTPUT = flags.DEFINE_string("output", None, "Write the report to this file instead of "
                              "printing it (atomically: the old file or the new one, never half).")


def _fail(message):
    print(f"tfedge lint: error: {message}", file=sys.stderr)
    sys.exit(2)


def _model_path(argv):
    if len(argv) < 2:
        _fail("missing the model: run `tfedge lint MODEL.tflite [--target=...]`")
    if len(argv) > 2:
        _fail(f"expects one model file, got {len(argv) - 1}: {' '.join(argv[1:])}")
    path = argv[1]
    if not os.path.exists(path):
        _fail(f"model file {path!r} does not exist")
    if os.path.isdir(path):
        _fail(f"{path!r} is a directory; pass the .tflite file itself")
    if not path.lower().endswith(".tflite"):
        _fail(f"{path!r} is not a .tflite file; pass a TFLite flatbuffer (MODEL.tflite), e.g. "
              "from tfedge.converters.to_int8")
    return path


def main(argv):
    path = _model_path(argv)
    output = _OUTPUT.value
    if output is not None:
        folder = os.path.dirname(os.path.abspath(output))
        if not os.path.isdir(folder):
            _fail(f"--output={output}: folder {folder!r} does not exist; create it or choose "
                  "another path")
        if os.path.isdir(output):
            _fail(f"--output={output} is a directory; give a file name")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        _fail(f"cannot read {path!r}: {exc.strerror or exc}")
    try:
        report = lint_lib.lint(data, target=_TARGET.value)
    except ValueError as exc:  # TFLiteFormatError is a ValueError
        _fail(f"{path!r} is not a valid .tflite model: {exc}")
    text = report.to_json() if _JSON.value else report.table()
    if output is None:
        print(text)
    else:
        from tfedge import _io

        try:
            _io.write_atomic(output, text + "\n")
        except OSError as exc:
            _fail(f"cannot write --output={output}: {exc.strerror or exc}")
        counts = report.summary
        print(f"wrote {output} (target {report.target}: "
              + ", ".join(f"{s} {counts[s]}" for s in lint_lib.STATUSES) + ")")
    if not report.ok:
        sys.exit(1)
