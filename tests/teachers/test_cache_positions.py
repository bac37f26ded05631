"""Teacher caches of logits with positions `(n, length, classes)`, full or top-k."""

import numpy as np
import pytest
import tensorflow as tf
from helpers import np_log_softmax

from keras_distill import Distiller
from keras_distill import ShardedTeacherCache
from keras_distill import TeacherCache
from keras_distill._keras import keras

VOCABULARY, LENGTH, CLASSES, TOP_K = 12, 5, 9, 3


def tagger(name, width, seed):
    keras.utils.set_random_seed(seed)
    tokens = keras.Input((LENGTH,), dtype="int32")
    x = keras.layers.Embedding(VOCABULARY, width)(tokens)
    logits = keras.layers.Dense(CLASSES, name=f"{name}_logits")(x)
    return keras.Model(tokens, 3.0 * logits, name=name)


def token_data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, VOCABULARY, size=(n, LENGTH)).astype("int32")
    weights = (rng.random((n, LENGTH)) > 0.3).astype("float32")
    return tokens, (tokens % CLASSES).astype("int32"), weights


def np_softmax(z):
    return np.exp(np_log_softmax(z))


def reference_top_k(logits, k, rest):
    """What the teacher's distribution becomes when only its `k` largest logits are kept."""
    p = np_softmax(logits)
    kept = np.argsort(-logits, axis=-1)[..., :k]
    in_top = np.zeros(p.shape, bool)
    np.put_along_axis(in_top, kept, True, axis=-1)
    kept_mass = np.where(in_top, p, 0).sum(-1, keepdims=True)
    if rest == "renormalize":
        return np.where(in_top, p / kept_mass, 0.0)
    return np.where(in_top, p, (1.0 - kept_mass) / (logits.shape[-1] - k))


@pytest.mark.parametrize("rest", ["renormalize", "uniform"])
def test_top_k_per_position_gives_the_documented_distribution(rest):
    teacher = tagger("teacher", 8, 1)
    tokens, _, _ = token_data()
    logits = teacher.predict(tokens, verbose=0).astype(np.float64)
    cache = TeacherCache.build(teacher, tokens, top_k=TOP_K, top_k_rest=rest, batch_size=7)
    assert cache.indices.shape == (len(tokens), LENGTH, TOP_K)
    expected = reference_top_k(logits, TOP_K, rest)
    np.testing.assert_allclose(np_softmax(cache.full_logits()), expected, atol=1e-6)
    batches = [
        features["teacher_logits"].numpy()
        for features, _ in cache.dataset(tokens, tokens, batch_size=10, shuffle=False)
    ]
    np.testing.assert_allclose(np.concatenate(batches), cache.full_logits(), rtol=1e-6)


def test_distilling_from_a_position_cache_equals_the_live_teacher():
    teacher = tagger("teacher", 8, 1)
    tokens, labels, weights = token_data()
    cache = TeacherCache.build(teacher, tokens)
    results = []
    for source, data in (
        (teacher, None),
        (cache, cache.dataset(tokens, labels, weights, batch_size=8, shuffle=False)),
    ):
        student = tagger("student", 4, 2)
        distiller = Distiller(student=student, teacher=source)
        distiller.compile(optimizer=keras.optimizers.SGD(0.1), alpha=0.5, temperature=2.0)
        if data is None:
            history = distiller.fit(
                tokens, labels, sample_weight=weights, batch_size=8, verbose=0, shuffle=False
            )
        else:
            history = distiller.fit(data, verbose=0)
        results.append((history.history, student.get_weights()))
    (live, live_weights), (cached, cached_weights) = results
    for name in ("loss", "student_loss", "distillation_loss"):
        np.testing.assert_allclose(cached[name], live[name], rtol=1e-5)
    for a, b in zip(live_weights, cached_weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_top_k_position_cache_saves_and_loads(tmp_path):
    teacher = tagger("teacher", 8, 1)
    tokens, _, _ = token_data()
    cache = TeacherCache.build(teacher, tokens, top_k=TOP_K, top_k_rest="uniform", dtype="float16")
    path = str(tmp_path / "cache.npz")
    cache.save(path)
    loaded = TeacherCache.load(path)
    np.testing.assert_array_equal(loaded.full_logits(), cache.full_logits())
    assert loaded.positions == (LENGTH,)


def test_top_k_rest_must_be_a_known_choice():
    teacher = tagger("teacher", 8, 1)
    tokens, _, _ = token_data(n=4)
    with pytest.raises(ValueError, match=r"top_k_rest.*Received: top_k_rest='spread'"):
        TeacherCache.build(teacher, tokens, top_k=2, top_k_rest="spread")


@pytest.mark.parametrize("rest", [None, "renormalize", "uniform"])
def test_a_sharded_cache_streams_what_the_in_memory_cache_holds(tmp_path, rest):
    teacher = tagger("teacher", 8, 1)
    tokens, labels, weights = token_data(n=23)
    options = {} if rest is None else {"top_k": TOP_K, "top_k_rest": rest}
    memory = TeacherCache.build(teacher, tokens, dtype="float16", **options)
    sharded = ShardedTeacherCache.build(
        teacher, tokens, tmp_path / "cache", examples_per_shard=5, dtype="float16", **options
    )
    assert len(sharded.shards) == 5 and sharded.positions == (LENGTH,)
    reopened = ShardedTeacherCache.open(tmp_path / "cache")
    batches = list(reopened.dataset(tokens, labels, weights, batch_size=4, shuffle_buffer=0))
    streamed = np.concatenate([features["teacher_logits"].numpy() for features, _, _ in batches])
    # The same values; the rest logits may differ by an ulp (computed in batches of other sizes).
    np.testing.assert_allclose(streamed, memory.full_logits(), rtol=1e-6)
    np.testing.assert_array_equal(
        np.concatenate([features["inputs"].numpy() for features, _, _ in batches]), tokens
    )
    np.testing.assert_array_equal(np.concatenate([w.numpy() for _, _, w in batches]), weights)


def test_distilling_from_a_sharded_cache_equals_the_live_teacher(tmp_path):
    teacher = tagger("teacher", 8, 1)
    tokens, labels, weights = token_data()
    cache = ShardedTeacherCache.build(
        teacher, tokens, tmp_path / "cache", examples_per_shard=7, dtype="float32"
    )
    histories = []
    for source, data in (
        (teacher, None),
        (cache, cache.dataset(tokens, labels, weights, batch_size=8, shuffle_buffer=0)),
    ):
        student = tagger("student", 4, 2)
        distiller = Distiller(student=student, teacher=source)
        distiller.compile(optimizer=keras.optimizers.SGD(0.1), alpha=0.5, temperature=2.0)
        if data is None:
            data = tf.data.Dataset.from_tensor_slices((tokens, labels, weights)).batch(8)
        histories.append(distiller.fit(data, epochs=2, verbose=0).history)
    for name in ("loss", "student_loss", "distillation_loss"):
        np.testing.assert_allclose(histories[1][name], histories[0][name], rtol=1e-5)


def test_a_sharded_cache_refuses_other_inputs_and_missing_shards(tmp_path):
    teacher = tagger("teacher", 8, 1)
    tokens, _, _ = token_data(n=10)
    folder = tmp_path / "cache"
    cache = ShardedTeacherCache.build(teacher, tokens, folder, examples_per_shard=4, top_k=2)
    with pytest.raises(ValueError, match=r"not the ones the teacher cache was built on"):
        cache.dataset(tokens[::-1].copy())
    (folder / "shard-00001.npz").unlink()
    with pytest.raises(ValueError, match=r"the shard 'shard-00001.npz' is missing"):
        ShardedTeacherCache.open(folder)
