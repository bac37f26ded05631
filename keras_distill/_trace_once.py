"""A model's training state made before `fit()` traces its step, so the step is traced once.

TensorFlow traces a `tf.function` a second time when its first trace created
variables (https://www.tensorflow.org/guide/function#creating_tfvariables),
and Keras creates the optimizer's state (Adam's moments, a loss scale) and
the compiled metrics' variables inside the first traced training step. Made
here beforehand, a first `fit()` traces its step once, and a Distiller's
first `fit()` of small models is 1.6 to 1.8 times faster
(`benchmarks/first_fit.py`).
"""

import numpy as np
import tensorflow as tf

from keras_distill import _keras

FIRST_BATCH_SIZE = 64
"""Rows of array data that `first_batch` takes."""


def first_batch(x, y=None):
    """`(x, y)` of the first batch (at most `FIRST_BATCH_SIZE` rows of arrays), or `None`
    for generators and the like.

    Raises:
        ValueError: when the data holds no example.
    """
    if isinstance(x, tf.data.Dataset):
        for element in x.take(1):
            x_batch, y_batch, _ = _keras.unpack_x_y_sample_weight(element)
            return x_batch, y_batch
        raise ValueError(
            "The dataset is empty: there is nothing to train on. Received: x=<empty "
            "tf.data.Dataset>"
        )
    leaves = tf.nest.flatten(x) if x is not None else []
    if not leaves or not all(isinstance(leaf, (np.ndarray, tf.Tensor)) for leaf in leaves):
        return None
    if any(len(leaf) == 0 for leaf in leaves):
        raise ValueError("`x` is empty: there is nothing to train on. Received: x with 0 examples")

    def head(array):
        return array[:FIRST_BATCH_SIZE]

    return tf.nest.map_structure(head, x), None if y is None else tf.nest.map_structure(head, y)


def is_built(model):
    """Whether `model` and every layer inside it have made their variables."""
    return all(layer.built for layer in [model, *_keras.all_layers(model)])


def build_optimizer(model, variables):
    """Makes the state of `model`'s optimizer for the `variables` its step trains."""
    with model.distribute_strategy.scope():
        _keras.build_optimizer(model.optimizer, variables)


def build_metrics(model, x_batch, y_batch, y_pred):
    """Makes `model`'s compiled metrics' variables from one batch.

    The batch's values are not counted: `fit()` resets every metric as each
    epoch starts.
    """
    x_batch, y_batch = tf.nest.map_structure(tf.convert_to_tensor, (x_batch, y_batch))
    model.compute_metrics(x_batch, y_batch, y_pred, None)


def prepare_fit(model, x, y=None):
    """For a compiled Keras model about to `fit(x, y)`: its optimizer's state and metrics.

    Nothing is made for a model whose layers build on their first call;
    metrics need array data or a `tf.data.Dataset` with labels.
    """
    if not is_built(model):
        return
    build_optimizer(model, model.trainable_variables)
    batch = first_batch(x, y)
    if batch is not None and batch[1] is not None:
        build_metrics(model, batch[0], batch[1], model(batch[0], training=False))
