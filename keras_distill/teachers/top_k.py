"""A batch's top-k teacher logits, carried as they are stored: values, classes, rest."""

from typing import NamedTuple

import tensorflow as tf

from keras_distill.teachers import cache as cache_lib


class TopKLogits(NamedTuple):
    """The teacher's `k` kept logits per example or position, and what stands for the rest.

    A batch of `TeacherCache.dataset(..., expand_top_k=False)` brings these
    instead of full `(batch, ..., num_classes)` rows. The `Distiller` computes
    the forward KL from them directly (`losses.top_k_distillation_kl`) when
    the cache is renormalised (`rest_logits is None`); otherwise it expands
    them to full rows first.

    Attributes:
        values: Float32 `(batch, ..., k)`: the kept logits.
        indices: Int32 `(batch, ..., k)`: their classes.
        rest_logits: Float32 `(batch, ...)`: the logit of every class not
            kept (`top_k_rest="uniform"`), or `None` (renormalised: those
            classes have probability 0).
        num_classes: The teacher's number of classes.
    """

    values: tf.Tensor
    indices: tf.Tensor
    rest_logits: "tf.Tensor | None"
    num_classes: int

    @property
    def renormalized(self):
        """True when the classes outside the top k have probability 0."""
        return self.rest_logits is None

    def dense(self):
        """Float32 full rows `(batch, ..., num_classes)`, as `TeacherCache.full_logits` gives."""
        rest = self.rest_logits
        if rest is None:
            rest = tf.fill(tf.shape(self.values)[:-1], cache_lib.MISSING_LOGIT)
        return cache_lib.expand_top_k(self.values, self.indices, rest, self.num_classes)


def from_batch(features, num_classes):
    """The `TopKLogits` of a batch's features (the keys of `TeacherCache.dataset`)."""
    rest = features.get(cache_lib.REST_LOGITS_KEY)
    return TopKLogits(
        tf.cast(features[cache_lib.TOP_K_VALUES_KEY], tf.float32),
        tf.cast(features[cache_lib.TOP_K_INDICES_KEY], tf.int32),
        None if rest is None else tf.cast(rest, tf.float32),
        int(num_classes),
    )


def first_dimension(teacher_logits):
    """`tf.shape(logits)[0]` of full rows or of `TopKLogits`."""
    values = teacher_logits.values if isinstance(teacher_logits, TopKLogits) else teacher_logits
    return tf.shape(values)[0]
