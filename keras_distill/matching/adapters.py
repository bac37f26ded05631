"""Trainable adapters that map a student feature into the teacher's feature space.

They train with the student but live in the `Distiller`, so they are never
part of the saved or exported student.
"""

import tensorflow as tf

from keras_distill._keras import keras
from keras_distill._keras import register_serializable


def resize_to(features, size):
    """Resizes `(b, L, c)` or `(b, h, w, c)` features to `size` (bilinear)."""
    if features.shape.rank == 3:
        resized = tf.image.resize(features[:, :, None, :], (size[0], 1))
        return resized[:, :, 0, :]
    return tf.image.resize(features, size)


@register_serializable
class FeatureAdapter(keras.layers.Layer):
    """Resizes spatial or sequence axes, then projects channels to the teacher's.

    A `Dense` projection for vectors `(b, c)` and sequences `(b, L, c)`, a 1x1
    convolution for feature maps `(b, h, w, c)`. The projection is built from
    the channel axes alone. Spatial or sequence axes are resized only to a
    known target size: where the teacher's length is `None` (keras_hub
    sequences), both models see the same tokens, so the lengths agree when
    the models run.

    Args:
        target_shape: The teacher feature's shape without the batch axis;
            spatial or sequence sizes may be `None` (unknown until called).
        project: Whether to learn a channel projection. Defaults to `True`.
        resize: Whether to resize spatial/sequence axes. Defaults to `True`.
    """

    def __init__(self, target_shape, project=True, resize=True, **kwargs):
        super().__init__(**kwargs)
        self.target_shape = tuple(None if d is None else int(d) for d in target_shape)
        self.project = project
        self.resize = resize
        self.projection = None
        if project:
            channels = self.target_shape[-1]
            if len(self.target_shape) == 3:
                self.projection = keras.layers.Conv2D(channels, 1, name="projection")
            else:
                self.projection = keras.layers.Dense(channels, name="projection")

    def _resizes(self, features):
        """Whether `features` go through `resize_to`: only to a known, different size."""
        target = self.target_shape[:-1]
        if not self.resize or features.shape.rank not in (3, 4) or None in target:
            return False
        return tuple(features.shape[1:-1]) != target

    def build(self, input_shape):
        if self.projection is not None:
            spatial = (None,) * (len(input_shape) - 2)
            self.projection.build((None,) + spatial + (int(input_shape[-1]),))
        self.built = True

    def call(self, features):
        features = tf.cast(features, tf.float32)
        if self._resizes(features):
            features = resize_to(features, self.target_shape[:-1])
        if self.projection is not None:
            features = tf.cast(self.projection(features), tf.float32)
        return features

    def get_config(self):
        return {
            **super().get_config(),
            "target_shape": self.target_shape,
            "project": self.project,
            "resize": self.resize,
        }
