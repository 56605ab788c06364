"""Human-readable forms of a metrics dict: a plain-text table, report.md and its chart."""

import io
import json

CHART = "accuracy_vs_size.png"


def _accuracy(value):
    return f"{value:.2%}"


# (key, label, format) in display order; keys missing from a metrics dict are skipped.
FIELDS = (
    ("model", "model", "{}"),
    ("params", "parameters", "{:,}"),
    ("macs", "MACs", "{:,}"),
    ("quantize", "quantization", "{}"),
    ("teacher", "teacher", "{}"),
    ("teacher_accuracy", "teacher accuracy", _accuracy),
    ("float_accuracy", "float accuracy (original)", _accuracy),
    ("pruned_accuracy", "pruned accuracy (float)", _accuracy),
    ("channel_target", "channel pruning target (fraction removed)", "{:.0%}"),
    ("channel_by", "channel pruning measured by", "{}"),
    ("channel_steps", "channel pruning rounds", "{}"),
    ("channel_teacher", "channel pruning teacher", "{}"),
    ("pruned_macs", "MACs after channel pruning", "{:,}"),
    ("macs_removed", "MACs removed", "{:.1%}"),
    ("pruned_params", "parameters after channel pruning", "{:,}"),
    ("params_removed", "parameters removed", "{:.1%}"),
    ("distilled_accuracy", "distilled accuracy (float)", _accuracy),
    ("qat_accuracy", "QAT accuracy (fake-quant)", _accuracy),
    ("int8_accuracy", "int8 accuracy", _accuracy),
    ("int16x8_accuracy", "int16x8 accuracy", _accuracy),
    ("dynamic_accuracy", "dynamic-range accuracy", _accuracy),
    ("float16_accuracy", "float16 accuracy", _accuracy),
    ("float32_accuracy", "float32 .tflite accuracy", _accuracy),
    ("accuracy_drop_points", "accuracy drop (points)", "{:+.2f}"),
    ("val_samples", "validation samples", "{:,}"),
    ("sparsity", "sparsity of pruned layers", "{:.2%}"),
    ("sparsity_after_qat", "sparsity after QAT", "{:.2%}"),
    ("original_tflite_bytes", ".tflite bytes, original float32", "{:,}"),
    ("tflite_bytes", ".tflite bytes, final", "{:,}"),
    ("original_gzip_bytes", "gzipped bytes, original float32", "{:,}"),
    ("tflite_gzip_bytes", "gzipped bytes, final", "{:,}"),
    ("size_reduction", "size reduction", "{:.2f}x"),
    ("gzip_size_reduction", "gzipped size reduction", "{:.2f}x"),
    ("arena_bytes", "TFLM arena bytes", "{:,}"),
    ("tflm_exact", "TFLM == LiteRT reference", "{}"),
    ("tflm_inputs_compared", "random inputs compared", "{}"),
    ("tflm_max_abs_diff", "TFLM max abs difference", "{}"),
    ("tflm_error", "TFLM error", "{}"),
    ("target", "target", "{}"),
    ("fits_target", "fits the target", "{}"),
    ("calibration_samples", "calibration samples", "{}"),
    ("total_seconds", "total time (s)", "{:.1f}"),
)


def _format(fmt, value):
    return fmt(value) if callable(fmt) else fmt.format(value)


def rows(metrics):
    """(label, formatted value) pairs for the known fields present in `metrics`."""
    return [(label, _format(fmt, metrics[key])) for key, label, fmt in FIELDS
            if metrics.get(key) is not None]


def text_table(metrics):
    pairs = rows(metrics)
    width = max(len(label) for label, _ in pairs)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in pairs)


def _stage_lines(stages):
    lines = ["| stage | accuracy | .tflite bytes | gzipped bytes |", "| --- | --- | --- | --- |"]
    for s in stages:
        accuracy = "—" if s.get("accuracy") is None else _accuracy(s["accuracy"])
        lines.append(f"| {s['stage']} | {accuracy} | {s['tflite_bytes']:,} | "
                     f"{s['gzip_bytes']:,} |")
    return lines


def markdown(metrics):
    lines = [f"# tfedge report: {metrics.get('model', 'model')}", "",
             "| metric | value |", "| --- | --- |"]
    lines += [f"| {label} | {value} |" for label, value in rows(metrics)]
    stages = metrics.get("stages")
    if stages:
        lines += ["", "## Stages", ""] + _stage_lines(stages)
        lines += ["", f"![accuracy against size]({CHART})"]
    layers = metrics.get("sparsity_per_layer")
    if layers:
        lines += ["", "## Sparsity per pruned layer", "", "| layer | weights | zeros | sparsity |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| {r['layer']} | {r['weights']:,} | {r['zeros']:,} | {r['sparsity']:.2%} |"
                  for r in layers]
    changed = metrics.get("channels_per_layer")
    if changed:
        lines += ["", "## Channels per pruned layer", "", "| layer | before | after |",
                  "| --- | --- | --- |"]
        lines += [f"| {r['layer']} | {r['before']} | {r['after']} |" for r in changed]
    if metrics.get("stage_seconds"):
        lines += ["", "## Time per stage (s)", "", "| stage | seconds |", "| --- | --- |"]
        lines += [f"| {k} | {v:.1f} |" for k, v in metrics["stage_seconds"].items()]
    ops = metrics.get("ops")
    if ops:
        lines += ["", "## Operators", "", "| op | count |", "| --- | --- |"]
        lines += [f"| {name} | {count} |" for name, count in sorted(ops.items())]
    lines += ["", "## How these were measured", "",
              "- float accuracies: the Keras model of each stage on the validation data;",
              "- the final accuracy: the `.tflite` in LiteRT, integer inputs quantized with the "
              "model's input scale and zero point;",
              "- gzipped bytes: the `.tflite` compressed with gzip level 9, which shows what "
              "zero weights save in storage or transfer (the flat `.tflite` keeps them);",
              "- sparsity: zero weights over all weights of the layers that were pruned;",
              "- TFLM arena: the smallest arena in which the TFLM host interpreter allocates "
              "and invokes the model (bisection, 16-byte steps, 64-bit host);",
              "- TFLM vs LiteRT: outputs of the TFLM host interpreter and LiteRT's reference "
              "kernels (`BUILTIN_REF`) on the same random inputs, compared exactly.", ""]
    return "\n".join(lines)


def chart_png(metrics):
    """A PNG (bytes) of accuracy against `.tflite` size, one point per stage.

    Filled markers are the raw `.tflite` bytes, hollow ones the gzipped bytes. Without
    validation data the accuracy axis is empty and the chart shows sizes only.
    """
    from matplotlib.figure import Figure  # no pyplot: the user's backend is left alone

    stages = metrics.get("stages") or []
    figure = Figure(figsize=(6.4, 4.0), dpi=100)
    axes = figure.add_subplot()
    for i, s in enumerate(stages):
        color = f"C{i}"
        accuracy = s.get("accuracy")
        y = 100 * accuracy if accuracy is not None else 0.0
        raw, packed = s["tflite_bytes"] / 1024, s["gzip_bytes"] / 1024
        axes.plot([packed, raw], [y, y], color=color, linewidth=1, alpha=0.5)
        axes.plot(raw, y, "o", color=color, label=s["stage"])
        axes.plot(packed, y, "o", markerfacecolor="none", color=color)
    axes.set_xscale("log")
    axes.set_xlabel(".tflite KiB (filled: raw, hollow: gzipped)")
    axes.set_ylabel("validation accuracy (%)")
    axes.set_title(f"{metrics.get('model', 'model')}: accuracy against size")
    axes.grid(True, which="both", alpha=0.3)
    if stages:
        axes.margins(y=0.2)
        axes.legend(loc="best", fontsize="small")
    figure.tight_layout()
    buffer = io.BytesIO()
    # Fixed metadata keeps the bytes identical for identical metrics.
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def to_json(metrics):
    return json.dumps(metrics, indent=2, sort_keys=True) + "\n"
