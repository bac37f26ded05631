"""Batches of top-k teacher logits (`expand_top_k=False`): the Distiller's results equal those of
the expanded full rows, whether it reads the top k directly (renormalised cache, forward KL) or
expands them in its step (other losses, `top_k_rest="uniform"`)."""

import numpy as np
import pytest
import tensorflow as tf
from helpers import tiny_gpt2

from keras_distill import Distiller
from keras_distill import ShardedTeacherCache
from keras_distill import TeacherCache
from keras_distill._keras import keras
from keras_distill.teachers import top_k

VOCABULARY, LENGTH, CLASSES, TOP_K = 12, 6, 9, 3
NAMES = ("loss", "student_loss", "distillation_loss", "accuracy")


def tagger(name, width, seed):
    """A tagger whose inputs include a padding mask (padded positions embed to zero)."""
    keras.utils.set_random_seed(seed)
    tokens = keras.Input((LENGTH,), dtype="int32", name="tokens")
    mask = keras.Input((LENGTH,), dtype="float32", name="padding_mask")
    x = keras.layers.Embedding(VOCABULARY, width)(tokens)
    x = keras.layers.Multiply()([x, keras.layers.Reshape((LENGTH, 1))(mask)])
    logits = keras.layers.Dense(CLASSES, name=f"{name}_logits")(x)
    return keras.Model({"tokens": tokens, "padding_mask": mask}, 3.0 * logits, name=name)


def token_data(n=20, seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, VOCABULARY, size=(n, LENGTH)).astype("int32")
    lengths = rng.integers(2, LENGTH + 1, size=n)
    mask = (np.arange(LENGTH)[None] < lengths[:, None]).astype("float32")
    labels = (tokens % CLASSES).astype("int32")
    labels[rng.random((n, LENGTH)) < 0.2] = -1  # Positions without a label.
    weights = mask * rng.choice([0.5, 1.0, 2.0], size=(n, LENGTH)).astype("float32")
    return {"tokens": tokens, "padding_mask": mask}, labels, weights


def distil(
    make_student,
    cache,
    x,
    y,
    weights,
    expand,
    loss="kl",
    temperature=2.0,
    run_eagerly=False,
    **options,
):
    """`(fit history, evaluate results, student weights)` of one Distiller on the cache."""
    distiller = Distiller(student=make_student(), teacher=cache, **options)
    distiller.compile(
        optimizer=keras.optimizers.SGD(0.1),
        metrics=["accuracy"],
        alpha=0.5,
        temperature=temperature,
        distillation_loss=loss,
        run_eagerly=run_eagerly,
    )
    data = cache.dataset(x, y, weights, batch_size=8, shuffle=False, expand_top_k=expand)
    history = distiller.fit(data, epochs=1, verbose=0)
    results = distiller.evaluate(data, verbose=0, return_dict=True)
    return history.history, results, distiller.student.get_weights()


def assert_same_results(first, second):
    (history, results, weights), (other_history, other_results, other_weights) = first, second
    for name in NAMES:
        np.testing.assert_allclose(history[name], other_history[name], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(results[name], other_results[name], rtol=1e-5, atol=1e-6)
    for a, b in zip(weights, other_weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.fixture
def no_full_rows(monkeypatch):
    """Fails a test that expands top-k logits to full rows inside the Distiller's step."""

    def refuse(self):
        raise AssertionError("full teacher rows were built")

    monkeypatch.setattr(top_k.TopKLogits, "dense", refuse)


@pytest.mark.parametrize(
    "temperature,run_eagerly",
    [(2.0, False), (1.0, False), (1.0, True)],
    ids=["T=2", "T=1", "T=1-eager"],
)
def test_the_top_k_kl_trains_as_the_expanded_rows(no_full_rows, temperature, run_eagerly):
    """At `T = 1` the step reuses the cross-entropy's softmax and adds the label with the kept
    classes (`_add_at`, in place when eager or in a graph on CPU)."""
    x, y, weights = token_data()
    teacher = tagger("teacher", 8, 1)
    cache = TeacherCache.build(teacher, x, top_k=TOP_K)
    options = {"padding_mask_input": "padding_mask", "temperature": temperature}

    def student():
        return tagger("student", 4, 2)

    sparse = distil(student, cache, x, y, weights, False, run_eagerly=run_eagerly, **options)
    full = distil(student, cache, x, y, weights, expand=True, **options)
    assert_same_results(sparse, full)
    assert sparse[0]["distillation_loss"][0] > 0.0


def test_a_cache_keeping_every_class_without_labels(no_full_rows):
    x, _, weights = token_data(n=12, seed=1)
    cache = TeacherCache.build(tagger("teacher", 8, 1), x, top_k=CLASSES)
    results = []
    for expand in (False, True):
        distiller = Distiller(student=tagger("student", 4, 2), teacher=cache)
        distiller.compile(optimizer=keras.optimizers.SGD(0.1), temperature=1.0)
        data = cache.dataset(x, batch_size=4, shuffle=False, expand_top_k=expand)
        results.append(distiller.fit(data, verbose=0).history["distillation_loss"])
    # Nearly equal distributions: float32's absolute error (about 1e-7 * log(classes)) shows.
    np.testing.assert_allclose(results[0], results[1], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "rest, loss, options",
    [
        ("renormalize", "reverse_kl", {}),
        ("uniform", "kl", {}),
        ("renormalize", "kl", {"shared_classes": CLASSES - 1}),
    ],
)
def test_other_losses_and_caches_expand_the_top_k_in_the_step(monkeypatch, rest, loss, options):
    x, y, weights = token_data(n=16)
    cache = TeacherCache.build(tagger("teacher", 8, 1), x, top_k=TOP_K, top_k_rest=rest)
    expanded = []
    dense = top_k.TopKLogits.dense

    def counted(self):
        expanded.append(True)
        return dense(self)

    monkeypatch.setattr(top_k.TopKLogits, "dense", counted)
    if "shared_classes" in options:
        y = np.where(y < CLASSES - 1, y, -1)

    def student():
        return tagger("student", 4, 2)

    sparse = distil(student, cache, x, y, weights, expand=False, loss=loss, **options)
    assert expanded
    full = distil(student, cache, x, y, weights, expand=True, loss=loss, **options)
    assert_same_results(sparse, full)


def test_a_label_out_of_range_is_refused_in_a_top_k_batch():
    x, y, weights = token_data(n=8)
    cache = TeacherCache.build(tagger("teacher", 8, 1), x, top_k=TOP_K)
    y[3, 1] = CLASSES
    distiller = Distiller(student=tagger("student", 4, 2), teacher=cache)
    distiller.compile(optimizer="sgd")
    data = cache.dataset(x, y, weights, batch_size=8, shuffle=False, expand_top_k=False)
    expected = rf"class indices 0, 1, \.\.\., {CLASSES - 1}.*y={CLASSES}"
    with pytest.raises(ValueError, match=expected):
        distiller.fit(data, verbose=0)


def test_expand_top_k_must_be_a_bool():
    x, _, _ = token_data(n=4)
    cache = TeacherCache.build(tagger("teacher", 8, 1), x, top_k=TOP_K)
    with pytest.raises(ValueError, match=r"expand_top_k.*Received: expand_top_k='no'"):
        cache.dataset(x, expand_top_k="no")


def test_a_gpt2_student_trains_on_top_k_batches_as_on_full_rows(hub, no_full_rows):
    def gpt2(seed, layers):
        return tiny_gpt2(hub, 96, 16, layers, hidden=16, seed=seed)

    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 96, size=(12, 16)).astype("int32")
    lengths = rng.integers(6, 17, size=12)
    mask = np.arange(16)[None] < lengths[:, None]
    tokens[~mask] = 0
    x = {"token_ids": tokens[:, :-1].copy(), "padding_mask": mask[:, :-1].copy()}
    y = tokens[:, 1:].copy()
    weights = mask[:, 1:].astype("float32")
    cache = TeacherCache.build(gpt2(1, 2), x, top_k=8)
    options = {"padding_mask_input": "padding_mask"}
    sparse = distil(lambda: gpt2(2, 1), cache, x, y, weights, expand=False, **options)
    full = distil(lambda: gpt2(2, 1), cache, x, y, weights, expand=True, **options)
    assert_same_results(sparse, full)


@pytest.mark.parametrize("rest", ["renormalize", "uniform"])
def test_a_sharded_cache_streams_the_top_k_batches_of_the_in_memory_cache(tmp_path, rest):
    x, y, weights = token_data(n=23)
    teacher = tagger("teacher", 8, 1)
    options = {"top_k": TOP_K, "top_k_rest": rest, "dtype": "float16"}
    memory = TeacherCache.build(teacher, x, **options)
    sharded = ShardedTeacherCache.build(
        teacher, x, tmp_path / "cache", examples_per_shard=5, **options
    )
    streamed = sharded.dataset(x, y, weights, batch_size=4, shuffle_buffer=0, expand_top_k=False)
    held = memory.dataset(x, y, weights, batch_size=4, shuffle=False, expand_top_k=False)
    for (features, labels, w), (expected, expected_labels, expected_w) in zip(streamed, held):
        assert sorted(features) == sorted(expected)
        assert ("teacher_rest_logits" in features) == (rest == "uniform")
        # Rest logits may differ by an ulp (computed in batches of other sizes).
        for got, want in zip(tf.nest.flatten(features), tf.nest.flatten(expected)):
            np.testing.assert_allclose(got, want, rtol=1e-6)
        np.testing.assert_array_equal(labels, expected_labels)
        np.testing.assert_array_equal(w, expected_w)


def test_the_distiller_reads_a_sharded_caches_top_k_batches_without_full_rows(
    tmp_path, no_full_rows
):
    x, y, weights = token_data()
    cache = ShardedTeacherCache.build(
        tagger("teacher", 8, 1), x, tmp_path / "cache", examples_per_shard=7, top_k=TOP_K
    )
    distiller = Distiller(student=tagger("student", 4, 2), teacher=cache)
    distiller.compile(optimizer=keras.optimizers.SGD(0.1), alpha=0.5, temperature=2.0)
    data = cache.dataset(x, y, weights, batch_size=8, shuffle_buffer=0, expand_top_k=False)
    history = distiller.fit(data, epochs=1, verbose=0).history
    assert np.isfinite(history["distillation_loss"][0]) and history["distillation_loss"][0] > 0
