"""What each compression stage costs and saves: MobileNetV2 0.35 at 32x32 on MNIST-t10k.

    .venv/bin/python benchmarks/compress.py [--data_dir=../shared/data/mnist-t10k]
        [--epochs=15] [--finetune_epochs=3] [--markdown=benchmarks/results/compress.md]

The official MNIST test set (10,000 images) is split in file order: the first 8,000 train,
the last 2,000 measure every accuracy. One MobileNetV2 (width 0.35, 32x32x1) is trained, then
`tfedge.compress` runs on it with each setting:

- PTQ: full int8 from 200 calibration images (target: within 1.5 points of float);
- QAT: quantization-aware fine-tuning (target: within 0.5 points of float);
- prune 75%: tfmot magnitude pruning, polynomial schedule, fine-tuned (target: at most 1 point
  lost), then PTQ; its gzipped .tflite must shrink;
- prune 75% + PQAT: pruning-preserving QAT (target: keeps at least 99% of the sparsity);
- int16x8: int16 activations, int8 weights.

Distillation: a MobileNetV2 width 1.0 teacher is trained, then the width-0.35 student is trained
from scratch with and without it (`tfedge.Distiller`), over --seeds seeds; the mean accuracy with
distillation must beat the mean without.

Prints tables, writes them as markdown (--markdown) with the accuracy-vs-size chart of the
prune + PQAT run next to it, and exits 1 if a target is missed.
"""

import argparse
import os
import statistics
import sys
import time

import tfedge
from _tables import table, write_results  # benchmarks/_tables.py, next to this script
from tfedge import data, models, report, training
from tfedge._keras import keras

HERE = os.path.dirname(os.path.abspath(__file__))
SHAPE = (32, 32, 1)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default=os.path.join(HERE, "..", "..", "shared", "data",
                                                           "mnist-t10k"))
    parser.add_argument("--epochs", type=int, default=15, help="training of the float model")
    parser.add_argument("--finetune_epochs", type=int, default=3,
                        help="fine-tuning epochs of each compress stage")
    parser.add_argument("--prune_epochs", type=int, default=8,
                        help="fine-tuning epochs of the pruning stage (sparsity ramps up over "
                             "the first 70%% of them)")
    parser.add_argument("--finetune_learning_rate", type=float, default=5e-4)
    parser.add_argument("--runs", default="PTQ,QAT,prune 75% + PTQ,prune 75% + PQAT,int16x8",
                        help="comma-separated compress runs to make")
    parser.add_argument("--teacher_epochs", type=int, default=15)
    parser.add_argument("--student_epochs", type=int, default=8,
                        help="from-scratch training of each distillation student")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--skip_distillation", action="store_true")
    parser.add_argument("--markdown", default=os.path.join(HERE, "results", "compress.md"))
    return parser.parse_args()


def pct(value):
    return "—" if value is None else f"{100 * value:.2f}"


def compress_runs(model, splits, args):
    train = (splits.x_train, splits.y_train)
    val = (splits.x_val, splits.y_val)
    settings = {
        "PTQ": dict(quantize="ptq"),
        "QAT": dict(quantize="qat"),
        "prune 75% + PTQ": dict(prune=tfedge.Prune(0.75), quantize="ptq"),
        "prune 75% + PQAT": dict(prune=tfedge.Prune(0.75), quantize="qat"),
        "int16x8": dict(quantize="int16x8"),
    }
    results = {}
    epochs = {"prune": args.prune_epochs, "qat": args.finetune_epochs}
    for name in args.runs.split(","):
        kwargs = settings[name]
        started = time.perf_counter()
        results[name] = tfedge.compress(model, train_data=train, val_data=val, epochs=epochs,
                                        learning_rate=args.finetune_learning_rate, **kwargs)
        print(f"  {name}: {time.perf_counter() - started:.0f} s", flush=True)
    return results


def distillation_runs(splits, args):
    tf_train = lambda seed: splits.train(batch_size=32, seed=seed)  # noqa: E731
    training.seed_everything(100)
    teacher = models.mobilenet_v2(SHAPE, num_classes=10, width=1.0, name="teacher")
    training.fit(teacher, splits, epochs=args.teacher_epochs, seed=100, verbose=0)
    teacher_accuracy = tfedge.pipeline.float_accuracy(teacher, splits.x_val, splits.y_val)
    print(f"  teacher (width 1.0): {100 * teacher_accuracy:.2f}%", flush=True)
    rows = []
    for seed in range(args.seeds):
        accuracies = []
        for use_teacher in (False, True):
            training.seed_everything(seed)
            student = models.mobilenet_v2(SHAPE, num_classes=10, width=0.35)
            steps = -(-len(splits.y_train) // 32) * args.student_epochs
            optimizer = keras.optimizers.Adam(
                keras.optimizers.schedules.CosineDecay(2e-3, decay_steps=steps))
            if use_teacher:
                net = tfedge.Distiller(student=student, teacher=teacher, temperature=4.0,
                                       alpha=0.9)
                net.compile(optimizer=optimizer, metrics=["accuracy"])
            else:
                net = student
                net.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                            metrics=["accuracy"])
            net.fit(tf_train(seed), epochs=args.student_epochs, verbose=0)
            accuracies.append(tfedge.pipeline.float_accuracy(student, splits.x_val,
                                                             splits.y_val))
        rows.append((seed, *accuracies))
        print(f"  seed {seed}: plain {100 * accuracies[0]:.2f}%, distilled "
              f"{100 * accuracies[1]:.2f}%", flush=True)
    return teacher, teacher_accuracy, rows


def main():
    args = parse_args()
    started = time.perf_counter()
    splits = data.mnist(args.data_dir, input_shape=SHAPE)
    print(f"MNIST-t10k: {len(splits.y_train)} train, {len(splits.y_val)} test images", flush=True)

    training.seed_everything(0)
    model = models.mobilenet_v2(SHAPE, num_classes=10, width=0.35)
    t = time.perf_counter()
    training.fit(model, splits, epochs=args.epochs, seed=0, verbose=0)
    print(f"float model trained ({args.epochs} epochs) in {time.perf_counter() - t:.0f} s",
          flush=True)
    results = compress_runs(model, splits, args)

    header = ["run", "float %", "pruned %", "QAT %", "final %", "drop (pt)", "sparsity",
              "after QAT", ".tflite B", "gzip B", "arena B", "TFLM exact", "time s"]
    rows = []
    for name, r in results.items():
        m = r.metrics
        final = m.get(f"{m['mode']}_accuracy")
        rows.append([name, pct(m["float_accuracy"]), pct(m.get("pruned_accuracy")),
                     pct(m.get("qat_accuracy")), pct(final), f"{m['accuracy_drop_points']:+.2f}",
                     pct(m.get("sparsity")), pct(m.get("sparsity_after_qat")),
                     f"{m['tflite_bytes']:,}", f"{m['tflite_gzip_bytes']:,}",
                     f"{m['arena_bytes']:,}" if "arena_bytes" in m else "—",
                     m.get("tflm_exact", m.get("tflm_error", "—")), f"{m['total_seconds']:.0f}"])
    text, md = table(header, rows)
    print("\n" + text + "\n")
    m = {name: r.metrics for name, r in results.items()}
    original = next(iter(m.values()))
    float_acc = original["float_accuracy"]
    print(f"original float32 .tflite: {original['original_tflite_bytes']:,} B, gzipped "
          f"{original['original_gzip_bytes']:,} B")

    checks = []
    if "PTQ" in m:
        checks.append(("PTQ int8 within 1.5 points of float",
                       m["PTQ"]["accuracy_drop_points"] <= 1.5))
    if "QAT" in m:
        checks.append(("QAT int8 within 0.5 points of float",
                       m["QAT"]["accuracy_drop_points"] <= 0.5))
    for name in ("prune 75% + PTQ", "prune 75% + PQAT"):
        if name in m:
            checks.append((f"{name}: 75% sparsity reached", m[name]["sparsity"] >= 0.745))
            checks.append((f"{name}: pruned float loses at most 1 point",
                           100 * (float_acc - m[name]["pruned_accuracy"]) <= 1.0))
    pqat = m.get("prune 75% + PQAT")
    if pqat:
        checks.append(("PQAT keeps >= 99% of the sparsity",
                       pqat["sparsity_after_qat"] >= 0.99 * pqat["sparsity"]))
        dense = m.get("QAT") or m.get("PTQ")
        if dense:
            checks.append(("gzipped PQAT int8 at most 3/4 of the dense int8's",
                           pqat["tflite_gzip_bytes"] <= 0.75 * dense["tflite_gzip_bytes"]))
    chart_of = pqat or original
    chart_name = os.path.splitext(os.path.basename(args.markdown or "compress"))[0] + ".png"

    sections = ["# Compression stages on MNIST-t10k", "",
                f"MobileNetV2 width 0.35, 32x32x1, {len(splits.y_train):,} train / "
                f"{len(splits.y_val):,} test images, float model trained {args.epochs} epochs, "
                f"pruning fine-tuned {args.prune_epochs} epochs, QAT {args.finetune_epochs} "
                f"(Adam from {args.finetune_learning_rate:g}, cosine). "
                f"Runs: {args.runs}. Original float32 "
                f".tflite {original['original_tflite_bytes']:,} B "
                f"({original['original_gzip_bytes']:,} B gzipped).", "", md, "",
                f"![accuracy against size]({chart_name})", ""]

    if not args.skip_distillation:
        print("distillation:", flush=True)
        _, teacher_accuracy, drows = distillation_runs(splits, args)
        plain = statistics.mean(r[1] for r in drows)
        distilled = statistics.mean(r[2] for r in drows)
        drows_fmt = [[s, pct(a), pct(b), f"{100 * (b - a):+.2f}"] for s, a, b in drows]
        drows_fmt.append(["mean", pct(plain), pct(distilled), f"{100 * (distilled - plain):+.2f}"])
        dtext, dmd = table(["seed", "plain %", "distilled %", "gain (pt)"], drows_fmt)
        print("\n" + dtext + "\n")
        checks.append(("distillation beats no distillation (mean over seeds)", distilled > plain))
        sections += ["## Distillation", "",
                     f"Teacher: MobileNetV2 width 1.0 trained {args.teacher_epochs} epochs, "
                     f"{100 * teacher_accuracy:.2f}%. Student: width 0.35 trained from scratch "
                     f"{args.student_epochs} epochs, T=4, alpha=0.9.", "", dmd, ""]

    ctext, cmd = table(["target", "met"], [[c, "yes" if ok else "NO"] for c, ok in checks])
    print(ctext)
    total = time.perf_counter() - started
    print(f"\ntotal {total / 60:.1f} min")
    sections += ["## Targets", "", cmd, "", f"Total run time {total / 60:.1f} min on this machine.",
                 ""]
    if args.markdown:
        write_results(args.markdown, "\n".join(sections))
        chart = os.path.join(os.path.dirname(os.path.abspath(args.markdown)), chart_name)
        write_results(chart, report.chart_png(chart_of))
        print(f"wrote {args.markdown} and {chart}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
