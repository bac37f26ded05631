import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_message

from keras_distill import losses

TEMPERATURES = [0.5, 1.0, 2.0, 4.0, 10.0]


def np_log_softmax(z):
    z = np.asarray(z, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def np_kl(teacher, student, temperature):
    log_p = np_log_softmax(np.asarray(teacher) / temperature)
    log_q = np_log_softmax(np.asarray(student) / temperature)
    return temperature**2 * (np.exp(log_p) * (log_p - log_q)).sum(axis=-1)


def np_dkd(teacher, student, target, temperature, alpha, beta):
    def split(logits):
        p = np.exp(np_log_softmax(np.asarray(logits) / temperature))
        rows = np.arange(len(target))
        p_target = p[rows, target]
        binary = np.stack([p_target, 1.0 - p_target], axis=-1)
        rest = p.copy()
        rest[rows, target] = 0.0
        return binary, rest / rest.sum(axis=-1, keepdims=True)

    b_t, q_t = split(teacher)
    b_s, q_s = split(student)
    tckd = (b_t * (np.log(b_t) - np.log(b_s))).sum(-1)
    q_t_safe = np.where(q_t > 0, q_t, 1.0)
    nckd = (q_t * (np.log(q_t_safe) - np.log(np.where(q_t > 0, q_s, 1.0)))).sum(-1)
    return temperature**2 * (alpha * tckd + beta * nckd)


@pytest.fixture
def logits():
    rng = np.random.default_rng(42)
    return (rng.normal(scale=3.0, size=(16, 10)), rng.normal(scale=3.0, size=(16, 10)))


@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_distillation_kl_matches_numpy(logits, temperature):
    teacher, student = logits
    got = losses.distillation_kl(teacher, student, temperature).numpy()
    assert got.shape == (16,)
    np.testing.assert_allclose(got, np_kl(teacher, student, temperature), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("scale", [0.05, 0.01])
def test_distillation_kl_of_nearly_flat_logits_at_temperature_one(scale):
    """Untrained language models: a large vocabulary, logits within a few hundredths."""
    rng = np.random.default_rng(3)
    teacher, student = (rng.normal(scale=scale, size=(4, 8192)).astype("float32") for _ in "ts")
    got = losses.distillation_kl(teacher, student, 1.0).numpy()
    np.testing.assert_allclose(got, np_kl(teacher, student, 1.0), rtol=1e-5)


def long_kl(teacher, student, temperature):
    """`np_kl` in extended precision (80-bit on x86, else float64)."""
    teacher, student = (np.asarray(z, np.longdouble) / temperature for z in (teacher, student))
    log_p = teacher - np.log(np.exp(teacher).sum(-1, keepdims=True))
    log_q = student - np.log(np.exp(student).sum(-1, keepdims=True))
    return temperature**2 * (np.exp(log_p) * (log_p - log_q)).sum(-1)


@pytest.mark.parametrize("temperature", [1e2, 1e4, 3e4, 1e6, 1e9])
def test_distillation_kl_at_huge_temperatures(temperature):
    rng = np.random.default_rng(0)
    teacher, student = rng.normal(size=(8, 3)), rng.normal(size=(8, 3))
    got = losses.distillation_kl(teacher.astype("float32"), student.astype("float32"), temperature)
    teacher32, student32 = teacher.astype("float32"), student.astype("float32")
    # The high-temperature limit (Hinton et al. 2.1): half the variance of z_t - z_s.
    limit = 0.5 * np.var(teacher32.astype(np.float64) - student32, axis=-1)
    if temperature <= 1e6:  # Where a float64 reference still resolves the KL.
        np.testing.assert_allclose(got, np_kl(teacher32, student32, temperature), rtol=1e-3)
        np.testing.assert_allclose(got, long_kl(teacher32, student32, temperature), rtol=1e-4)
    if temperature >= 1e4:
        np.testing.assert_allclose(got, limit, rtol=1e-3)


def np_kl_gradients(teacher, student, temperature):
    """`(d/dz_t, d/dz_s)` of `sum T^2 KL`: `T p (log p - log q - KL)` and `T (q - p)`."""
    log_p = np_log_softmax(np.asarray(teacher, np.float64) / temperature)
    log_q = np_log_softmax(np.asarray(student, np.float64) / temperature)
    p = np.exp(log_p)
    kl = (p * (log_p - log_q)).sum(-1, keepdims=True)
    return temperature * p * (log_p - log_q - kl), temperature * (np.exp(log_q) - p)


def kl_gradients(teacher, student, temperature, graph=False):
    teacher_var = tf.Variable(teacher, dtype=tf.float32)
    student_var = tf.Variable(student, dtype=tf.float32)

    def gradients():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(losses.distillation_kl(teacher_var, student_var, temperature))
        return tape.gradient(loss, [teacher_var, student_var])

    return [g.numpy() for g in (tf.function(gradients) if graph else gradients)()]


@pytest.mark.parametrize(
    "scale,temperature",
    [(3.0, 1.0), (3.0, 4.0), (0.01, 1.0), (0.01, 4.0), (0.01, 1e5)],
    ids=["float32", "float64", "nearly-flat", "nearly-flat-hot", "float64-quadratic"],
)
@pytest.mark.parametrize("graph", [False, True], ids=["eager", "graph"])
def test_distillation_kl_gradients_of_teacher_and_student_match_numpy(scale, temperature, graph):
    rng = np.random.default_rng(5)
    teacher, student = (rng.normal(scale=scale, size=(6, 512)).astype("float32") for _ in "ts")
    expected = np_kl_gradients(teacher, student, temperature)
    for got, want in zip(kl_gradients(teacher, student, temperature, graph), expected):
        # Relative to the largest entry: nearly flat rows have gradients of about 1e-5.
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())


def test_a_batch_of_flat_and_widely_spread_positions_stays_exact():
    """One position within hundredths, one spread over 300: no form may overflow or cancel."""
    rng = np.random.default_rng(6)
    teacher = np.stack([rng.normal(scale=0.01, size=64), rng.uniform(-150, 150, size=64)])
    student = np.stack([rng.normal(scale=0.01, size=64), rng.uniform(-150, 150, size=64)])
    teacher, student = teacher.astype("float32"), student.astype("float32")
    got = losses.distillation_kl(teacher, student, 1.0).numpy()
    np.testing.assert_allclose(got, np_kl(teacher, student, 1.0), rtol=1e-5)
    for got, want in zip(
        kl_gradients(teacher, student, 1.0), np_kl_gradients(teacher, student, 1.0)
    ):
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())


def test_distillation_kl_gradient_at_a_huge_temperature():
    teacher = tf.constant([[1.0, -2.0, 0.5]])
    student = tf.Variable([[0.0, 0.3, -0.1]])
    with tf.GradientTape() as tape:
        loss = losses.distillation_kl(teacher, student, 1e6)
    difference = student.numpy() - teacher.numpy()
    # d/dz_s of 1/2 Var(z_t - z_s) under the uniform distribution: (d - mean(d)) / K.
    expected = (difference - difference.mean()) / 3
    np.testing.assert_allclose(tape.gradient(loss, student), expected, rtol=1e-4)


@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_soft_target_cross_entropy_is_kl_plus_teacher_entropy(logits, temperature):
    teacher, student = logits
    log_p = np_log_softmax(teacher / temperature)
    entropy = -(np.exp(log_p) * log_p).sum(-1) * temperature**2
    got = losses.soft_target_cross_entropy(teacher, student, temperature).numpy()
    np.testing.assert_allclose(
        got, np_kl(teacher, student, temperature) + entropy, rtol=1e-5, atol=1e-5
    )


def test_logit_mse_matches_numpy(logits):
    teacher, student = logits
    expected = ((student - teacher) ** 2).mean(-1)
    np.testing.assert_allclose(losses.logit_mse(teacher, student).numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
@pytest.mark.parametrize("alpha,beta", [(1.0, 8.0), (0.5, 2.0)])
def test_decoupled_kd_matches_numpy(logits, temperature, alpha, beta):
    teacher, student = logits
    target = np.random.default_rng(0).integers(0, 10, size=16)
    got = losses.decoupled_kd(teacher, student, target, temperature, alpha, beta).numpy()
    expected = np_dkd(teacher, student, target, temperature, alpha, beta)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_decoupled_kd_with_unit_weights_is_not_plain_kd_but_close(logits):
    # TCKD + NCKD recombine to KD up to the target-probability weighting of NCKD.
    teacher, student = logits
    target = np.argmax(teacher, axis=-1)
    dkd = losses.decoupled_kd(teacher, student, target, 1.0, 1.0, 1.0).numpy()
    assert np.all(dkd >= 0.0)
    assert not np.allclose(dkd, np_kl(teacher, student, 1.0))


@pytest.mark.parametrize("temperature", [1.0, 3.0, 10.0])
def test_gradient_is_temperature_times_probability_gap(logits, temperature):
    teacher, student = logits
    student_var = tf.Variable(student, dtype=tf.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(losses.distillation_kl(teacher, student_var, temperature))
    gradient = tape.gradient(loss, student_var).numpy()
    p_t = np.exp(np_log_softmax(teacher / temperature))
    p_s = np.exp(np_log_softmax(student / temperature))
    np.testing.assert_allclose(gradient, temperature * (p_s - p_t), rtol=1e-4, atol=1e-6)


def test_t_squared_keeps_gradient_scale_at_high_temperature(logits):
    # Hinton et al. 2015, eq. 3-4: with zero-mean logits and large T the
    # T^2-scaled gradient tends to (z_s - z_t) / K, whatever T is.
    teacher, student = logits
    teacher = teacher - teacher.mean(-1, keepdims=True)
    student = student - student.mean(-1, keepdims=True)
    limit = (student - teacher) / teacher.shape[-1]
    norms = []
    for temperature in (200.0, 400.0, 800.0):
        student_var = tf.Variable(student, dtype=tf.float32)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(losses.distillation_kl(teacher, student_var, temperature))
        gradient = tape.gradient(loss, student_var).numpy()
        np.testing.assert_allclose(gradient, limit, rtol=0.05, atol=2e-3)
        norms.append(np.linalg.norm(gradient))
    assert max(norms) / min(norms) < 1.05


def test_losses_are_stable_for_huge_logits_and_half_precision():
    teacher = tf.constant([[1e4, -1e4, 0.0]], tf.float16)
    student = tf.constant([[-1e4, 1e4, 0.0]], tf.float16)
    for value in (
        losses.distillation_kl(teacher, student, 2.0),
        losses.soft_target_cross_entropy(teacher, student, 2.0),
        losses.decoupled_kd(teacher, student, [0], 2.0),
    ):
        assert value.dtype == tf.float32
        assert np.all(np.isfinite(value.numpy()))


def test_loss_classes_reduce_the_pure_functions(logits):
    teacher, student = logits
    weights = np.linspace(0.0, 1.0, 16)
    loss = losses.DistillationKL(temperature=3.0)
    got = float(loss(teacher, student, sample_weight=weights))
    expected = (np_kl(teacher, student, 3.0) * weights).sum() / 16
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    np.testing.assert_allclose(
        float(losses.LogitMSE()(teacher, student)), ((student - teacher) ** 2).mean(), rtol=1e-5
    )


def test_decoupled_kd_class_uses_teacher_top1_without_labels(logits):
    teacher, student = logits
    expected = np_dkd(teacher, student, np.argmax(teacher, -1), 2.0, 1.0, 8.0).mean()
    got = float(losses.DecoupledKD(temperature=2.0)(teacher, student))
    np.testing.assert_allclose(got, expected, rtol=1e-4)


@pytest.mark.parametrize(
    "name,cls",
    [
        ("kl", losses.DistillationKL),
        ("distillation_kl", losses.DistillationKL),
        ("soft_ce", losses.SoftTargetCrossEntropy),
        ("mse", losses.LogitMSE),
        ("DKD", losses.DecoupledKD),
    ],
)
def test_get_by_name(name, cls):
    assert isinstance(losses.get(name), cls)


def test_get_passes_instances_and_configs_through():
    loss = losses.DecoupledKD(temperature=2.0, beta=3.0)
    assert losses.get(loss) is loss
    rebuilt = losses.DecoupledKD.from_config(loss.get_config())
    assert (rebuilt.temperature, rebuilt.alpha, rebuilt.beta) == (2.0, 1.0, 3.0)


def test_get_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as error:
        losses.get("kullback")
    assert_message(
        error,
        "Unknown distillation loss: 'kullback'",
        "['decoupled_kd', 'distillation_kl', 'dkd', 'forward_kl', 'generalized_jsd', 'jsd', 'kl', "
        "'logit_mse', 'mse', 'reverse_kl', 'skew_kl', 'skew_reverse_kl', 'soft_ce', "
        "'soft_target_cross_entropy', 'total_variation', 'tv']",
        "Received: identifier='kullback'",
    )


def test_get_rejects_other_types():
    with pytest.raises(ValueError, match=r"Received: identifier=42"):
        losses.get(42)
