"""Parameters, MACs and peak activation memory of a model, layer by layer.

Example:

    tfedge profile --model=mobilenet_v3_small --width=0.75 --input_size=96 --channels=3
    tfedge profile model.keras --json

Without a file, the model comes from the registry (--model, --width, --input_size,
--channels, --num_classes); with one, it is loaded (.keras, .h5 or a SavedModel folder).
MACs count convolutions and fully-connected layers (see tfedge.profile); the peak is the
largest total of int8 activations alive at once, a lower bound for any tensor arena.
"""

import json
import os
import sys

from absl import flags

from tfedge import models

_MODEL = flags.DEFINE_enum("model", "mobilenet_v2", models.names(), "Registry model.")
_WIDTH = flags.DEFINE_float("width", 1.0, "Width multiplier.", lower_bound=0.01)
_INPUT_SIZE = flags.DEFINE_integer("input_size", 224, "Input height and width.", lower_bound=8)
_CHANNELS = flags.DEFINE_enum("channels", "3", ["1", "3"], "Input channels.")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", 1000, "Classifier outputs.", lower_bound=1)
_JSON = flags.DEFINE_boolean("json", False, "Print JSON instead of a table.")


def main(argv):
    if len(argv) > 2:
        print(f"tfedge profile: error: at most one model file; received {len(argv) - 1}",
              file=sys.stderr)
        sys.exit(2)
    import tfedge

    if len(argv) == 2:
        if not os.path.exists(argv[1]):
            print(f"tfedge profile: error: model {argv[1]!r} does not exist", file=sys.stderr)
            sys.exit(2)
        from tfedge import compat, saving

        try:
            model = compat.as_tf_keras(saving.load_model(argv[1], compile=False))
        except (OSError, ValueError, TypeError) as exc:
            print(f"tfedge profile: error: cannot load {argv[1]!r}: {exc}", file=sys.stderr)
            sys.exit(2)
    else:
        try:
            model = models.build(_MODEL.value, width=_WIDTH.value,
                                 input_shape=(_INPUT_SIZE.value, _INPUT_SIZE.value,
                                              int(_CHANNELS.value)),
                                 num_classes=_NUM_CLASSES.value)
        except ValueError as exc:
            print(f"tfedge profile: error: {exc}", file=sys.stderr)
            sys.exit(2)
    profile = tfedge.profile(model)
    if _JSON.value:
        print(json.dumps(profile.as_dict(), indent=2))
    else:
        print(f"{model.name}: {profile.total_params:,} parameters, {profile.total_macs:,} MACs, "
              f"peak int8 activations {profile.peak_activation_bytes:,} bytes\n")
        print(profile.table())
