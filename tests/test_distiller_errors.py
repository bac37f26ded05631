import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_message
from helpers import make_mlp

from keras_distill import Distiller
from keras_distill._keras import GENERATION
from keras_distill._keras import keras


def compiled(student, teacher, **kwargs):
    distiller = Distiller(student=student, teacher=teacher, **kwargs)
    distiller.compile(optimizer="adam")
    return distiller


def fit_error(distiller, *args, **kwargs):
    """The message of the `ValueError` that `distiller.fit(*args, **kwargs)` raises."""
    with pytest.raises(ValueError) as error:
        distiller.fit(*args, **kwargs)
    return str(error.value)


@pytest.fixture
def distiller(teacher, student):
    return Distiller(student=student, teacher=teacher)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan"), "0.5", True])
def test_alpha_outside_unit_interval(distiller, alpha):
    with pytest.raises(ValueError) as error:
        distiller.compile(optimizer="adam", alpha=alpha)
    assert_message(error, "`alpha`", "a number in [0, 1]", f"Received: alpha={alpha!r}")


@pytest.mark.parametrize("temperature", [0, -1.0, float("inf")])
def test_temperature_must_be_positive(distiller, temperature):
    with pytest.raises(ValueError) as error:
        distiller.compile(optimizer="adam", temperature=temperature)
    assert_message(
        error, "`temperature`", "a finite number > 0", f"Received: temperature={temperature!r}"
    )


def test_assigning_a_bad_temperature_later_is_refused(distiller):
    distiller.compile(optimizer="adam")
    with pytest.raises(ValueError, match=r"Received: temperature=0"):
        distiller.temperature = 0


def test_class_count_mismatch(teacher):
    student = make_mlp(8, "wide_student", num_classes=12)
    with pytest.raises(ValueError) as error:
        Distiller(student=student, teacher=teacher)
    assert_message(
        error,
        "same number of classes",
        "(12 vs 3)",
        "Received: student output shape=(None, 12), teacher output shape=(None, 3)",
    )


def test_class_count_mismatch_of_subclassed_models_is_found_on_the_first_batch(teacher, data):
    x, y = data

    class Student(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(12)

        def call(self, inputs):
            return self.dense(inputs)

    student = Student()
    student(x[:1])
    distiller = Distiller(student=student, teacher=teacher)
    distiller.compile(optimizer="adam")
    with pytest.raises(ValueError, match=r"\(12 vs 3\)"):
        distiller.fit(x, y, verbose=0)


def test_same_model_as_teacher_and_student(teacher):
    with pytest.raises(ValueError) as error:
        Distiller(student=teacher, teacher=teacher)
    assert_message(
        error,
        "`student` and `teacher` must be different models",
        "Received: the same object 'teacher' as both",
    )


def test_unbuilt_student(teacher):
    student = keras.Sequential([keras.layers.Dense(3)], name="lazy")
    with pytest.raises(ValueError) as error:
        Distiller(student=student, teacher=teacher)
    assert_message(
        error, "`student` is not built", "Build it first", "Received: student='lazy' (unbuilt)"
    )


def test_not_a_model(student):
    with pytest.raises(
        ValueError,
        match=r"`teacher` must be a keras.Model of the active Keras .*Received: "
        r"teacher=builtins.str",
    ):
        Distiller(student=student, teacher="teacher.keras")


def test_unknown_loss_name(distiller):
    with pytest.raises(ValueError) as error:
        distiller.compile(optimizer="adam", distillation_loss="kld")
    assert str(error.value).startswith("Unknown distillation loss: 'kld'. Valid names are: [")
    assert str(error.value).endswith("Received: identifier='kld'")


def test_teacher_from_logits_must_be_a_bool(teacher, student):
    with pytest.raises(ValueError) as error:
        Distiller(student=student, teacher=teacher, teacher_from_logits="softmax")
    assert_message(
        error,
        "`teacher_from_logits` must be True",
        "False",
        "Received: teacher_from_logits='softmax'",
    )


def test_deprecated_teacher_outputs_still_works_with_a_warning(teacher, student):
    with pytest.warns(DeprecationWarning, match="`teacher_outputs` is deprecated"):
        distiller = Distiller(student=student, teacher=teacher, teacher_outputs="probabilities")
    assert distiller.teacher_from_logits is False
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError) as error:
        Distiller(student=student, teacher=teacher, teacher_outputs="softmax")
    assert_message(
        error,
        "`teacher_outputs`",
        "['logits', 'probabilities']",
        "Received: teacher_outputs='softmax'",
    )


def test_compile_loss_is_refused(distiller):
    with pytest.raises(ValueError) as error:
        distiller.compile(optimizer="adam", loss="mse")
    assert_message(error, "its own loss", "`distillation_loss`", "Received: loss='mse'")


def test_unknown_output_name(teacher):
    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(4)(inputs)
    student = keras.Model(
        inputs, {"a": keras.layers.Dense(3)(hidden), "b": keras.layers.Dense(3)(hidden)}
    )
    with pytest.raises(ValueError) as error:
        Distiller(student=student, teacher=teacher, student_output="c")
    assert_message(error, "No output 'c'", "['a', 'b']", "Received: student_output='c'")


@pytest.fixture
def ready(teacher, student):
    distiller = Distiller(student=student, teacher=teacher)
    distiller.compile(optimizer="adam")
    return distiller


def test_labels_out_of_range(ready, data):
    x, y = data
    bad = y.copy()
    bad[5] = 7
    with pytest.raises(ValueError) as error:
        ready.fit(x, bad, verbose=0)
    assert_message(error, "class indices in [0, 2]", "-1", "Received: y with values from 0 to 7")


def test_one_hot_width_mismatch(ready, data):
    import numpy as np

    x, y = data
    with pytest.raises(ValueError) as error:
        ready.fit(x, np.eye(5, dtype="float32")[y], verbose=0)
    assert_message(error, "One-hot labels need 3 columns", "Received: y with shape (128, 5)")


def test_nan_inputs_are_found_before_training(ready, data):
    x, y = data
    bad = x.copy()
    bad[9, 2] = float("nan")
    weights = [w.copy() for w in ready.student.get_weights()]
    with pytest.raises(ValueError) as error:
        ready.fit(bad, y, verbose=0)
    assert_message(
        error,
        "`x` contains NaN or Inf",
        "(1 of 128 examples, the first at index 9)",
        "Received: x[9] with [",
    )
    assert all((a == b).all() for a, b in zip(weights, ready.student.get_weights()))


def test_non_finite_teacher_outputs(student, data):
    x, y = data
    inputs = keras.Input((8,))
    teacher = keras.Model(
        inputs,
        keras.layers.Dense(3, bias_initializer=keras.initializers.Constant(float("inf")))(inputs),
    )
    distiller = Distiller(student=student, teacher=teacher)
    distiller.compile(optimizer="adam")
    with pytest.raises(
        ValueError, match=r"^`teacher outputs` contains NaN or Inf values \(64 of 64 examples"
    ):
        distiller.fit(x, y, verbose=0)


def test_length_mismatch(ready, data):
    x, y = data
    with pytest.raises(ValueError) as error:
        ready.fit(x, y[:-1], verbose=0)
    assert_message(
        error,
        "`x` and `y` must hold the same number of examples",
        "Received: x with [128] and y with [127] examples",
    )


def test_input_shape_mismatch(ready, data):
    import numpy as np

    x, y = data
    with pytest.raises(ValueError) as error:
        ready.fit(np.zeros((16, 5), "float32"), y[:16], verbose=0)
    assert_message(
        error,
        "The teacher cannot run on `x`",
        "inputs of shape [(None, 8)]",
        "Received: x with shape [(16, 5)]",
    )


def test_empty_data(ready):
    import numpy as np
    import tensorflow as tf

    with pytest.raises(ValueError) as error:
        ready.fit(np.zeros((0, 8), "float32"), np.zeros((0,), "int32"), verbose=0)
    assert_message(error, "`x` is empty", "Received: x with 0 examples")
    empty = tf.data.Dataset.from_tensor_slices(
        (np.zeros((0, 8), "float32"), np.zeros((0,), "int32"))
    ).batch(4)
    with pytest.raises(ValueError, match=r"^The dataset is empty: there is nothing to train on"):
        ready.fit(empty, verbose=0)


def test_teacher_declared_probabilities_that_returns_logits(teacher, student, data):
    x, y = data
    distiller = compiled(student, teacher, teacher_from_logits=False)
    message = fit_error(distiller, x, y, verbose=0)
    assert_message(
        message,
        "they look like logits",
        "Pass `teacher_from_logits=True`",
        "Received: teacher_from_logits=False with values in [",
    )


def test_student_ending_in_softmax(teacher, data):
    x, y = data
    student = make_mlp(8, "soft_student", seed=2, final_activation="softmax")
    assert_message(
        fit_error(compiled(student, teacher), x, y, verbose=0),
        "'soft_student_logits' applies a softmax",
        "`activation=None`",
        "Received: student='soft_student'",
    )


def test_student_returning_probabilities_is_found_on_the_first_batch(teacher, data):
    x, y = data
    inputs = keras.Input((8,))
    student = keras.Model(inputs, keras.layers.Softmax()(keras.layers.Dense(3)(inputs) * 1.0))
    student = keras.Model(inputs, student(inputs) + 0.0, name="wrapped")
    assert_message(
        fit_error(compiled(student, teacher), x, y, verbose=0),
        "The student returns probabilities",
        "Remove the student's final softmax",
        "`activation=None`",
        "Received: student outputs that sum to 1 per row",
    )


def test_single_logit_binary_models_are_refused():
    teacher = make_mlp(16, "binary_teacher", num_classes=1, seed=1)
    student = make_mlp(8, "binary_student", num_classes=1, seed=2)
    with pytest.raises(ValueError) as error:
        Distiller(student=student, teacher=teacher)
    message = str(error.value)
    assert message.startswith("A model with one output unit (a binary, sigmoid-style classifier) ")
    assert message.endswith(
        "Received: student output shape=(None, 1), teacher output shape=(None, 1)"
    )


def test_frozen_student(teacher, student, data):
    x, y = data
    student.trainable = False
    assert_message(
        fit_error(compiled(student, teacher), x, y, verbose=0),
        "`student` has no trainable weights",
        "`student.trainable = True`",
        "Received: student='student' with trainable=False",
    )


def float_label(x, y):
    labels = y.astype("float32")
    labels[100] = 1.7
    return (x, labels), {}


def string_labels(x, y):
    return (x, np.array(["cat", "dog", "owl"])[y]), {}


def class_weight_without_labels(x, y):
    return (x,), {"class_weight": {0: 1.0, 1: 2.0, 2: 1.0}}


@pytest.mark.parametrize(
    "make_arguments, pieces",
    [
        (
            float_label,
            (
                "whole class indices in [0, 2]",
                "1 label is not, e.g. 1.7",
                "Round or remap them",
                "Received: y=1.7",
            ),
        ),
        (
            string_labels,
            (
                "Labels must be numbers",
                "`np.unique(y, return_inverse=True)`",
                "Received: y with dtype <U3 starting ['dog', 'cat', 'cat']",
            ),
        ),
        (
            class_weight_without_labels,
            (
                "`class_weight`",
                "the data has no labels",
                "Pass labels `y`, or drop `class_weight`",
                "Received: class_weight={0: 1.0, 1: 2.0, 2: 1.0} with y=None",
            ),
        ),
    ],
)
def test_bad_labels_are_named(ready, data, make_arguments, pieces):
    args, kwargs = make_arguments(*data)
    assert_message(fit_error(ready, *args, verbose=0, **kwargs), *pieces)


@pytest.mark.parametrize(
    "ragged",
    [
        lambda: [[0.0] * 8, [0.0] * 5],
        lambda: tf.ragged.constant([[0.0] * 8, [0.0] * 5]),
    ],
)
def test_ragged_x(ready, ragged):
    x = ragged()
    assert_message(
        fit_error(ready, x, np.array([0, 1]), verbose=0),
        "`x` is ragged",
        "`keras.utils.pad_sequences`",
        "`.to_tensor()`",
        f"Received: x of type {type(x).__name__} with ragged rows",
    )


def test_labels_as_a_python_list_train_like_an_array(teacher, student, data):
    x, y = data
    distiller = Distiller(student=student, teacher=teacher)
    distiller.compile(optimizer="adam")
    history = distiller.fit(x, y.tolist(), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_metrics_without_labels(teacher, student, data):
    x, _ = data
    distiller = Distiller(student=student, teacher=teacher)
    distiller.compile(optimizer="adam", metrics=["accuracy"])
    if GENERATION == "tf_keras":  # tf_keras leaves the metrics out of the logs.
        assert "accuracy" not in distiller.fit(x, verbose=0).history
        return
    assert_message(
        fit_error(distiller, tf.data.Dataset.from_tensor_slices(x).batch(32), verbose=0),
        "the data has no labels",
        "Compile without `metrics`, or pass labels `y`",
        "Received: compiled metrics with y=None",
    )
