"""Prints a table of every registered model at 96x96: size, MACs, arena and host latency.

    .venv/bin/python benchmarks/zoo.py [--input_size=96] [--runs=50] [--markdown=zoo.md]

Columns: parameters and MACs (tfedge.profile), float32 and full-int8 `.tflite` bytes, the
smallest TFLM arena (TFLM host interpreter, 64-bit), the peak of live int8 activations (lower
bound for any arena), and LiteRT latency on this host (median of --runs single-image invokes, one
thread, float and int8 models in the same process). Each model uses the width in WIDTHS, chosen
to keep the int8 model small enough for a microcontroller. Models are untrained (BatchNorm
statistics adapted to random images), which does not change sizes or latencies.
"""

import argparse
import statistics
import sys
import time

import numpy as np

import tfedge
from tfedge import models
from tfedge.converters import interpreter as litert
from tfedge.converters import tflm, to_int8
from tfedge.converters.tflite import converter_for

WIDTHS = {
    "mobilenet_v2": dict(width=0.35),
    "mobilenet_v3_small": dict(width=0.75),
    "mobilenet_v3_large": dict(width=0.75),
    "shufflenet_v1": dict(width=0.5, groups=3),
    "shufflenet_v2": dict(width=0.5),
    "ghostnet": dict(width=0.5),
    "efficientnet_lite0": dict(width=0.5),
    "efficientnet_lite1": dict(width=0.5),
    "efficientnet_lite2": dict(width=0.5),
    "efficientnet_lite3": dict(width=0.5),
    "efficientnet_lite4": dict(width=0.5),
}


def latency_ms(tflite_bytes, runs):
    interp = litert.make_interpreter(tflite_bytes, num_threads=1)
    sample = litert.random_inputs(interp, 1)[0] if interp.get_input_details()[0]["dtype"] != \
        np.float32 else [np.random.default_rng(0).random(
            interp.get_input_details()[0]["shape"], np.float32)]
    litert.invoke(interp, sample)  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interp.invoke()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def measure(name, size, runs):
    kwargs = WIDTHS.get(name, {})
    tfedge.training.seed_everything(0)
    model = models.build(name, input_shape=(size, size, 3), num_classes=10, **kwargs)
    images = np.random.default_rng(0).random((32, size, size, 3), np.float32)
    for _ in range(10):
        model(images, training=True)
    prof = tfedge.profile(model)
    float_bytes = converter_for(model).convert()
    int8_bytes = to_int8(model, images, num_samples=32)
    return {
        "model": name, "config": ", ".join(f"{k}={v}" for k, v in kwargs.items()),
        "params": prof.total_params, "macs": prof.total_macs,
        "float_bytes": len(float_bytes), "int8_bytes": len(int8_bytes),
        "arena": tflm.find_arena_size(int8_bytes), "peak": prof.peak_activation_bytes,
        "float_ms": latency_ms(float_bytes, runs), "int8_ms": latency_ms(int8_bytes, runs),
    }


COLUMNS = (("model", "model", "{}"), ("config", "config", "{}"), ("params", "params", "{:,}"),
           ("macs", "MACs", "{:,}"), ("float_bytes", "float .tflite", "{:,}"),
           ("int8_bytes", "int8 .tflite", "{:,}"), ("arena", "TFLM arena", "{:,}"),
           ("peak", "live int8 peak", "{:,}"), ("float_ms", "float ms", "{:.2f}"),
           ("int8_ms", "int8 ms", "{:.2f}"))


def markdown(rows, size):
    lines = [f"Input {size}x{size}x3, 10 classes; latency: LiteRT, 1 thread, median.", "",
             "| " + " | ".join(c[1] for c in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(fmt.format(r[key]) for key, _, fmt in COLUMNS) + " |"
              for r in rows]
    return "\n".join(lines) + "\n"


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input_size", type=int, default=96)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--models", default=",".join(models.names()))
    parser.add_argument("--markdown", help="also write the table to this file")
    args = parser.parse_args(argv)
    rows = []
    for name in args.models.split(","):
        rows.append(measure(name, args.input_size, args.runs))
        print(f"measured {name}", file=sys.stderr, flush=True)
    table = markdown(rows, args.input_size)
    print(table)
    if args.markdown:
        from tfedge import _io

        _io.write_atomic(args.markdown, table)


if __name__ == "__main__":
    main(sys.argv[1:])
