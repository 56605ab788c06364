"""What the benchmark scripts share: one table, printed as text and written as markdown, and
the writing of their results files."""

import os

from tfedge import _io


def write_results(path, data):
    """Writes a results file (markdown text, or the bytes of a chart) whole or not at all,
    creating its folder."""
    _io.ensure_dir(os.path.dirname(os.path.abspath(path)))
    _io.write_atomic(path, data)


def table(header, rows):
    """(plain-text table, markdown table) of `rows` under `header`; values are str()-ed."""
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]

    def line(row):
        return "  ".join(str(v).rjust(w) for v, w in zip(row, widths))

    text = "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])
    md = "\n".join(["| " + " | ".join(map(str, header)) + " |",
                    "|" + "---|" * len(header)] +
                   ["| " + " | ".join(map(str, r)) + " |" for r in rows])
    return text, md
