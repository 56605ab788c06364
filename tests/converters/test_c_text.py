"""tfedge.converters.c_text: the one way model strings reach generated C.

Checked with the host's C compiler in its strictest reading (-std=c99 turns trigraphs on):
a comment holding any name stays one comment, and a string literal holds the name's exact
UTF-8 bytes.
"""

import re
import shutil
import subprocess

import pytest

from tfedge.converters import c_text

HOSTILE = [
    "plain_name", "conv/BiasAdd;relu6", 'x */\n#include <stdio.h>\nint pwn;\n/* ', "a\\",
    "a\\\nb", "??/\nint evil;", "??=define", '"; system("id"); "', "\x00\x01\x1b[2J\x7f",
    "é\u202e中", "\udcff", "é1a", "\x00beef", "*/*/", "/*", "//", "1a", "x" * 300, "",
    "\\x41", "?" * 5,
]

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc missing")


@pytest.mark.parametrize("name", HOSTILE)
def test_comment_is_one_harmless_line(name):
    text = c_text.comment(name)
    assert len(text) <= c_text.COMMENT_LIMIT
    assert all(" " <= ch <= "~" for ch in text)
    assert not set(text) & set("*/?'\"")  # no comment delimiter, trigraph or quote
    assert re.fullmatch(r"([^\\]|\\x[0-9a-f]{2})*(\.\.\.)?", text)  # backslash: \xNN only
    assert c_text.comment(name) == text  # deterministic


def test_comment_keeps_plain_names_and_cuts_long_ones_between_escapes():
    assert c_text.comment("model/conv2d/Relu6") == "model\\x2fconv2d\\x2fRelu6"
    assert c_text.comment("abc") == "abc"
    cut = c_text.comment("é" * 100, limit=20)
    assert cut.endswith("...") and len(cut) <= 20
    assert cut[:-3].count("\\x") == len(cut[:-3]) // 4  # whole escapes only
    with pytest.raises(ValueError, match="limit"):
        c_text.comment("x", limit=3)
    with pytest.raises(TypeError):
        c_text.comment(42)


@needs_gcc
def test_comments_and_literals_compile_to_the_exact_bytes(tmp_path):
    lines = ["#include <stdio.h>", "#include <string.h>", "int main(void) {"]
    for k, name in enumerate(HOSTILE):
        data = name.encode("utf-8", "surrogatepass")
        literal = c_text.string_literal(name)
        lines += [f"  /* {c_text.comment(name)} */",
                  f"  // {c_text.comment(name)}",
                  f"  {{ static const char s[] = {literal};",
                  f"    if (sizeof s - 1 != {len(data)}) return {k + 1};",
                  "    static const unsigned char want[] = {"
                  + ", ".join(str(b) for b in data) + (", " if data else "") + "0};",
                  f"    if (memcmp(s, want, {len(data)}) != 0) return {k + 1}; }}"]
    lines += ["  puts(\"ok\");", "  return 0;", "}"]
    source = tmp_path / "names.c"
    source.write_text("\n".join(lines) + "\n")
    exe = tmp_path / "names"
    build = subprocess.run(["gcc", "-std=c99", "-pedantic", "-Wall", "-Werror",
                            str(source), "-o", str(exe)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout == "ok\n", f"name #{run.returncode - 1} differs"
