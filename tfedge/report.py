"""Human-readable forms of a metrics dict: a plain-text table and report.md."""

import json

# (key, label, format) in display order; keys missing from a metrics dict are skipped.
FIELDS = (
    ("model", "model", "{}"),
    ("params", "parameters", "{:,}"),
    ("float_accuracy", "float accuracy", "{:.2%}"),
    ("int8_accuracy", "int8 accuracy", "{:.2%}"),
    ("accuracy_drop_points", "accuracy drop (points)", "{:+.2f}"),
    ("val_samples", "validation samples", "{:,}"),
    ("tflite_bytes", ".tflite bytes (int8)", "{:,}"),
    ("arena_bytes", "TFLM arena bytes", "{:,}"),
    ("tflm_exact", "TFLM == LiteRT reference", "{}"),
    ("tflm_inputs_compared", "random inputs compared", "{}"),
    ("tflm_max_abs_diff", "TFLM max abs difference", "{}"),
    ("calibration_samples", "calibration samples", "{}"),
    ("conversion_seconds", "conversion time (s)", "{:.1f}"),
)


def rows(metrics):
    """(label, formatted value) pairs for the known fields present in `metrics`."""
    out = []
    for key, label, fmt in FIELDS:
        value = metrics.get(key)
        if value is None:
            continue
        out.append((label, fmt.format(value)))
    return out


def text_table(metrics):
    pairs = rows(metrics)
    width = max(len(label) for label, _ in pairs)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in pairs)


def markdown(metrics):
    lines = [f"# tfedge report: {metrics.get('model', 'model')}", "",
             "| metric | value |", "| --- | --- |"]
    lines += [f"| {label} | {value} |" for label, value in rows(metrics)]
    ops = metrics.get("ops")
    if ops:
        lines += ["", "## Operators", "", "| op | count |", "| --- | --- |"]
        lines += [f"| {name} | {count} |" for name, count in sorted(ops.items())]
    lines += ["", "## How these were measured", "",
              "- float accuracy: the Keras model on the validation data;",
              "- int8 accuracy: the `.tflite` in LiteRT (optimized kernels), inputs quantized "
              "with the model's input scale and zero point;",
              "- TFLM arena: the smallest arena in which the TFLM host interpreter allocates "
              "and invokes the model (bisection, 16-byte steps, 64-bit host);",
              "- TFLM vs LiteRT: outputs of the TFLM host interpreter and LiteRT's reference "
              "kernels (`BUILTIN_REF`) on the same random int8 inputs, compared exactly.", ""]
    return "\n".join(lines)


def to_json(metrics):
    return json.dumps(metrics, indent=2, sort_keys=True) + "\n"
