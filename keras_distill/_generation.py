"""Sampling continuations from a keras_hub causal LM inside a compiled training step.

A batch of token ids `(batch, length)` holds one prompt per row, its first
`prompt_lengths[i]` tokens. `sample_continuations` fills every later
position with a token sampled from the model at temperature `T`,
`softmax(z / T)` (Gumbel-max), one position at a time with the model's key/value cache
(`call_with_cache`), in a `tf.while_loop` that works in graph mode and under
XLA. `continuation_masks` says which positions of the result count: a
generated token counts up to and including the first end token of its row;
tokens after it are padding.
"""

import tensorflow as tf

_ALGORITHM = "philox"
"""One random algorithm on every device and under XLA, so that a seed draws the same."""


def cache_shape(model, length, batch_size=1):
    """`(batch, layers, 2, length, key/value heads, head dim)`, read from the model's backbone."""
    backbone = model.backbone
    query_heads = getattr(backbone, "num_query_heads", None) or backbone.num_heads
    kv_heads = getattr(backbone, "num_key_value_heads", None) or query_heads
    head_dim = getattr(backbone, "head_dim", None) or backbone.hidden_dim // query_heads
    return (batch_size, int(backbone.num_layers), 2, length, int(kv_heads), int(head_dim))


def step_seed(seed, step, stream):
    """A stateless seed `(2,)` for one training step and one random stream of it."""
    seed = tf.constant([seed, 0], tf.int64)
    seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(step, tf.int64), alg=_ALGORITHM)
    return tf.random.experimental.stateless_fold_in(seed, stream, alg=_ALGORITHM)


def uniform(seed):
    """A scalar drawn uniformly from `[0, 1)`."""
    return tf.random.stateless_uniform([], seed, alg=_ALGORITHM)


def sample_continuations(
    model,
    token_ids,
    prompt_lengths,
    seed,
    temperature=1.0,
    end_token_id=None,
    num_classes=None,
    stop_at=None,
):
    """Token ids with every position after each row's prompt sampled from `model`.

    Args:
        model: A keras_hub causal LM (`call_with_cache` and a `backbone`).
        token_ids: Int tensor `(batch, length)`; each row starts with its prompt.
        prompt_lengths: Int32 tensor `(batch,)`, each at least 1.
        seed: Stateless seed `(2,)`; position `j` draws with `fold_in(seed, j)`.
        temperature: Positive float `T`. Defaults to `1.0`.
        end_token_id: Token that ends a row, or `None`. Sampling stops once
            every row has generated one. Defaults to `None`.
        num_classes: Sample among the first `num_classes` logits only (a
            vocabulary shared with another model). Defaults to `None` (all).
        stop_at: Int32 tensor `(batch,)`: row `i` generates positions
            `< stop_at[i]` only. Defaults to `None` (to the end).

    Returns:
        Int tensor shaped and typed as `token_ids`. Positions the loop did not
        reach (every row had ended) keep their input tokens.
    """
    dtype = token_ids.dtype
    tokens = tf.cast(token_ids, tf.int32)
    length = tf.shape(tokens)[1]
    positions = tf.range(length)
    prompt_lengths = tf.cast(prompt_lengths, tf.int32)
    limit = length if stop_at is None else tf.minimum(tf.reduce_max(stop_at), length)
    cache = tf.zeros(cache_shape(model, length, tf.shape(tokens)[0]), model.compute_dtype)
    _, _, cache = model.call_with_cache(tokens, cache, 0)
    done = tf.zeros_like(prompt_lengths, tf.bool)

    def keep_going(index, tokens, cache, done):
        return tf.logical_and(index < limit, tf.logical_not(tf.reduce_all(done)))

    def sample_one(index, tokens, cache, done):
        previous = tokens[:, index - 1 : index]
        logits, _, cache = model.call_with_cache(previous, cache, index - 1)
        logits = tf.cast(logits[:, 0], tf.float32)
        if num_classes is not None:
            logits = logits[:, :num_classes]
        position_seed = tf.random.experimental.stateless_fold_in(
            seed, tf.cast(index, tf.int64), alg=_ALGORITHM
        )
        sampled = _gumbel_max_sample(logits / temperature, position_seed)
        generating = index >= prompt_lengths
        new = tf.where(generating, sampled, tokens[:, index])
        tokens = tf.where(tf.equal(positions, index)[None, :], new[:, None], tokens)
        if end_token_id is not None:
            done = tf.logical_or(done, tf.logical_and(generating, tf.equal(new, end_token_id)))
        return index + 1, tokens, cache, done

    start = tf.maximum(tf.reduce_min(prompt_lengths), 1)
    _, tokens, _, _ = tf.while_loop(
        keep_going,
        sample_one,
        (start, tokens, cache, done),
        maximum_iterations=length,
    )
    return tf.stop_gradient(tf.cast(tokens, dtype))


def continuation_masks(token_ids, prompt_lengths, end_token_id=None, stop_at=None):
    """`(padding mask, label weights)`, float32 `(batch, length)`, of generated rows.

    Token `j` of row `i` is *generated* when `j >= prompt_lengths[i]` (and
    `j < stop_at[i]`). A generated token *counts* unless an end token was
    generated before it in its row. The padding mask is 1 for the prompt and
    the counted tokens. The label weight of position `j` (whose logits
    predict token `j + 1`) is 1 when token `j + 1` counts; the last position
    predicts nothing and gets 0.
    """
    tokens = tf.cast(token_ids, tf.int32)
    positions = tf.range(tf.shape(tokens)[1])[None, :]
    generated = positions >= tf.cast(prompt_lengths, tf.int32)[:, None]
    if stop_at is not None:
        stopped = positions >= tf.cast(stop_at, tf.int32)[:, None]
    else:
        stopped = tf.zeros_like(generated)
    if end_token_id is not None:
        ends = tf.cast(tf.logical_and(generated, tf.equal(tokens, end_token_id)), tf.int32)
        after_end = (tf.cumsum(ends, axis=1) - ends) > 0
        stopped = tf.logical_or(stopped, after_end)
    counted = tf.logical_and(generated, tf.logical_not(stopped))
    padding = tf.cast(tf.logical_not(stopped), tf.float32)
    next_counts = tf.pad(tf.cast(counted[:, 1:], tf.float32), [[0, 0], [0, 1]])
    return padding, next_counts


def _gumbel_max_sample(logits, seed):
    """One class per row drawn from `softmax(logits)`: `argmax(logits + G)` with Gumbel noise
    `G = -log(-log(U))` (exact, and compiles under XLA, unlike `stateless_categorical`)."""
    tiny = tf.experimental.numpy.finfo(logits.dtype.as_numpy_dtype).tiny
    uniform = tf.random.stateless_uniform(
        tf.shape(logits), seed, minval=tiny, maxval=1.0, alg=_ALGORITHM
    )
    gumbel = -tf.math.log(-tf.math.log(uniform))
    return tf.argmax(logits + gumbel, axis=-1, output_type=tf.int32)
