"""A distillation loss over positions that never holds all the logits at once.

For a language model the logits `(batch, seq, vocab)` dominate the memory of a
training step: at vocabulary 32,000, sequence 512 and batch 4 one float32 copy
is 262 MB, and a divergence computed in float64 makes several more, for the
teacher and the student, plus their gradients. `chunked_distillation_loss`
takes the final hidden states and the LM heads instead and computes the
logits, the divergence and its gradient `chunk_size` positions at a time, so
the memory for them scales with `chunk_size`, not with `batch * seq`.
"""

import tensorflow as tf

from keras_distill import _checks
from keras_distill import losses as losses_lib


def chunked_distillation_loss(
    teacher_hidden,
    student_hidden,
    teacher_kernel,
    student_kernel,
    divergence="kl",
    temperature=1.0,
    sample_weight=None,
    chunk_size=256,
    teacher_bias=None,
    student_bias=None,
):
    """Weighted mean of a divergence over positions, computed chunk by chunk.

    `L = sum_i w_i D(h_t[i] W_t + b_t, h_s[i] W_s + b_s) / sum_i w_i`

    over all positions `i` of `(...)`, where `D` is a per-position divergence
    of `keras_distill.losses` (at temperature `T`). A batch whose weights are
    all 0 gives 0. The value and the gradients (with respect to the student's
    hidden states, kernel and bias) equal those of the same loss computed on
    the whole `(..., vocab)` logits; the teacher's inputs get no gradient.

    How: the positions are flattened and split into chunks of `chunk_size`.
    One pass computes, per chunk, both heads' logits, `D`, and the gradient of
    the chunk's weighted sum with respect to the student's chunk of hidden
    states, kernel and bias (fused forward and backward, as in Liger
    Kernel's and torchtune's chunked losses; no logits are recomputed). The
    gradient returned to the caller is those sums scaled by the upstream
    gradient, through `tf.custom_gradient`, so TensorFlow never keeps a
    chunk's logits for the backward pass. Peak extra memory: a few
    `chunk_size * vocab` float64 tensors, the student's kernel gradient, and
    the hidden-state gradient `(positions, hidden)`.

    For a head tied to the token embedding (GPT-2, Gemma: `logits = h E^T`),
    pass `tf.transpose(E)` as the kernel; the gradient reaches `E` through
    the transpose.

    Args:
        teacher_hidden: Tensor `(..., teacher_hidden_dim)`: the teacher's
            final hidden states (after its last normalization).
        student_hidden: Tensor `(..., student_hidden_dim)`, same positions.
        teacher_kernel: Tensor `(teacher_hidden_dim, vocab)`.
        student_kernel: Tensor `(student_hidden_dim, vocab)`.
        divergence: A name from `keras_distill.losses.names()` or a
            `DistillationLoss` (e.g. `GeneralizedJSD(beta=0.9)`). Defaults to
            `"kl"` (forward KL).
        temperature: Positive float `T`. Defaults to `1.0`.
        sample_weight: Optional tensor `(...)` of position weights (a padding
            mask, say). Defaults to all ones.
        chunk_size: Positions per chunk. Defaults to `256`.
        teacher_bias: Optional tensor `(vocab,)`. Defaults to none.
        student_bias: Optional tensor `(vocab,)`. Defaults to none.

    Returns:
        Float32 scalar tensor.

    Example:
        >>> loss = chunked_distillation_loss(
        ...     teacher_states, student_states, teacher_head, student_head,
        ...     divergence="reverse_kl", sample_weight=padding_mask, chunk_size=128)

    References:
        Hsu et al., "Liger Kernel: Efficient Triton Kernels for LLM
        Training", 2024. https://arxiv.org/abs/2410.10989
    """
    chunk_size = _checks.check_int("chunk_size", chunk_size)
    temperature = _checks.check_temperature(temperature)
    loss = losses_lib.get(divergence)
    student_hidden = tf.convert_to_tensor(student_hidden)
    dtype = student_hidden.dtype
    student_kernel = tf.cast(tf.convert_to_tensor(student_kernel), dtype)
    vocab = tf.shape(student_kernel)[-1]
    if student_bias is None:
        student_bias = tf.zeros([vocab], dtype)
    student_bias = tf.cast(tf.convert_to_tensor(student_bias), dtype)
    teacher_hidden = tf.stop_gradient(tf.convert_to_tensor(teacher_hidden))
    teacher_kernel = tf.stop_gradient(tf.cast(teacher_kernel, teacher_hidden.dtype))
    if teacher_bias is not None:
        teacher_bias = tf.stop_gradient(tf.cast(teacher_bias, teacher_hidden.dtype))
    if sample_weight is None:
        sample_weight = tf.ones(tf.shape(student_hidden)[:-1], tf.float32)
    weights = tf.reshape(tf.cast(sample_weight, tf.float32), [-1])
    total_weight = tf.reduce_sum(tf.cast(weights, tf.float64))

    def chunks(values, width):
        """`(positions, width)` padded with zero rows to whole chunks, `(chunks, size, width)`."""
        flat = tf.reshape(values, [-1, width])
        padding = -tf.shape(flat)[0] % chunk_size
        flat = tf.pad(flat, [[0, padding], [0, 0]])
        return tf.reshape(flat, [-1, chunk_size, width])

    teacher_chunks = chunks(teacher_hidden, tf.shape(teacher_hidden)[-1])
    weight_chunks = tf.reshape(chunks(weights[:, None], 1), [-1, chunk_size])
    student_width = tf.shape(student_hidden)[-1]

    def chunk_sum(teacher_chunk, student_chunk, weight_chunk, kernel, bias):
        """`sum_i w_i D_i` over one chunk, in float64."""
        teacher_logits = tf.matmul(teacher_chunk, teacher_kernel)
        if teacher_bias is not None:
            teacher_logits += teacher_bias
        student_logits = tf.matmul(student_chunk, kernel) + bias
        values = loss.per_example(teacher_logits, student_logits, temperature)
        counted = weight_chunk > 0
        weighted = tf.where(counted, weight_chunk * values, tf.zeros_like(values))
        return tf.reduce_sum(tf.cast(weighted, tf.float64))

    @tf.custom_gradient
    def weighted_sum(hidden, kernel, bias):
        student_chunks = chunks(hidden, student_width)
        num_chunks = tf.shape(student_chunks)[0]

        def body(index, total, kernel_grad, bias_grad, hidden_grads):
            student_chunk = student_chunks[index]
            with tf.GradientTape() as tape:
                tape.watch([student_chunk, kernel, bias])
                value = chunk_sum(
                    teacher_chunks[index], student_chunk, weight_chunks[index], kernel, bias
                )
            chunk_grad, k_grad, b_grad = tape.gradient(value, [student_chunk, kernel, bias])
            return (
                index + 1,
                total + value,
                kernel_grad + k_grad,
                bias_grad + b_grad,
                hidden_grads.write(index, chunk_grad),
            )

        _, total, kernel_grad, bias_grad, hidden_grads = tf.while_loop(
            lambda index, *_: index < num_chunks,
            body,
            (
                tf.constant(0),
                tf.constant(0.0, tf.float64),
                tf.zeros_like(kernel),
                tf.zeros_like(bias),
                tf.TensorArray(hidden.dtype, size=num_chunks),
            ),
        )
        hidden_grad = tf.reshape(hidden_grads.stack(), [-1, student_width])
        hidden_grad = tf.reshape(
            hidden_grad[: tf.reduce_prod(tf.shape(hidden)[:-1])], tf.shape(hidden)
        )

        def grad(upstream):
            upstream = tf.cast(upstream, hidden.dtype)
            return upstream * hidden_grad, upstream * kernel_grad, upstream * bias_grad

        return total, grad

    total = weighted_sum(student_hidden, student_kernel, student_bias)
    mean = tf.math.divide_no_nan(total, total_weight)
    return tf.cast(mean, tf.float32)
