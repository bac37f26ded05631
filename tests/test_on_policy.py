"""On-policy (GKD) and sequence-level distillation with `OnPolicyDistiller`.

The sequences a step trains on are checked against an independent greedy
decode (full forward passes, no key/value cache) and their weights against
a NumPy mask of the tokens up to each row's first end token; the step's
losses against the NumPy per-position reference on those sequences.
"""

import types

import numpy as np
import pytest
from helpers import np_position_losses
from helpers import tiny_gpt2

from keras_distill import Distiller
from keras_distill import OnPolicyDistiller
from keras_distill import _checks
from keras_distill._keras import keras

VOCABULARY, LENGTH = 64, 8
ALPHA, TEMPERATURE = 0.5, 2.0
GREEDY = 1e-4  # a sampling temperature at which sampling is the argmax


def gpt2(hub, layers, hidden, name, max_length=LENGTH):
    seed = layers * 100 + hidden
    return tiny_gpt2(hub, VOCABULARY, max_length, layers, hidden, seed=seed, name=name, dropout=0.0)


def pair(hub):
    return gpt2(hub, 2, 32, "teacher"), gpt2(hub, 1, 16, "student")


def prompt_batch(n=6, seed=0):
    """`(x, y, sample_weight)` of prompts and responses: labels count from row i's
    position `prompts[i] - 1` on, as keras_hub's preprocessors weigh responses."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, VOCABULARY, size=(n, LENGTH + 1)).astype("int32")
    prompts = rng.integers(1, LENGTH - 2, size=n)
    weights = (np.arange(LENGTH)[None, :] >= prompts[:, None] - 1).astype("float32")
    x = {"token_ids": tokens[:, :-1], "padding_mask": np.ones((n, LENGTH), "int32")}
    return x, tokens[:, 1:], weights, prompts


def greedy_decode(model, tokens, prompts):
    """Row i keeps its first `prompts[i]` tokens; each later token is the argmax of a full
    forward pass over the tokens before it."""
    tokens = np.array(tokens)
    for j in range(int(prompts.min()), LENGTH):
        x = {"token_ids": tokens, "padding_mask": np.ones_like(tokens)}
        best = np.asarray(model(x, training=False))[:, j - 1].argmax(-1)
        tokens[:, j] = np.where(j >= prompts, best, tokens[:, j])
    return tokens


def np_counted_weights(tokens, prompts, end_token_id):
    """Label weights: position j counts when token j + 1 was generated and no end token was
    generated before it in its row."""
    weights = np.zeros(tokens.shape, np.float32)
    for row, prompt in enumerate(prompts):
        for j in range(prompt, LENGTH):
            weights[row, j - 1] = 1.0
            if tokens[row, j] == end_token_id:
                break
    return weights


def logits(model, tokens):
    x = {"token_ids": tokens, "padding_mask": np.ones_like(tokens)}
    return np.asarray(model(x, training=False), np.float64)


def one_step(distiller, x, y, weights, **compile_kwargs):
    options = dict(
        optimizer=keras.optimizers.SGD(0.0), alpha=ALPHA, temperature=TEMPERATURE, run_eagerly=True
    )
    options.update(compile_kwargs)
    distiller.compile(**options)
    history = distiller.fit(x, y, sample_weight=weights, batch_size=len(y), epochs=1, verbose=0)
    return {name: values[0] for name, values in history.history.items()}


def assert_losses(got, expected):
    for name in ("student_loss", "distillation_loss", "loss"):
        np.testing.assert_allclose(got[name], expected[name], rtol=2e-5, atol=1e-6, err_msg=name)


def an_end_token(model, x, prompts):
    """The second token the greedy decode generates in the row with the shortest prompt."""
    decoded = greedy_decode(model, x["token_ids"], prompts)
    row = int(np.argmin(prompts))
    return int(decoded[row, prompts[row] + 1]), decoded


def test_lmbda_one_trains_on_the_students_samples_up_to_the_end_token(hub):
    teacher, student = pair(hub)
    x, y, weights, prompts = prompt_batch()
    end, expected_tokens = an_end_token(student, x, prompts)
    expected_weights = np_counted_weights(expected_tokens, prompts, end)
    assert 0 < expected_weights.sum() < (LENGTH - prompts).sum()  # the end token cut some rows
    expected = np_position_losses(
        logits(teacher, expected_tokens),
        logits(student, expected_tokens),
        np.pad(expected_tokens[:, 1:], [[0, 0], [0, 1]]),
        expected_weights,
        alpha=1.0,  # the student's own samples are no hard target: the divergence alone
        temperature=TEMPERATURE,
    )
    distiller = OnPolicyDistiller(
        student, teacher, lmbda=1.0, generation_temperature=GREEDY, end_token_id=end, seed=3
    )
    got = one_step(distiller, x, y, weights)
    assert_losses(got, expected)
    assert got["loss"] == got["distillation_loss"]


def test_seq_kd_trains_on_the_teachers_samples_with_hard_labels(hub):
    teacher, student = pair(hub)
    x, y, weights, prompts = prompt_batch(seed=1)
    end, expected_tokens = an_end_token(teacher, x, prompts)
    expected = np_position_losses(
        logits(teacher, expected_tokens),
        logits(student, expected_tokens),
        np.pad(expected_tokens[:, 1:], [[0, 0], [0, 1]]),
        np_counted_weights(expected_tokens, prompts, end),
        alpha=ALPHA,
        temperature=TEMPERATURE,
    )
    distiller = OnPolicyDistiller(
        student,
        teacher,
        lmbda=0.0,
        seq_kd=True,
        generation_temperature=GREEDY,
        end_token_id=end,
        seed=3,
    )
    assert_losses(one_step(distiller, x, y, weights), expected)


def test_prompt_length_and_max_new_tokens_bound_the_generated_tokens(hub):
    teacher, student = pair(hub)
    x, y, weights, _ = prompt_batch(seed=2)
    x["padding_mask"][0, 2:] = 0  # row 0 holds 2 tokens: its prompt is 2 long
    prompts = np.minimum(x["padding_mask"].sum(1), 3)
    expected_tokens = greedy_decode(student, x["token_ids"], prompts)
    expected_weights = np_counted_weights(expected_tokens, prompts, end_token_id=None)
    for row, prompt in enumerate(prompts):
        expected_weights[row, prompt - 1 + 2 :] = 0.0  # two new tokens at most
    expected = np_position_losses(
        logits(teacher, expected_tokens),
        logits(student, expected_tokens),
        np.pad(expected_tokens[:, 1:], [[0, 0], [0, 1]]),
        expected_weights,
        alpha=1.0,
        temperature=TEMPERATURE,
    )
    distiller = OnPolicyDistiller(
        student,
        teacher,
        lmbda=1.0,
        prompt_length=3,
        max_new_tokens=2,
        generation_temperature=GREEDY,
        seed=0,
    )
    assert_losses(one_step(distiller, x, y, weights), expected)


def fit_by_epoch(hub, epochs, **compile_kwargs):
    """Graph mode, one batch per epoch: `(loss, distillation_loss)` of each epoch."""
    teacher, student = pair(hub)
    x, y, weights, _ = prompt_batch(n=4)
    distiller = OnPolicyDistiller(student, teacher, lmbda=0.5, seed=7)
    distiller.compile(
        optimizer=keras.optimizers.Adam(1e-3), alpha=ALPHA, temperature=1.0, **compile_kwargs
    )
    seen = []
    callback = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(epoch))
    history = distiller.fit(
        x, y, sample_weight=weights, batch_size=4, epochs=epochs, verbose=0, callbacks=[callback]
    )
    assert seen == list(range(epochs))
    return np.array(history.history["loss"]), np.array(history.history["distillation_loss"])


def test_fit_mixes_data_and_samples_with_probability_lmbda(hub):
    """An epoch on the student's samples logs `loss == distillation_loss` (no hard-label
    term); one on the data does not. The one graph-mode run of the default tier (~10 s: most
    of it tracing keras_hub's GPT-2 three times)."""
    losses, divergences = fit_by_epoch(hub, epochs=12)
    on_policy = np.isclose(losses, divergences, rtol=1e-6)
    assert np.all(np.isfinite(losses))
    assert 2 <= on_policy.sum() <= 10, on_policy  # Binomial(12, 0.5); fixed by the seed


@pytest.mark.slow
def test_xla_mixes_data_and_samples(hub):
    """XLA draws other random numbers than graph mode for the same seed (TensorFlow's
    stateless kernels differ there), so only the mix is checked."""
    losses, divergences = fit_by_epoch(hub, epochs=8, jit_compile=True)
    on_policy = np.isclose(losses, divergences, rtol=1e-6)
    assert np.all(np.isfinite(losses))
    assert 1 <= on_policy.sum() <= 7, on_policy


def test_lmbda_zero_is_the_distiller_exactly():
    """No generation: runs on any model, under both Keras generations."""
    tokens = np.random.default_rng(0).integers(1, 12, size=(16, 6)).astype("int32")
    labels = (tokens * 7 % 12).astype("int32")

    def model(name, width, seed):
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((6,), dtype="int32")
        hidden = keras.layers.Embedding(12, width)(inputs)
        return keras.Model(inputs, keras.layers.Dense(12)(hidden), name=name)

    runs = []
    for cls, extra in ((Distiller, {}), (OnPolicyDistiller, {"lmbda": 0.0})):
        teacher, student = model("teacher", 8, 1), model("student", 4, 2)
        distiller = cls(student=student, teacher=teacher, **extra)
        distiller.compile(optimizer=keras.optimizers.SGD(0.1), alpha=ALPHA, temperature=2.0)
        history = distiller.fit(tokens, labels, batch_size=8, epochs=2, verbose=0, shuffle=False)
        runs.append((history.history, [w.numpy() for w in student.weights]))
    assert runs[0][0] == runs[1][0]
    for first, second in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(first, second)


def test_continuation_masks_match_numpy():
    import tensorflow as tf

    from keras_distill import _generation

    rng = np.random.default_rng(5)
    tokens = rng.integers(0, 4, size=(32, LENGTH)).astype("int32")
    prompts = rng.integers(1, LENGTH + 1, size=32).astype("int32")
    padding, weights = _generation.continuation_masks(tf.constant(tokens), prompts, 0)
    expected = np_counted_weights(tokens, prompts, 0)
    np.testing.assert_array_equal(weights.numpy(), expected)
    counted_tokens = np.pad(expected[:, :-1], [[0, 0], [1, 0]])
    is_prompt = np.arange(LENGTH)[None, :] < prompts[:, None]
    np.testing.assert_array_equal(padding.numpy(), np.maximum(counted_tokens, is_prompt))


# Bad inputs.


def plain_lm(name="plain"):
    inputs = keras.Input((LENGTH,), dtype="int32")
    return keras.Model(inputs, keras.layers.Embedding(VOCABULARY, VOCABULARY)(inputs), name=name)


@pytest.mark.parametrize("lmbda", [-0.1, 1.5, float("nan"), True, "0.5"])
def test_bad_lmbda(lmbda):
    with pytest.raises(ValueError, match=r"`lmbda` must be a number in \[0, 1\]") as error:
        OnPolicyDistiller(plain_lm("student"), plain_lm("teacher"), lmbda=lmbda)
    assert str(error.value).endswith(f"Received: lmbda={lmbda!r}")


def test_student_that_cannot_generate():
    with pytest.raises(TypeError, match=r"`student` must be a causal language model that can "):
        OnPolicyDistiller(plain_lm("student"), plain_lm("teacher"), lmbda=0.5)
    with pytest.raises(TypeError, match=r"`generate`.*lmbda=0.5 samples.*Received: student="):
        OnPolicyDistiller(plain_lm("student"), plain_lm("teacher"), lmbda=0.5)


def test_seq_kd_teacher_that_cannot_generate(hub):
    _, student = pair(hub)
    with pytest.raises(TypeError, match=r"`teacher` must .* seq_kd=True .*Received: teacher="):
        OnPolicyDistiller(student, plain_lm("teacher"), lmbda=0.0, seq_kd=True)


def test_generation_longer_than_the_models_positions(hub):
    teacher, student = pair(hub)
    with pytest.raises(ValueError, match=r"student's backbone holds at most 8 positions") as error:
        OnPolicyDistiller(student, teacher, prompt_length=4, max_new_tokens=5)
    assert str(error.value).endswith("Received: prompt_length=4, max_new_tokens=5")
    long_teacher = gpt2(hub, 1, 16, "long_teacher", max_length=16)
    short_student = gpt2(hub, 1, 16, "short_student", max_length=12)
    distiller = OnPolicyDistiller(short_student, long_teacher, lmbda=1.0)
    distiller.compile(optimizer="sgd")
    tokens = np.ones((2, 16), "int32")
    x = {"token_ids": tokens, "padding_mask": tokens}

    def batches():  # not checked before the first step
        while True:
            yield x, tokens

    with pytest.raises(ValueError, match=r"holds at most 12 .*Received: token_ids of length 16"):
        distiller.fit(batches(), steps_per_epoch=1, epochs=1, verbose=0)


def test_inputs_without_token_ids(hub):
    teacher, student = pair(hub)
    distiller = OnPolicyDistiller(student, teacher, lmbda=1.0)
    distiller.compile(optimizer="sgd")
    tokens = np.ones((2, LENGTH), "int32")

    def batches():  # not checked before the first step
        while True:
            yield {"token_ids": tokens}, tokens

    with pytest.raises(ValueError, match=r"x = \{'token_ids', 'padding_mask'\}.*Received: x with"):
        distiller.fit(batches(), steps_per_epoch=1, epochs=1, verbose=0)


def test_keras_io_form_is_refused():
    distiller = OnPolicyDistiller(plain_lm("student"), plain_lm("teacher"), lmbda=0.0)
    with pytest.raises(ValueError, match=r"`distillation_loss`.*Received: student_loss_fn="):
        distiller.compile(optimizer="sgd", student_loss_fn=keras.losses.MeanSquaredError())


class FakeTokenizer:
    """What the check reads from a keras_hub tokenizer: its size, its ids, its end token."""

    def __init__(self, size=256, shift=0, end_token_id=0):
        self.size, self.shift, self.end_token_id = size, shift, end_token_id

    def vocabulary_size(self):
        return self.size

    def __call__(self, text):
        return np.array([(ord(c) + self.shift) % self.size for c in text])


def with_tokenizer(model, tokenizer):
    model.preprocessor = types.SimpleNamespace(tokenizer=tokenizer)
    return model


@pytest.mark.parametrize(
    "student_tokenizer,match",
    [
        (FakeTokenizer(size=300), r"different vocabularies.*student vocabulary_size=300, teacher"),
        (FakeTokenizer(shift=1), r"different token ids for the same text.*Received: student ids"),
        (FakeTokenizer(end_token_id=2), r"end text with different.*student end_token_id=2"),
    ],
)
def test_different_tokenizers(student_tokenizer, match):
    teacher = with_tokenizer(plain_lm("teacher"), FakeTokenizer())
    student = with_tokenizer(plain_lm("student"), student_tokenizer)
    for cls in (Distiller, OnPolicyDistiller):
        with pytest.raises(ValueError, match=match) as error:
            cls(student=student, teacher=teacher)
        assert "teacher's tokenizer" in str(error.value)  # what to do
    student = with_tokenizer(plain_lm("student"), FakeTokenizer())
    Distiller(student=student, teacher=teacher)  # the same tokenizer passes
    _checks.check_same_tokenizer(plain_lm(), teacher)  # nothing to compare: passes


def test_keras_hub_tokenizers_that_differ(hub):
    teacher, student = pair(hub)
    teacher.preprocessor = types.SimpleNamespace(
        tokenizer=hub.tokenizers.ByteTokenizer(lowercase=True)  # "The" -> "the"
    )
    student.preprocessor = types.SimpleNamespace(
        tokenizer=hub.tokenizers.UnicodeCodepointTokenizer(vocabulary_size=256, lowercase=False)
    )
    with pytest.raises(ValueError, match=r"different token ids for the same text"):
        OnPolicyDistiller(student, teacher)


def test_config_round_trip():
    settings = dict(
        lmbda=0.0,
        seq_kd=False,
        prompt_length=3,
        max_new_tokens=2,
        generation_temperature=0.7,
        end_token_id=5,
        seed=4,
    )
    distiller = OnPolicyDistiller(plain_lm("student"), plain_lm("teacher"), **settings)
    rebuilt = OnPolicyDistiller.from_config(distiller.get_config())
    assert isinstance(rebuilt, OnPolicyDistiller)
    assert {name: getattr(rebuilt, name) for name in settings} == settings
