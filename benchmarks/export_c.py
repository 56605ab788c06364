"""How fast `tfedge.converters.c_array.to_c_source` formats a model as a C array.

    .venv/bin/python benchmarks/export_c.py [--runs=7] [--markdown=benchmarks/results/export_c.md]

For 100 KB, 1 MB and 5 MB of random bytes (a fixed seed), times `to_c_source` (with a namespace
and a linker section, the slowest path) and the parse back (`parse_c_source`), each the median of
--runs runs, and checks that the parse gives the bytes back. Target: a 5 MB model exports in
under a second; exits 1 otherwise.
"""

import argparse
import random
import statistics
import sys
import time

from _tables import table  # benchmarks/_tables.py, next to this script
from tfedge import _io
from tfedge.converters import c_array

SIZES = (("100 KB", 100 * 1024), ("1 MB", 1 << 20), ("5 MB", 5 << 20))
TARGET_SECONDS = 1.0  # for the 5 MB model


def median_seconds(function, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--markdown", help="also write the table to this file")
    args = parser.parse_args(argv[1:])
    rng = random.Random(0)
    rows, export_5mb = [], None
    for label, size in SIZES:
        data = rng.randbytes(size)
        export, (cc, h) = median_seconds(
            lambda: c_array.to_c_source(data, namespace="app::ml", section=".rodata.model"),
            args.runs)
        parse, back = median_seconds(lambda: c_array.parse_c_source(cc), args.runs)
        if back != data:
            sys.exit(f"export_c: the parse of the {label} array differs from the bytes")
        rows.append([label, f"{size:,}", f"{len(cc):,}", f"{export:.3f}", f"{parse:.3f}"])
        if size == 5 << 20:
            export_5mb = export
    text, md = table(["model", "bytes", ".cc characters", "export s", "parse s"], rows)
    print(text)
    if args.markdown:
        _io.write_atomic(args.markdown, f"# C array export speed\n\n{md}\n\nMedian of "
                                        f"{args.runs} runs; `python benchmarks/export_c.py`.\n")
    if export_5mb >= TARGET_SECONDS:
        print(f"export_c: the 5 MB export took {export_5mb:.3f} s, not under "
              f"{TARGET_SECONDS:.0f} s", file=sys.stderr)
        return 1
    print(f"\n5 MB export in {export_5mb:.3f} s (target: under {TARGET_SECONDS:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
