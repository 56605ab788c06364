"""Runs a `.tflite` on LiteRT's reference kernels; executed as a script in a subprocess.

LiteRT (the TFLite interpreter) checks much of a model but is C++ that a crafted file may still
crash, so `mcu.reference_outputs` never loads an untrusted model into the user's process. This
script imports only numpy and LiteRT (through tfedge.converters.interpreter).

    python _litert_worker.py MODEL INPUTS.npz OUTPUTS.npz [--intermediates]

INPUTS.npz holds "x{k}" for the k-th input array (the model's one input); OUTPUTS.npz receives
"y{k}" per input and, with --intermediates, "t{index}" for every tensor of the first inference.
Exit status: 0 ok, 3 the interpreter refused the model (the reason on stderr), 4 invoke failed.
"""

import sys

import numpy as np


def main(argv):
    from tfedge.converters import interpreter as litert

    model_path, inputs_path, outputs_path = argv[1:4]
    intermediates = "--intermediates" in argv[4:]
    with open(model_path, "rb") as f:
        model = f.read()
    try:
        interp = litert.make_interpreter(model, reference=True,
                                         preserve_all_tensors=intermediates)
    except Exception as exc:  # noqa: BLE001 - reported to the parent through the exit status
        print(f"tfedge-litert: {exc}", file=sys.stderr)
        return 3
    with np.load(inputs_path) as npz:
        inputs = [npz[f"x{k}"] for k in range(len(npz.files))]
    results = {}
    for k, x in enumerate(inputs):
        try:
            results[f"y{k}"] = np.asarray(litert.invoke(interp, [x])[0])
        except Exception as exc:  # noqa: BLE001
            print(f"tfedge-litert: invoke failed on input {k}: {exc}", file=sys.stderr)
            return 4
        if intermediates and k == 0:
            for detail in interp.get_tensor_details():
                try:
                    results[f"t{detail['index']}"] = np.array(interp.get_tensor(detail["index"]))
                except ValueError:  # tensors without data (none in a well-formed model)
                    pass
    np.savez(outputs_path, **results)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
