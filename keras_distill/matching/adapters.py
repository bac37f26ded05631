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
    convolution for feature maps `(b, h, w, c)`.

    Args:
        target_shape: The teacher feature's shape without the batch axis.
        project: Whether to learn a channel projection. Defaults to `True`.
        resize: Whether to resize spatial/sequence axes. Defaults to `True`.
    """

    def __init__(self, target_shape, project=True, resize=True, **kwargs):
        super().__init__(**kwargs)
        self.target_shape = tuple(int(d) for d in target_shape)
        self.project = project
        self.resize = resize
        self.projection = None
        if project:
            channels = self.target_shape[-1]
            if len(self.target_shape) == 3:
                self.projection = keras.layers.Conv2D(channels, 1, name="projection")
            else:
                self.projection = keras.layers.Dense(channels, name="projection")

    def build(self, input_shape):
        if self.projection is not None:
            spatial = tuple(input_shape[1:-1])
            if self.resize:
                spatial = self.target_shape[:-1]
            self.projection.build((input_shape[0],) + tuple(spatial) + (input_shape[-1],))
        self.built = True

    def call(self, features):
        features = tf.cast(features, tf.float32)
        if self.resize and features.shape.rank in (3, 4):
            if tuple(features.shape[1:-1]) != self.target_shape[:-1]:
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
