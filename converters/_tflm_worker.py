"""Runs a `.tflite` in the TFLM host interpreter; executed as a script in a subprocess.

The TFLM interpreter can end the process (a too-small arena segfaults), so tfedge never loads
it in the user's process. This script imports only numpy and tflite_micro.

    python _tflm_worker.py MODEL ARENA_BYTES NUM_INPUTS NUM_OUTPUTS INPUTS.npz|- OUTPUTS.npz|- \
        [--record]

INPUTS.npz holds arrays named "s{sample}_i{input}"; "-" runs one all-zero sample (a probe that
only checks the arena is large enough). OUTPUTS.npz receives "s{sample}_o{output}".
--record prints the allocator's arena usage to stderr.
Exit status: 0 ok, 3 the interpreter could not be created or allocate, 4 invoke failed.
"""

import sys

import numpy as np
from tflite_micro import runtime


def main(argv):
    model_path, arena, num_inputs, num_outputs, inputs_path, outputs_path = argv[1:7]
    record = "--record" in argv[7:]
    with open(model_path, "rb") as f:
        model = f.read()
    try:
        interpreter = runtime.Interpreter.from_bytes(model, arena_size=int(arena))
    except Exception as exc:  # noqa: BLE001 - reported to the parent through the exit status
        print(f"tfedge-tflm: cannot create interpreter: {exc}", file=sys.stderr)
        return 3
    input_details = [interpreter.get_input_details(i) for i in range(int(num_inputs))]
    if inputs_path == "-":
        samples = [[np.zeros(d["shape"], d["dtype"]) for d in input_details]]
    else:
        with np.load(inputs_path) as npz:
            count = len({k.split("_")[0] for k in npz.files})
            samples = [[npz[f"s{s}_i{i}"] for i in range(len(input_details))]
                       for s in range(count)]
    outputs = {}
    num_outputs = int(num_outputs)
    for s, sample in enumerate(samples):
        try:
            for i, value in enumerate(sample):
                interpreter.set_input(value, i)
            interpreter.invoke()
        except Exception as exc:  # noqa: BLE001
            print(f"tfedge-tflm: invoke failed on sample {s}: {exc}", file=sys.stderr)
            return 4
        for o in range(num_outputs):
            outputs[f"s{s}_o{o}"] = np.array(interpreter.get_output(o), copy=True)
    if record:
        sys.stderr.flush()
        interpreter.print_allocations()
    if outputs_path != "-":
        np.savez(outputs_path, **outputs)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
