import numpy as np
import pytest
from helpers import NUM_CLASSES
from helpers import assert_message
from helpers import calls_of
from helpers import make_mlp
from helpers import np_log_softmax

from keras_distill import Distiller
from keras_distill import FeatureMatch
from keras_distill._keras import keras

ALPHA, TEMPERATURE = 0.7, 3.0


def np_components(
    teacher_logits, student_logits, labels, alpha, temperature, weights=None, mask=None
):
    """Reference: per-example Hinton loss, missing labels use the distillation term alone."""
    n = len(student_logits)
    weights = np.ones(n) if weights is None else np.asarray(weights, np.float64)
    mask = np.ones(n) if mask is None else np.asarray(mask, np.float64)
    log_p = np_log_softmax(teacher_logits / temperature)
    log_q = np_log_softmax(student_logits / temperature)
    kd = temperature**2 * (np.exp(log_p) * (log_p - log_q)).sum(-1)
    safe_labels = np.where(mask > 0, labels, 0).astype(int)
    hard = -np_log_softmax(student_logits)[np.arange(n), safe_labels]
    per_example = mask * ((1 - alpha) * hard + alpha * kd) + (1 - mask) * kd
    return {
        "student_loss": (hard * weights * mask).sum() / max((weights * mask).sum(), 1e-12),
        "distillation_loss": (kd * weights).sum() / weights.sum(),
        "loss": (per_example * weights).sum() / weights.sum(),
    }


def compiled(distiller, **kwargs):
    options = dict(optimizer=keras.optimizers.SGD(0.1), alpha=ALPHA, temperature=TEMPERATURE)
    options.update(kwargs)
    distiller.compile(**options)
    return distiller


def evaluate(distiller, *args, **kwargs):
    return distiller.evaluate(*args, batch_size=len(args[0]), verbose=0, return_dict=True, **kwargs)


def predictions(model, x):
    return model.predict(x, verbose=0).astype(np.float64)


def assert_components(got, expected):
    for name in ("student_loss", "distillation_loss", "loss"):
        np.testing.assert_allclose(got[name], expected[name], rtol=2e-5, atol=1e-6, err_msg=name)


def test_evaluate_matches_numpy_reference(teacher, student, data):
    x, y = data
    distiller = compiled(Distiller(student=student, teacher=teacher))
    expected = np_components(
        predictions(teacher, x), predictions(student, x), y, ALPHA, TEMPERATURE
    )
    assert_components(evaluate(distiller, x, y), expected)


def test_sample_weights_are_respected(teacher, student, data):
    x, y = data
    weights = np.random.default_rng(3).uniform(0.0, 2.0, size=len(y)).astype("float32")
    distiller = compiled(Distiller(student=student, teacher=teacher), weighted_metrics=[])
    expected = np_components(
        predictions(teacher, x), predictions(student, x), y, ALPHA, TEMPERATURE, weights=weights
    )
    assert_components(evaluate(distiller, x, y, sample_weight=weights), expected)


def test_one_hot_labels_give_the_sparse_loss(teacher, student, data):
    x, y = data
    distiller = compiled(Distiller(student=student, teacher=teacher))
    sparse = evaluate(distiller, x, y)
    one_hot = evaluate(distiller, x, np.eye(NUM_CLASSES, dtype="float32")[y])
    assert_components(one_hot, sparse)


def test_x_only_batches_use_the_distillation_term_alone(teacher, student, data):
    x, y = data
    distiller = compiled(Distiller(student=student, teacher=teacher))
    expected = np_components(
        predictions(teacher, x),
        predictions(student, x),
        y,
        ALPHA,
        TEMPERATURE,
        mask=np.zeros(len(y)),
    )
    got = evaluate(distiller, x)
    assert got["student_loss"] == 0.0
    assert_components(got, expected)
    history = distiller.fit(x, epochs=2, batch_size=32, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]
    np.testing.assert_allclose(history["loss"], history["distillation_loss"], rtol=1e-6)


def test_masked_labels_use_the_hard_loss_only_where_labels_exist(teacher, student, data):
    x, y = data
    masked = y.copy()
    masked[::3] = -1
    mask = (masked != -1).astype("float64")
    distiller = compiled(Distiller(student=student, teacher=teacher))
    expected = np_components(
        predictions(teacher, x), predictions(student, x), y, ALPHA, TEMPERATURE, mask=mask
    )
    assert_components(evaluate(distiller, x, masked), expected)
    one_hot = np.eye(NUM_CLASSES, dtype="float32")[y]
    one_hot[::3] = -1.0
    assert_components(evaluate(distiller, x, one_hot), expected)


def test_masked_rows_are_left_out_of_weighted_metrics(teacher, student, data):
    x, y = data
    masked = y.copy()
    masked[::2] = -1
    distiller = compiled(
        Distiller(student=student, teacher=teacher),
        weighted_metrics=["sparse_categorical_accuracy"],
    )
    got = evaluate(distiller, x, masked)
    keep = masked != -1
    expected = np.mean(predictions(student, x)[keep].argmax(-1) == y[keep])
    np.testing.assert_allclose(got["sparse_categorical_accuracy"], expected, rtol=1e-6)


def test_fit_lowers_the_loss_and_leaves_the_teacher_untouched(teacher, student, data):
    x, y = data
    teacher_weights = [w.copy() for w in teacher.get_weights()]
    student_weights = [w.copy() for w in student.get_weights()]
    distiller = Distiller(student=student, teacher=teacher)
    distiller.compile(
        optimizer=keras.optimizers.Adam(0.01), metrics=["accuracy"], alpha=0.9, temperature=4.0
    )
    history = distiller.fit(
        x, y, epochs=5, batch_size=32, validation_data=(x, y), verbose=0
    ).history
    assert {
        "loss",
        "student_loss",
        "distillation_loss",
        "accuracy",
        "val_loss",
        "val_student_loss",
        "val_distillation_loss",
        "val_accuracy",
    } <= set(history)
    assert history["loss"][-1] < 0.8 * history["loss"][0]
    for before, after in zip(teacher_weights, teacher.get_weights()):
        assert np.array_equal(before, after)
    assert any(not np.array_equal(b, a) for b, a in zip(student_weights, student.get_weights()))
    assert not teacher.trainable
    assert len(distiller.trainable_weights) == len(student.trainable_weights)


def test_distiller_behaves_as_the_student(teacher, student, data):
    x, _ = data
    distiller = compiled(Distiller(student=student, teacher=teacher))
    np.testing.assert_allclose(
        distiller.predict(x, verbose=0), student.predict(x, verbose=0), rtol=1e-6
    )
    np.testing.assert_allclose(np.asarray(distiller(x[:4])), np.asarray(student(x[:4])), rtol=1e-6)


def test_gradient_step_matches_numpy_gradient(teacher, data):
    # One SGD step on a linear student: W <- W - lr * dL/dW, with dL/dW from NumPy.
    x, y = data
    keras.utils.set_random_seed(5)
    student = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(NUM_CLASSES)])
    kernel, bias = [w.astype(np.float64) for w in student.get_weights()]
    t = predictions(teacher, x)
    s = x.astype(np.float64) @ kernel + bias
    p_t = np.exp(np_log_softmax(t / TEMPERATURE))
    p_s_t = np.exp(np_log_softmax(s / TEMPERATURE))
    one_hot = np.eye(NUM_CLASSES)[y]
    d_logits = (1 - ALPHA) * (np.exp(np_log_softmax(s)) - one_hot) + ALPHA * TEMPERATURE * (
        p_s_t - p_t
    )
    d_logits /= len(y)
    distiller = compiled(Distiller(student=student, teacher=teacher))
    distiller.fit(x, y, batch_size=len(y), epochs=1, shuffle=False, verbose=0)
    new_kernel, new_bias = student.get_weights()
    np.testing.assert_allclose(
        new_kernel, kernel - 0.1 * x.T.astype(np.float64) @ d_logits, atol=1e-5
    )
    np.testing.assert_allclose(new_bias, bias - 0.1 * d_logits.sum(0), atol=1e-5)


def test_keras_io_form_weighs_the_student_loss_with_alpha(teacher, student, data):
    x, y = data
    distiller = Distiller(student=student, teacher=teacher)
    distiller.compile(
        optimizer=keras.optimizers.Adam(),
        metrics=[keras.metrics.SparseCategoricalAccuracy()],
        student_loss_fn=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        distillation_loss_fn=keras.losses.KLDivergence(),
        alpha=0.1,
        temperature=10,
    )
    assert distiller.convention == "keras_io"
    t, s = predictions(teacher, x), predictions(student, x)
    hard = -np_log_softmax(s)[np.arange(len(y)), y].mean()
    eps = 1e-7  # keras.losses.KLDivergence clips both distributions to [eps, 1].
    p_t = np.clip(np.exp(np_log_softmax(t / 10)), eps, 1)
    p_s = np.clip(np.exp(np_log_softmax(s / 10)), eps, 1)
    soft = (p_t * np.log(p_t / p_s)).sum(-1).mean() * 100
    got = evaluate(distiller, x, y)
    np.testing.assert_allclose(got["student_loss"], hard, rtol=1e-5)
    np.testing.assert_allclose(got["distillation_loss"], soft, rtol=1e-4)
    np.testing.assert_allclose(got["loss"], 0.1 * hard + 0.9 * soft, rtol=1e-4)
    history = distiller.fit(x, y, epochs=3, batch_size=32, verbose=0).history
    assert "sparse_categorical_accuracy" in history
    assert history["loss"][-1] < history["loss"][0]


def test_keras_io_form_defaults(teacher, student):
    distiller = Distiller(student=student, teacher=teacher)
    distiller.compile(optimizer="adam", distillation_loss_fn=keras.losses.KLDivergence())
    assert (distiller.alpha, distiller.temperature) == pytest.approx((0.1, 3.0))
    distiller.compile(optimizer="adam")
    assert distiller.convention == "hinton"
    assert (distiller.alpha, distiller.temperature) == pytest.approx((0.5, 4.0))


def test_probability_teacher_declared_as_such_gives_the_logit_loss(teacher, student, data):
    x, y = data
    probabilities = keras.Model(teacher.inputs[0], keras.layers.Softmax()(teacher.outputs[0]))
    with_logits = evaluate(compiled(Distiller(student=student, teacher=teacher)), x, y)
    distiller = compiled(
        Distiller(student=student, teacher=probabilities, teacher_from_logits=False)
    )
    assert_components(evaluate(distiller, x, y), with_logits)


def test_probability_teacher_declared_as_logits_is_reported(teacher, student, data):
    x, y = data
    probabilities = keras.Model(teacher.inputs[0], keras.layers.Softmax()(teacher.outputs[0]))
    distiller = compiled(Distiller(student=student, teacher=probabilities))
    with pytest.raises(ValueError) as error:
        distiller.fit(x, y, epochs=1, verbose=0)
    assert_message(
        error,
        "The teacher returns probabilities",
        "Pass `teacher_from_logits=False`",
        "Received: teacher_from_logits=True",
    )


def multi_output_student():
    keras.utils.set_random_seed(4)
    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    return keras.Model(
        inputs,
        {
            "aux": keras.layers.Dense(1, name="aux")(hidden),
            "classes": keras.layers.Dense(NUM_CLASSES, name="classes")(hidden),
        },
    )


def test_multi_output_student_distils_the_named_output(teacher, data):
    x, y = data
    student = multi_output_student()
    distiller = compiled(Distiller(student=student, teacher=teacher, student_output="classes"))
    s = student.predict(x, verbose=0)["classes"].astype(np.float64)
    expected = np_components(predictions(teacher, x), s, y, ALPHA, TEMPERATURE)
    labels = {"aux": np.zeros((len(y), 1), "float32"), "classes": y}
    assert_components(evaluate(distiller, x, labels), expected)
    history = distiller.fit(x, labels, epochs=2, batch_size=32, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]


def test_multi_output_student_without_a_name_is_an_error(teacher):
    with pytest.raises(ValueError) as error:
        Distiller(student=multi_output_student(), teacher=teacher)
    assert "name the one to distil with `student_output=`. Received: student_output=None" in str(
        error.value
    )


@pytest.mark.parametrize("distillation_loss", ["kl", "soft_ce", "mse", "dkd"])
def test_every_named_loss_trains(teacher, student, data, distillation_loss):
    x, y = data
    distiller = compiled(
        Distiller(student=student, teacher=teacher), distillation_loss=distillation_loss
    )
    history = distiller.fit(x, y, epochs=3, batch_size=32, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    assert history["distillation_loss"][-1] < history["distillation_loss"][0]


def test_xla_and_plain_steps_agree(trained_teacher, data):
    x, y = data
    final_weights = []
    for jit_compile in (False, True):
        teacher = keras.models.clone_model(trained_teacher)
        teacher.set_weights(trained_teacher.get_weights())
        student = make_mlp(8, "student", seed=2)
        distiller = compiled(Distiller(student=student, teacher=teacher), jit_compile=jit_compile)
        distiller.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0)
        final_weights.append(student.get_weights())
    for plain, xla in zip(*final_weights):
        np.testing.assert_allclose(plain, xla, rtol=1e-4, atol=1e-5)


def test_alpha_and_temperature_can_change_between_steps(teacher, student, data):
    x, y = data
    distiller = compiled(Distiller(student=student, teacher=teacher))
    distiller.fit(x, y, epochs=1, verbose=0)
    distiller.alpha, distiller.temperature = 0.2, 1.5
    expected = np_components(predictions(teacher, x), predictions(student, x), y, 0.2, 1.5)
    assert_components(evaluate(distiller, x, y), expected)


def test_regularization_losses_of_the_student_join_the_total(teacher, data):
    x, y = data
    keras.utils.set_random_seed(7)
    student = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(NUM_CLASSES, kernel_regularizer=keras.regularizers.L2(0.5)),
        ]
    )
    distiller = compiled(Distiller(student=student, teacher=teacher))
    expected = np_components(
        predictions(teacher, x), predictions(student, x), y, ALPHA, TEMPERATURE
    )
    penalty = 0.5 * np.sum(student.get_weights()[0].astype(np.float64) ** 2)
    got = evaluate(distiller, x, y)
    np.testing.assert_allclose(got["loss"], expected["loss"] + penalty, rtol=1e-5)
    np.testing.assert_allclose(got["student_loss"], expected["student_loss"], rtol=1e-5)


def test_a_refused_teacher_stays_refused_on_the_next_fit(teacher, student, data):
    x, y = data
    probabilities = keras.Model(teacher.inputs[0], keras.layers.Softmax()(teacher.outputs[0]))
    distiller = compiled(Distiller(student=student, teacher=probabilities))
    for _ in range(2):
        with pytest.raises(ValueError, match=r"The teacher returns probabilities"):
            distiller.fit(x, y, epochs=1, verbose=0)


@pytest.mark.parametrize("precision", ["float32", "mixed_float16"])
def test_fit_traces_each_step_once(teacher, data, precision):
    """Adam's moments, the loss scale, the adapter and the metrics exist before the trace."""
    x, y = data
    keras.mixed_precision.set_global_policy(precision)
    try:
        student = make_mlp(8, "student", seed=2)
        distiller = Distiller(
            student=student,
            teacher=teacher,
            feature_matches=[FeatureMatch("student_hidden", "teacher_hidden", loss="mse")],
        )
        distiller.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
        train_traces = calls_of(distiller, "train_step")
        test_traces = calls_of(distiller, "test_step")
        distiller.fit(x, y, epochs=2, batch_size=32, validation_data=(x, y), verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    (adapter,) = distiller.adapters.values()
    assert adapter.built
    assert (len(train_traces), len(test_traces)) == (1, 1)
