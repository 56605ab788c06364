"""A plain supervised training loop for classifiers (Adam, cosine-decayed learning rate)."""

from tfedge._keras import keras


def seed_everything(seed):
    """Seeds Python, NumPy and TensorFlow: call it before building a model to fix its weights."""
    keras.utils.set_random_seed(seed)


def fit(model, splits, *, epochs, batch_size=32, learning_rate=2e-3, seed=0, verbose=1):
    """Trains `model` in place on a `tfedge.data.Splits`; returns the Keras History.

    The model must end in a softmax over `splits.num_classes` outputs.
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"`epochs` must be a positive integer. Received: epochs={epochs!r}")
    if model.outputs[0].shape[-1] != splits.num_classes:
        raise ValueError(f"the model has {model.outputs[0].shape[-1]} outputs but the "
                         f"{splits.name} data has {splits.num_classes} classes")
    seed_everything(seed)
    steps = -(-len(splits.y_train) // batch_size) * epochs
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps)
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss=keras.losses.SparseCategoricalCrossentropy(),
                  metrics=["accuracy"])
    return model.fit(splits.train(batch_size=batch_size, seed=seed),
                     validation_data=splits.val(batch_size=batch_size),
                     epochs=epochs, verbose=verbose)
