"""Token-distribution divergences against SciPy/NumPy, with masked and zero-probability entries."""

import numpy as np
import pytest
import tensorflow as tf
from scipy.special import log_softmax
from scipy.special import rel_entr
from scipy.special import softmax

from keras_distill import divergences
from keras_distill import losses
from keras_distill._keras import keras

INF = np.inf


def log_probs(logits, temperature):
    return log_softmax(np.asarray(logits, np.float64) / temperature, axis=-1)


def kl(log_a, log_b):
    """KL(a || b) per row from log-probabilities, with 0 log 0 = 0."""
    a = np.exp(log_a)
    with np.errstate(invalid="ignore"):
        return np.where(a > 0, a * (log_a - log_b), 0.0).sum(-1)


def mix(log_a, log_b, weight):
    """log(w a + (1 - w) b)."""
    with np.errstate(divide="ignore"):
        return np.logaddexp(np.log(weight) + log_a, np.log(1 - weight) + log_b)


def np_divergence(name, teacher, student, temperature, **kwargs):
    log_p, log_q = log_probs(teacher, temperature), log_probs(student, temperature)
    t2 = temperature**2
    if name == "forward_kl":
        return t2 * kl(log_p, log_q)
    if name == "reverse_kl":
        return t2 * kl(log_q, log_p)
    if name == "generalized_jsd":
        beta = kwargs["beta"]
        if beta == 0:
            return t2 * kl(log_p, log_q)
        if beta == 1:
            return t2 * kl(log_q, log_p)
        log_m = mix(log_p, log_q, beta)
        return t2 * (beta * kl(log_p, log_m) + (1 - beta) * kl(log_q, log_m))
    if name == "skew_kl":
        return t2 * kl(log_p, mix(log_p, log_q, kwargs["skew"]))
    if name == "skew_reverse_kl":
        return t2 * kl(log_q, mix(log_q, log_p, kwargs["skew"]))
    if name == "total_variation":
        return temperature * 0.5 * np.abs(np.exp(log_p) - np.exp(log_q)).sum(-1)
    raise AssertionError(name)


def test_reference_kl_agrees_with_scipy():
    rng = np.random.default_rng(9)
    p, q = softmax(rng.normal(size=(2, 7, 5)), axis=-1), softmax(rng.normal(size=(7, 5)), axis=-1)
    p[0, 0, :2] = 0.0
    with np.errstate(divide="ignore"):
        log_p = np.log(p)
    np.testing.assert_allclose(kl(log_p, np.log(q)), rel_entr(p, q).sum(-1), rtol=1e-12)


FUNCTIONS = {
    "forward_kl": losses.distillation_kl,
    "reverse_kl": divergences.reverse_kl,
    "generalized_jsd": divergences.generalized_jsd,
    "skew_kl": divergences.skew_kl,
    "skew_reverse_kl": divergences.skew_reverse_kl,
    "total_variation": divergences.total_variation,
}
CASES = [
    ("forward_kl", {}),
    ("reverse_kl", {}),
    ("generalized_jsd", {"beta": 0.0}),
    ("generalized_jsd", {"beta": 0.1}),
    ("generalized_jsd", {"beta": 0.5}),
    ("generalized_jsd", {"beta": 0.9}),
    ("generalized_jsd", {"beta": 1.0}),
    ("skew_kl", {"skew": 0.0}),
    ("skew_kl", {"skew": 0.1}),
    ("skew_kl", {"skew": 0.5}),
    ("skew_reverse_kl", {"skew": 0.0}),
    ("skew_reverse_kl", {"skew": 0.1}),
    ("total_variation", {}),
]


def run(name, teacher, student, temperature, **kwargs):
    return FUNCTIONS[name](teacher, student, temperature=temperature, **kwargs).numpy()


def masked_logits(seed=0, shape=(3, 5, 9), underflow=True):
    """Logits `(batch, seq, vocab)` with the same vocabulary entries masked (-inf) in both
    models on some positions, and entries whose teacher probability underflows to 0."""
    rng = np.random.default_rng(seed)
    teacher = rng.normal(scale=2.0, size=shape)
    student = rng.normal(scale=2.0, size=shape)
    mask = rng.random(shape) < 0.3
    mask[..., 0] = False  # Keep at least one entry per row.
    teacher[mask] = -INF
    student[mask] = -INF
    if underflow:
        teacher[0, 0, 1:] = -1e4  # Teacher probabilities exp(-1e4) == 0.0 in float64.
        student[0, 0, 1:] = rng.normal(size=shape[-1] - 1)
    return teacher, student


@pytest.mark.parametrize("temperature", [1.0, 2.5])
@pytest.mark.parametrize("name,kwargs", CASES)
def test_matches_reference_per_position_with_masks_and_zero_probabilities(
    name, kwargs, temperature
):
    teacher, student = masked_logits()
    got = run(name, teacher, student, temperature, **kwargs)
    assert got.shape == teacher.shape[:-1] and got.dtype == np.float32
    expected = np_divergence(name, teacher, student, temperature, **kwargs)
    assert np.all(np.isfinite(expected))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,kwargs", CASES)
def test_gradients_are_finite_and_match_finite_differences(name, kwargs):
    teacher, student = masked_logits(seed=1, shape=(2, 3, 6))
    student_var = tf.Variable(student)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(FUNCTIONS[name](teacher, student_var, temperature=2.0, **kwargs))
    gradient = tape.gradient(loss, student_var).numpy()
    assert np.all(np.isfinite(gradient))
    masked = np.isneginf(student)
    assert np.all(gradient[masked] == 0.0)
    numeric = np.zeros_like(student)
    step = 1e-6
    for index in zip(*np.nonzero(~masked)):
        shifted_up, shifted_down = student.copy(), student.copy()
        shifted_up[index] += step
        shifted_down[index] -= step
        up = np_divergence(name, teacher, shifted_up, 2.0, **kwargs).sum()
        down = np_divergence(name, teacher, shifted_down, 2.0, **kwargs).sum()
        numeric[index] = (up - down) / (2 * step)
    np.testing.assert_allclose(gradient[~masked], numeric[~masked], rtol=1e-3, atol=1e-5)


def test_a_token_only_the_student_masks():
    teacher = np.array([[1.0, 0.5, -1.0]])
    student = np.array([[0.0, -INF, 0.2]])
    student_var = tf.Variable(student)
    # The teacher puts mass where the student has none: forward KL is infinite, but its
    # student gradient is finite; the skew KL stays finite.
    with tf.GradientTape() as tape:
        forward = losses.distillation_kl(teacher, student_var)
    assert np.isposinf(forward.numpy()[0])
    assert np.all(np.isfinite(tape.gradient(forward, student_var).numpy()))
    for name, kwargs in [("skew_kl", {"skew": 0.1}), ("reverse_kl", {}), ("total_variation", {})]:
        np.testing.assert_allclose(
            run(name, teacher, student, 1.0, **kwargs),
            np_divergence(name, teacher, student, 1.0, **kwargs),
            rtol=1e-5,
        )
    # Disjoint supports: the symmetric JSD is at its bound log 2.
    disjoint = run("generalized_jsd", [[0.0, -INF]], [[-INF, 0.0]], 1.0, beta=0.5)
    np.testing.assert_allclose(disjoint, [np.log(2.0)], rtol=1e-6)


def test_beta_ends_are_the_two_kls_as_in_trl():
    # Without the underflow row: its log-ratio of 1e4 needs a far smaller beta to converge.
    teacher, student = masked_logits(seed=2, underflow=False)
    forward = run("forward_kl", teacher, student, 2.0)
    reverse = run("reverse_kl", teacher, student, 2.0)
    # Forward KL runs in float32 where the logits allow it; the JSD in float64.
    same = dict(rtol=1e-6)
    np.testing.assert_allclose(
        run("generalized_jsd", teacher, student, 2.0, beta=0.0), forward, **same
    )
    np.testing.assert_allclose(
        run("generalized_jsd", teacher, student, 2.0, beta=1.0), reverse, **same
    )
    # The formula tends to beta * KL(p || q) near 0 and (1 - beta) * KL(q || p) near 1.
    small = 1e-5
    near_zero = run("generalized_jsd", teacher, student, 2.0, beta=small) / small
    near_one = run("generalized_jsd", teacher, student, 2.0, beta=1 - small) / small
    np.testing.assert_allclose(near_zero, forward, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(near_one, reverse, rtol=1e-3, atol=1e-5)
    # Skew 0 is the plain KL in each direction.
    np.testing.assert_allclose(run("skew_kl", teacher, student, 2.0, skew=0.0), forward, **same)
    np.testing.assert_allclose(run("skew_reverse_kl", teacher, student, 2.0, skew=0.0), reverse)


def test_bounds():
    rng = np.random.default_rng(3)
    teacher, student = rng.normal(scale=8.0, size=(2, 64, 50))
    assert np.all(run("generalized_jsd", teacher, student, 1.0, beta=0.5) <= np.log(2) + 1e-6)
    assert np.all(run("skew_kl", teacher, student, 1.0, skew=0.1) <= np.log(10) + 1e-5)
    assert np.all(run("skew_reverse_kl", teacher, student, 1.0, skew=0.1) <= np.log(10) + 1e-5)
    assert np.all(run("total_variation", teacher, student, 3.0) <= 3.0 + 1e-6)
    for name, kwargs in CASES:
        assert np.all(run(name, teacher, teacher, 2.0, **kwargs) < 1e-6), name


def test_total_variation_times_t_keeps_the_gradient_scale():
    rng = np.random.default_rng(4)
    teacher, student = rng.normal(size=(2, 16, 10))
    norms = []
    for temperature in (100.0, 200.0, 400.0):
        student_var = tf.Variable(student)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(divergences.total_variation(teacher, student_var, temperature))
        norms.append(np.linalg.norm(tape.gradient(loss, student_var).numpy()))
    np.testing.assert_allclose(norms, norms[0], rtol=0.02)


@pytest.mark.parametrize("beta", [-0.1, 1.5, float("nan"), True, "0.5"])
def test_bad_beta(beta):
    for build in (
        lambda: losses.GeneralizedJSD(beta=beta),
        lambda: divergences.generalized_jsd([[0.0, 1.0]], [[1.0, 0.0]], beta=beta),
    ):
        with pytest.raises(ValueError, match=r"`beta` must be a number in \[0, 1\]") as error:
            build()
        assert "0 gives forward KL" in str(error.value)
        assert str(error.value).endswith(f"Received: beta={beta!r}")


@pytest.mark.parametrize("skew", [-0.1, 1.0, 2.0])
@pytest.mark.parametrize("name", ["skew_kl", "skew_reverse_kl"])
def test_bad_skew(name, skew):
    cls = losses.get(name).__class__
    for build in (
        lambda: cls(skew=skew),
        lambda: FUNCTIONS[name]([[0.0, 1.0]], [[1.0, 0.0]], skew=skew),
    ):
        with pytest.raises(ValueError, match=r"`skew` must be a number in \[0, 1\)") as error:
            build()
        assert str(error.value).endswith(f"Received: skew={skew!r}")


NAMES = {
    "forward_kl": losses.DistillationKL,
    "reverse_kl": losses.ReverseKL,
    "jsd": losses.GeneralizedJSD,
    "generalized_jsd": losses.GeneralizedJSD,
    "skew_kl": losses.SkewKL,
    "skew_reverse_kl": losses.SkewReverseKL,
    "tv": losses.TotalVariation,
    "total_variation": losses.TotalVariation,
}


@pytest.mark.parametrize("name,cls", sorted(NAMES.items()))
def test_registry_names(name, cls):
    assert name in losses.names()
    assert type(losses.get(name)) is cls
    assert type(losses.get(name.upper())) is cls


@pytest.mark.parametrize(
    "loss,function,kwargs",
    [
        (losses.ReverseKL(temperature=2.0), divergences.reverse_kl, {}),
        (losses.GeneralizedJSD(2.0, beta=0.3), divergences.generalized_jsd, {"beta": 0.3}),
        (losses.SkewKL(2.0, skew=0.2), divergences.skew_kl, {"skew": 0.2}),
        (losses.SkewReverseKL(2.0, skew=0.2), divergences.skew_reverse_kl, {"skew": 0.2}),
        (losses.TotalVariation(temperature=2.0), divergences.total_variation, {}),
    ],
)
def test_loss_classes_round_trip_and_reduce_the_pure_function(loss, function, kwargs):
    rebuilt = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(rebuilt) is type(loss)
    assert rebuilt.get_config() == loss.get_config()
    assert losses.get(keras.saving.serialize_keras_object(loss)).get_config() == loss.get_config()
    assert type(loss).from_config(loss.get_config()).get_config() == loss.get_config()
    teacher, student = masked_logits(seed=5)
    expected = function(teacher, student, temperature=2.0, **kwargs).numpy()
    np.testing.assert_allclose(rebuilt.per_example(teacher, student).numpy(), expected)
    np.testing.assert_allclose(float(rebuilt(teacher, student)), expected.mean(), rtol=1e-5)


@pytest.mark.parametrize("name", ["reverse_kl", "jsd", "skew_kl", "skew_reverse_kl", "tv"])
def test_compile_by_name_trains(teacher, student, data, name):
    from keras_distill import Distiller

    x, y = data
    distiller = Distiller(student=student, teacher=teacher)
    distiller.compile(optimizer=keras.optimizers.SGD(0.1), distillation_loss=name, alpha=1.0)
    assert type(distiller.distillation_loss) is NAMES[name]
    history = distiller.fit(x, y, epochs=3, batch_size=32, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    assert history["distillation_loss"][-1] < history["distillation_loss"][0]


def test_the_command_line_offers_every_registered_name(capsys):
    import keras_distill_cli

    assert sorted(keras_distill_cli.LOSS_NAMES) == sorted(losses.names())
    with pytest.raises(SystemExit):
        keras_distill_cli.build_parser().parse_args(["distill", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for name in ("reverse_kl", "generalized_jsd", "skew_kl", "skew_reverse_kl", "tv"):
        assert name in help_text


def test_nan_logits_give_nan_not_zero():
    """A NaN (or +inf) teacher logit is a broken teacher, never a zero-probability class."""
    teacher = np.array([[np.inf, -np.inf, 0.0], [np.nan, 1.0, 2.0]])
    student = np.zeros((2, 3))
    values = losses.distillation_kl(teacher, student, 2.0).numpy()
    assert np.all(np.isnan(values)), values
