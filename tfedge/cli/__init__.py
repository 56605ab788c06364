"""The `tfedge` command line: `tfedge <command> [--flags] [--flagfile=FILE]`.

Each command is a thin absl binary over a library function. Only the chosen command's module
is imported, so only its flags exist and `tfedge <command> --help` lists just those.
"""

import importlib
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


def run(argv=None):
    """Console-script entry point."""
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
    module = importlib.import_module(COMMANDS[command][0])
    if any(arg in ("-h", "-?", "--help", "--helpshort") for arg in argv[2:]):
        # absl would list only the flags of __main__ (the console-script stub) and exit 1.
        from absl import flags

        print(module.__doc__)
        print("flags:\n" + flags.FLAGS.module_help(module))
        print(f"\n`{prog} {command} --helpfull` also lists absl's own flags.")
        return 0
    # absl prints the __main__ module's docstring above the flags in --help.
    sys.modules["__main__"].__doc__ = module.__doc__
    app.run(module.main, argv=[f"{prog} {command}"] + argv[2:])
    return 0
