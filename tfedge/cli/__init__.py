"""The `tfedge` command line: `tfedge <command> [--flags] [--flagfile=FILE]`.

Each command is a thin absl binary over a library function. Only the chosen command's module
is imported, so only its flags exist and `tfedge <command> --help` lists just those.

For every command, `run` also:

- reads every flagfile itself (`expand_flagfiles`: `--flagfile=FILE`, `--flagfile FILE` and
  the `--flagfile=` lines inside flagfiles, as absl would), so that a missing, unreadable,
  oversized (over FLAGFILE_LIMIT bytes) or non-UTF-8 file, or a loop of flagfiles, ends in one
  line `tfedge <command>: error: ...` and exit status 2 instead of a traceback; absl gets the
  flags they hold;
- ends quietly with exit status 141 (128 + SIGPIPE, the shell's convention) when the reader of
  its output goes away (`tfedge lint m.tflite | head -1`): no traceback, and not 0, 1 or 2,
  which the commands give their own meanings.
"""

import codecs
import importlib
import os
import stat
import sys

# command -> (module, one-line description)
COMMANDS = {
    "train": ("tfedge.cli.train",
              "train a registry model with checkpoints (resumable, tf.distribute), then "
              "compress it"),
    "compress": ("tfedge.cli.compress",
                 "train or load a model, quantize it to int8, check it on TFLM, write artifacts"),
    "convert": ("tfedge.cli.convert",
                "convert a saved Keras model to .tflite: int8, int16x8, dynamic, float16, float32"),
    "export-c": ("tfedge.cli.export_c",
                 "write model_data.cc/.h, op_resolver.h and the TFLM arena size for firmware"),
    "lint": ("tfedge.cli.lint",
             "say which ops TFLM with CMSIS-NN runs optimized, on reference kernels, or not"),
    "mcu": ("tfedge.cli.mcu",
            "compile a model to C and run it on an emulated Cortex-M, checked byte for byte"),
    "profile": ("tfedge.cli.profile",
                "parameters, MACs and peak activation memory of a model, layer by layer"),
}


def _usage(prog):
    width = max(len(c) for c in COMMANDS)
    lines = [f"usage: {prog} <command> [--flags] [--flagfile=FILE]", "", "commands:"]
    lines += [f"  {name:<{width}}  {about}" for name, (_, about) in COMMANDS.items()]
    lines += ["", f"`{prog} <command> --help` lists a command's flags."]
    return "\n".join(lines)


# Exit status when stdout (or stderr) is a pipe whose reader has gone: 128 + SIGPIPE.
EXIT_BROKEN_PIPE = 128 + 13
# A flagfile is untrusted input: the most bytes one may hold, and all of them together.
FLAGFILE_LIMIT = 1 << 20
# The deepest chain of flagfiles naming flagfiles.
FLAGFILE_DEPTH = 16


class FlagfileError(ValueError):
    """A flagfile that cannot be used; the message names the file and the fix."""


def _read_flagfile(path, included_from):
    """The text of the flagfile `path`, checked: a regular file, at most FLAGFILE_LIMIT bytes,
    readable, UTF-8, no NUL."""
    where = f" (named in {included_from!r})" if included_from else ""
    name = f"flagfile {path!r}{where}"
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise FlagfileError(f"{name} does not exist; check the path (a relative one is taken "
                            f"from the current folder, {os.getcwd()!r})") from None
    except OSError as exc:
        raise FlagfileError(f"cannot read {name}: {exc.strerror or exc}; check the path and "
                            "its permissions") from None
    if stat.S_ISDIR(info.st_mode):
        raise FlagfileError(f"{name} is a directory; pass the flags file itself")
    if not stat.S_ISREG(info.st_mode):
        raise FlagfileError(f"{name} is not a regular file (a pipe or a device); write the "
                            "flags to a file and pass that")
    if info.st_size > FLAGFILE_LIMIT:
        raise FlagfileError(f"{name} is {info.st_size:,} bytes, more than a flagfile may hold "
                            f"({FLAGFILE_LIMIT:,} bytes); pass a flags file, not some other "
                            "file, or split it")
    try:
        with open(path, "rb") as f:
            data = f.read(FLAGFILE_LIMIT + 1)
    except OSError as exc:
        raise FlagfileError(f"cannot read {name}: {exc.strerror or exc}; make it readable "
                            "(chmod u+r) or pass another file") from None
    if len(data) > FLAGFILE_LIMIT:
        raise FlagfileError(f"{name} holds more than {FLAGFILE_LIMIT:,} bytes, more than a "
                            "flagfile may hold; pass a flags file, not some other file")
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        text = data[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = start + exc.start
        line = data.count(b"\n", 0, offset) + 1
        raise FlagfileError(f"{name} is not UTF-8 text: byte 0x{data[offset]:02x} at offset "
                            f"{offset} (line {line}) cannot be decoded; save the file as UTF-8")
    if "\0" in text:
        offset = data.index(b"\0")
        raise FlagfileError(f"{name} holds a NUL byte at offset {offset}; a flagfile is text, "
                            "one --flag=value a line")
    return text, len(data)


def _flagfile_lines(text):
    """The lines of a flagfile as absl reads them: universal newlines, each line with its
    ending."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    return [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])


def _directive(arg):
    """The file name of a `--flagfile=NAME` / `-flagfile=NAME` argument, else None."""
    for prefix in ("--flagfile=", "-flagfile="):
        if arg.startswith(prefix):
            return arg[len(prefix):]
    return None


def expand_flagfiles(args):
    """`args` with every flagfile directive replaced by the flags the file holds, as absl's
    `FlagValues.read_flags_from_files` would, after checking every file (`FlagfileError`).

    Directives: `--flagfile=FILE`, `-flagfile=FILE`, `--flagfile FILE`, `-flagfile FILE` up to
    a `--`; inside a flagfile, lines starting with `--flagfile=` or `-flagfile=` (relative
    names from the current folder, as absl takes them; here also after blanks, which absl
    would leave for a second, unchecked reading). Blank lines and lines starting with `#` or
    `//` are skipped; every other line is one argument, stripped. No directive is left in the
    result before a `--`. Refused: a bare `--flagfile` line in a file, an empty
    name, a file that is missing, a folder, not a regular file, over FLAGFILE_LIMIT bytes,
    unreadable, not UTF-8 or holding NUL; a file that names itself through any chain
    (a loop); chains deeper than FLAGFILE_DEPTH; more than FLAGFILE_LIMIT bytes in all.
    """
    budget = [FLAGFILE_LIMIT]

    def expand_file(name, chain):
        included_from = chain[-1][0] if chain else None
        name = name.strip()
        if not name:
            where = f" in {included_from!r}" if included_from else ""
            raise FlagfileError(f"--flagfile={name}{where} names no file; write "
                                "--flagfile=FILE or drop it")
        path = os.path.expanduser(name)
        real = os.path.realpath(path)
        if any(real == r for _, r in chain):
            loop = " -> ".join([n for n, _ in chain] + [path])
            raise FlagfileError(f"flagfile loop: {loop}; remove the --flagfile={name} line "
                                f"from {included_from!r}")
        if len(chain) >= FLAGFILE_DEPTH:
            raise FlagfileError(f"flagfile {path!r} is nested {len(chain) + 1} deep (through "
                                f"{' -> '.join(n for n, _ in chain)}); at most "
                                f"{FLAGFILE_DEPTH} flagfiles may name one another, so merge "
                                "some of them")
        text, size = _read_flagfile(path, included_from)
        budget[0] -= size
        if budget[0] < 0:
            raise FlagfileError(f"the flagfiles hold more than {FLAGFILE_LIMIT:,} bytes in "
                                f"all (reached at {path!r}); a file is named many times "
                                "over: name each flagfile once")
        out = []
        for line in _flagfile_lines(text):
            if line.isspace() or line.startswith(("#", "//")):
                continue
            # absl takes only a line that starts with the directive as one, but would read a
            # stripped "  --flagfile=X" again, unchecked, from the list this returns: so such
            # lines are expanded (and checked) here too, and a bare --flagfile refused.
            arg = line.strip()
            nested = _directive(arg)
            if nested is not None:
                out += expand_file(nested, chain + [(path, real)])
            elif arg.split()[0] in ("--flagfile", "-flagfile"):
                raise FlagfileError(f"flagfile {path!r} has the line {arg!r}; inside a "
                                    "flagfile write --flagfile=FILE, on one line")
            else:
                out.append(arg)
        return out

    expanded = []
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg in ("--flagfile", "-flagfile"):
            if not rest:
                raise FlagfileError(f"{arg} needs a file name: {arg}=FILE")
            expanded += expand_file(rest.pop(0), [])
        elif _directive(arg) is not None:
            expanded += expand_file(_directive(arg), [])
        else:
            expanded.append(arg)
            if arg == "--":
                expanded += rest
                break
    return expanded


def _flush(stream):
    if stream is not None and not getattr(stream, "closed", True):
        stream.flush()


def _silence(stream):
    """Points `stream`'s file descriptor at /dev/null, so that the interpreter's last flush at
    exit cannot fail again (the Python docs' advice for SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def run(argv=None):
    """Console-script entry point: runs the command, and returns its exit status (or raises
    SystemExit with it). EXIT_BROKEN_PIPE when its output's reader went away."""
    try:
        try:
            return _run(argv)
        finally:
            _flush(sys.stdout)  # a closed pipe shows here, not at interpreter exit
            _flush(sys.stderr)
    except BrokenPipeError:
        for stream in (sys.stdout, sys.stderr):
            try:
                _flush(stream)
            except (BrokenPipeError, ValueError):
                _silence(stream)
        _silence(sys.stdout)
        return EXIT_BROKEN_PIPE


def _run(argv):
    from absl import app

    argv = list(sys.argv if argv is None else argv)
    prog = "tfedge"
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(_usage(prog))
        return 0 if len(argv) >= 2 else 2
    command = argv[1]
    if command not in COMMANDS:
        print(f"{prog}: unknown command {command!r}; choose one of: {', '.join(COMMANDS)}\n",
              file=sys.stderr)
        print(_usage(prog), file=sys.stderr)
        return 2
    try:
        args = expand_flagfiles(argv[2:])
    except FlagfileError as exc:
        print(f"{prog} {command}: error: {exc}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    if any(arg in ("-h", "-?", "--help", "--helpshort") for arg in args):
        # absl would list only the flags of __main__ (the console-script stub) and exit 1.
        from absl import flags

        print(module.__doc__)
        print("flags:\n" + flags.FLAGS.module_help(module))
        print(f"\n`{prog} {command} --helpfull` also lists absl's own flags.")
        return 0
    # absl prints the __main__ module's docstring above the flags in --help.
    sys.modules["__main__"].__doc__ = module.__doc__
    app.run(module.main, argv=[f"{prog} {command}"] + args)
    return 0
