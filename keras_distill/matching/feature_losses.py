"""Losses between intermediate features and attention maps (pure functions).

`student` features are assumed already adapted (see `adapters`) where a loss
needs equal shapes. Each function returns one value per example `(batch,)`,
except the relational losses (RKD, SP), which compare examples with each other
and return one value for the batch.
"""

import tensorflow as tf

_EPS = 1e-12


def _flat(features):
    features = tf.cast(features, tf.float32)
    return tf.reshape(features, [tf.shape(features)[0], -1])


def feature_mse(student, teacher):
    """`1/n * sum ||f_s - f_t||^2` over the `n` elements of each example.

    References:
        Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015.
    """
    return tf.reduce_mean(tf.square(_flat(student) - _flat(teacher)), axis=-1)


def feature_cosine(student, teacher):
    """`1 - cos(f_s, f_t)` of the flattened features of each example."""
    s = tf.math.l2_normalize(_flat(student), axis=-1, epsilon=_EPS)
    t = tf.math.l2_normalize(_flat(teacher), axis=-1, epsilon=_EPS)
    return 1.0 - tf.reduce_sum(s * t, axis=-1)


def _huber(difference):
    absolute = tf.abs(difference)
    return tf.where(absolute < 1.0, 0.5 * tf.square(difference), absolute - 0.5)


def _normalized_distances(features):
    squared = tf.reduce_sum(tf.square(features), axis=-1)
    gram = tf.matmul(features, features, transpose_b=True)
    distances = tf.sqrt(tf.maximum(squared[:, None] + squared[None, :] - 2.0 * gram, _EPS))
    off_diagonal = 1.0 - tf.eye(tf.shape(features)[0])
    distances *= off_diagonal
    mean = tf.math.divide_no_nan(tf.reduce_sum(distances), tf.reduce_sum(off_diagonal))
    return tf.math.divide_no_nan(distances, mean), off_diagonal


def rkd_distance(student, teacher):
    """Relational KD, distance term: Huber between mean-normalised pairwise distances.

    `psi(i, j) = ||f_i - f_j|| / mu`, `mu` the mean distance over pairs `i != j`;
    the loss is the mean Huber loss of `psi_s - psi_t` over those pairs.

    References:
        Park et al., "Relational Knowledge Distillation", CVPR 2019.
    """
    psi_s, off_diagonal = _normalized_distances(_flat(student))
    psi_t, _ = _normalized_distances(_flat(teacher))
    return tf.math.divide_no_nan(
        tf.reduce_sum(_huber(psi_s - psi_t) * off_diagonal), tf.reduce_sum(off_diagonal)
    )


def _angles(features):
    unit = tf.math.l2_normalize(features[None, :, :] - features[:, None, :], axis=-1, epsilon=_EPS)
    return tf.einsum("ijd,ikd->ijk", unit, unit)


def rkd_angle(student, teacher):
    """Relational KD, angle term: Huber between the cosines of angles `<e_ij, e_ik>`.

    `e_ij = (f_i - f_j) / ||f_i - f_j||`; the mean over all triplets `(i, j, k)`
    (degenerate ones have zero vectors and contribute 0 on both sides).

    References:
        Park et al., "Relational Knowledge Distillation", CVPR 2019.
    """
    return tf.reduce_mean(_huber(_angles(_flat(student)) - _angles(_flat(teacher))))


def _attention_map(features):
    """`Q = vec(mean_c |f_c|^2)`, L2-normalised per example (channels last)."""
    features = tf.cast(features, tf.float32)
    energy = tf.reduce_mean(tf.square(features), axis=-1)
    return tf.math.l2_normalize(
        tf.reshape(energy, [tf.shape(energy)[0], -1]), axis=-1, epsilon=_EPS
    )


def attention_transfer(student, teacher):
    """CNN attention transfer: mean over positions of `(Q_s - Q_t)^2`.

    `Q` is the L2-normalised channel mean of squared activations (p = 2).
    Scaling follows the authors' reference code (`(at(x) - at(y)).pow(2).mean()`,
    used with weight `beta / 2 = 500`), not the paper's `||.||_2` norm.
    Spatial sizes must agree (the adapter resizes the student's map).

    References:
        Zagoruyko & Komodakis, "Paying More Attention to Attention", ICLR 2017.
    """
    return tf.reduce_mean(tf.square(_attention_map(student) - _attention_map(teacher)), axis=-1)


def similarity_preserving(student, teacher):
    """Similarity-preserving KD: `1/b^2 ||G_s - G_t||_F^2` of row-normalised Gram matrices.

    `G = normalize_rows(F F^T)` with `F` the `(b, d)` flattened features.

    References:
        Tung & Mori, "Similarity-Preserving Knowledge Distillation", ICCV 2019.
    """

    def gram(features):
        features = _flat(features)
        return tf.math.l2_normalize(
            tf.matmul(features, features, transpose_b=True), axis=-1, epsilon=_EPS
        )

    batch = tf.cast(tf.shape(student)[0], tf.float32)
    return tf.reduce_sum(tf.square(gram(student) - gram(teacher))) / (batch * batch)


def _attention_weights(mask, probabilities):
    """Valid (query, key) cells and valid query rows from a boolean attention mask."""
    if mask is None:
        ones = tf.ones_like(probabilities)
        return ones, ones[..., :1]
    mask = tf.cast(mask, tf.float32)
    while mask.shape.rank < probabilities.shape.rank:
        mask = mask[:, None]
    mask = tf.broadcast_to(mask, tf.shape(probabilities))
    return mask, tf.reduce_max(mask, axis=-1, keepdims=True)


def attention_mse(student, teacher, mask=None):
    """MSE of attention probabilities `(batch, heads, queries, keys)` over valid cells.

    References:
        Jiao et al., "TinyBERT: Distilling BERT for Natural Language
        Understanding", 2020.
    """
    student, teacher = tf.cast(student, tf.float32), tf.cast(teacher, tf.float32)
    cells, _ = _attention_weights(mask, student)
    squared = tf.square(student - teacher) * cells
    return tf.math.divide_no_nan(
        tf.reduce_sum(squared, axis=[1, 2, 3]), tf.reduce_sum(cells, axis=[1, 2, 3])
    )


def attention_kl(student, teacher, mask=None):
    """KL of attention rows, `KL(A_t[q] || A_s[q])`, averaged over heads and valid queries.

    Padded queries (rows without any valid key) are left out; padded keys
    carry no probability.

    References:
        Wang et al., "MiniLM: Deep Self-Attention Distillation for
        Task-Agnostic Compression of Pre-Trained Transformers", 2020.
    """
    student, teacher = tf.cast(student, tf.float32), tf.cast(teacher, tf.float32)
    cells, rows = _attention_weights(mask, student)
    log_ratio = tf.math.log(tf.maximum(teacher, _EPS)) - tf.math.log(tf.maximum(student, _EPS))
    per_row = tf.reduce_sum(teacher * log_ratio * cells, axis=-1, keepdims=True)
    return tf.math.divide_no_nan(
        tf.reduce_sum(per_row * rows, axis=[1, 2, 3]), tf.reduce_sum(rows, axis=[1, 2, 3])
    )


FEATURE_LOSSES = {
    "mse": feature_mse,
    "hint": feature_mse,
    "cosine": feature_cosine,
    "rkd_distance": rkd_distance,
    "rkd_angle": rkd_angle,
    "attention_transfer": attention_transfer,
    "at": attention_transfer,
    "similarity_preserving": similarity_preserving,
    "sp": similarity_preserving,
}
"""Feature losses by name."""

ATTENTION_LOSSES = {"mse": attention_mse, "kl": attention_kl}
"""Attention-map losses by name."""

DEFAULT_WEIGHTS = {
    "rkd_distance": 25.0,
    "rkd_angle": 50.0,
    "attention_transfer": 500.0,
    "at": 500.0,
    "similarity_preserving": 3000.0,
    "sp": 3000.0,
}
"""Default weights from the papers (others default to 1.0)."""
