"""Loading what tfedge makes, whatever stage it came from.

    model.save("qat.keras")                 # a QAT, pruned or plain tfedge model
    model = tfedge.load_model("qat.keras")  # no quantize_scope or custom_objects needed
"""

from tfedge._keras import keras


def load_model(path, *, compile=True):
    """`keras.models.load_model` with tfedge's layers and tfmot's QAT and pruning objects known.

    Works for plain models from `tfedge.models`, QAT models (`tfedge.quantize_aware`) and
    pruning-wrapped models (`tfedge.prune`), in the .keras, .h5 and SavedModel formats.
    """
    from tfedge import quantization
    from tfedge._keras import tfmot

    with quantization.quantize_scope(), tfmot().sparsity.keras.prune_scope():
        return keras.models.load_model(path, compile=compile)
