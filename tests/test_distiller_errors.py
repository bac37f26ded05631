import numpy as np
import pytest
import tensorflow as tf
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
    assert str(error.value) == f"`alpha` must be a number in [0, 1]. Received: alpha={alpha!r}"


@pytest.mark.parametrize("temperature", [0, -1.0, float("inf")])
def test_temperature_must_be_positive(distiller, temperature):
    with pytest.raises(ValueError) as error:
        distiller.compile(optimizer="adam", temperature=temperature)
    assert str(error.value) == (
        f"`temperature` must be a finite number > 0. Received: temperature={temperature!r}"
    )


def test_assigning_a_bad_temperature_later_is_refused(distiller):
    distiller.compile(optimizer="adam")
    with pytest.raises(ValueError, match=r"Received: temperature=0"):
        distiller.temperature = 0


def test_class_count_mismatch(teacher):
    student = make_mlp(8, "wide_student", num_classes=12)
    with pytest.raises(ValueError) as error:
        Distiller(student=student, teacher=teacher)
    assert str(error.value) == (
        "The student's and the teacher's distilled outputs must have the same number of classes "
        "to be compared (12 vs 3). Received: student output shape=(None, 12), "
        "teacher output shape=(None, 3)"
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
    assert str(error.value) == (
        "`student` and `teacher` must be different models: the teacher is frozen while the "
        "student trains. Received: the same object 'teacher' as both"
    )


def test_unbuilt_student(teacher):
    student = keras.Sequential([keras.layers.Dense(3)], name="lazy")
    with pytest.raises(ValueError) as error:
        Distiller(student=student, teacher=teacher)
    assert str(error.value) == (
        "`student` is not built, so its input and output shapes are unknown. Build it first, "
        "e.g. with a `keras.Input` layer, `student.build(input_shape)` or by calling it on a "
        "batch. Received: student='lazy' (unbuilt)"
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
    assert str(error.value) == (
        "`teacher_from_logits` must be True (the teacher returns logits) or False "
        "(probabilities). Received: teacher_from_logits='softmax'"
    )


def test_deprecated_teacher_outputs_still_works_with_a_warning(teacher, student):
    with pytest.warns(DeprecationWarning, match="`teacher_outputs` is deprecated"):
        distiller = Distiller(student=student, teacher=teacher, teacher_outputs="probabilities")
    assert distiller.teacher_from_logits is False
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError) as error:
        Distiller(student=student, teacher=teacher, teacher_outputs="softmax")
    assert str(error.value) == (
        "`teacher_outputs` must be one of ['logits', 'probabilities']. "
        "Received: teacher_outputs='softmax'"
    )


def test_compile_loss_is_refused(distiller):
    with pytest.raises(ValueError) as error:
        distiller.compile(optimizer="adam", loss="mse")
    assert str(error.value) == (
        "The Distiller computes its own loss; choose it with `distillation_loss`, `alpha` and "
        "`temperature`. Received: loss='mse'"
    )


def test_unknown_output_name(teacher):
    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(4)(inputs)
    student = keras.Model(
        inputs, {"a": keras.layers.Dense(3)(hidden), "b": keras.layers.Dense(3)(hidden)}
    )
    with pytest.raises(ValueError) as error:
        Distiller(student=student, teacher=teacher, student_output="c")
    assert str(error.value) == (
        "No output 'c' in the student's outputs. Existing outputs are: ['a', 'b']. "
        "Received: student_output='c'"
    )


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
    assert str(error.value) == (
        "Sparse labels must be class indices in [0, 2] (or -1 for a missing label). "
        "Received: y with values from 0 to 7"
    )


def test_one_hot_width_mismatch(ready, data):
    import numpy as np

    x, y = data
    with pytest.raises(ValueError) as error:
        ready.fit(x, np.eye(5, dtype="float32")[y], verbose=0)
    assert str(error.value) == (
        "One-hot labels need 3 columns, one per class of the models. Received: y with shape "
        "(128, 5)"
    )


def test_nan_inputs_are_found_before_training(ready, data):
    x, y = data
    bad = x.copy()
    bad[9, 2] = float("nan")
    weights = [w.copy() for w in ready.student.get_weights()]
    with pytest.raises(ValueError) as error:
        ready.fit(bad, y, verbose=0)
    assert str(error.value).startswith(
        "`x` contains NaN or Inf values (1 of 128 examples, the first at index 9). Received: "
        "x[9] with ["
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
    assert str(error.value) == (
        "`x` and `y` must hold the same number of examples. Received: x with [128] and y with "
        "[127] examples"
    )


def test_input_shape_mismatch(ready, data):
    import numpy as np

    x, y = data
    with pytest.raises(ValueError) as error:
        ready.fit(np.zeros((16, 5), "float32"), y[:16], verbose=0)
    message = str(error.value)
    assert message.startswith("The teacher cannot run on `x` (")
    assert message.endswith(
        "Expected inputs of shape [(None, 8)]. Received: x with shape [(16, 5)]"
    )


def test_empty_data(ready):
    import numpy as np
    import tensorflow as tf

    with pytest.raises(ValueError) as error:
        ready.fit(np.zeros((0, 8), "float32"), np.zeros((0,), "int32"), verbose=0)
    assert (
        str(error.value)
        == "`x` is empty: there is nothing to train on. Received: x with 0 examples"
    )
    empty = tf.data.Dataset.from_tensor_slices(
        (np.zeros((0, 8), "float32"), np.zeros((0,), "int32"))
    ).batch(4)
    with pytest.raises(ValueError, match=r"^The dataset is empty: there is nothing to train on"):
        ready.fit(empty, verbose=0)


def test_teacher_declared_probabilities_that_returns_logits(teacher, student, data):
    x, y = data
    distiller = compiled(student, teacher, teacher_from_logits=False)
    message = fit_error(distiller, x, y, verbose=0)
    assert message.startswith(
        "The Distiller was told the teacher returns probabilities, but its outputs are not rows "
        "in [0, 1] that sum to 1 (they look like logits). Pass `teacher_from_logits=True`, or "
        "end the teacher with a softmax. Received: teacher_from_logits=False with values in ["
    )


def test_student_ending_in_softmax(teacher, data):
    x, y = data
    student = make_mlp(8, "soft_student", seed=2, final_activation="softmax")
    assert fit_error(compiled(student, teacher), x, y, verbose=0) == (
        "The student's last layer 'soft_student_logits' applies a softmax, and the Distiller "
        "applies its own to the logits: it would train on a double softmax. Remove it (use "
        "`activation=None`; apply the softmax after training if you need probabilities). "
        "Received: student='soft_student'"
    )


def test_student_returning_probabilities_is_found_on_the_first_batch(teacher, data):
    x, y = data
    inputs = keras.Input((8,))
    student = keras.Model(inputs, keras.layers.Softmax()(keras.layers.Dense(3)(inputs) * 1.0))
    student = keras.Model(inputs, student(inputs) + 0.0, name="wrapped")
    assert fit_error(compiled(student, teacher), x, y, verbose=0) == (
        "The student returns probabilities (every row is in [0, 1] and sums to 1): it ends in a "
        "softmax, and the Distiller would apply a second one. Remove the student's final softmax "
        "(use `activation=None`; apply the softmax after training if you need probabilities). "
        "Received: student outputs that sum to 1 per row"
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
    assert fit_error(compiled(student, teacher), x, y, verbose=0) == (
        "`student` has no trainable weights, so training cannot change it. Unfreeze it "
        "(`student.trainable = True`) before `fit`. Received: student='student' with "
        "trainable=False"
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
    "make_arguments, expected",
    [
        (
            float_label,
            "Sparse labels must be whole class indices in [0, 2] (or -1 for a missing label); 1 "
            "label "
            "is not, e.g. 1.7. Round or remap them. Received: y=1.7",
        ),
        (
            string_labels,
            "Labels must be numbers: class indices 0..2 or one-hot rows. Map names to indices "
            "first "
            "(e.g. with `np.unique(y, return_inverse=True)`). Received: y with dtype <U3 starting "
            "['dog', 'cat', 'cat']",
        ),
        (
            class_weight_without_labels,
            "`class_weight` weighs examples by their label, but the data has no labels (x only). "
            "Pass labels `y`, or drop `class_weight`. Received: class_weight={0: 1.0, 1: 2.0, "
            "2: 1.0} "
            "with y=None",
        ),
    ],
)
def test_bad_labels_are_named(ready, data, make_arguments, expected):
    args, kwargs = make_arguments(*data)
    assert fit_error(ready, *args, verbose=0, **kwargs) == expected


@pytest.mark.parametrize(
    "ragged",
    [
        lambda: [[0.0] * 8, [0.0] * 5],
        lambda: tf.ragged.constant([[0.0] * 8, [0.0] * 5]),
    ],
)
def test_ragged_x(ready, ragged):
    x = ragged()
    assert fit_error(ready, x, np.array([0, 1]), verbose=0) == (
        "`x` is ragged (its rows have different lengths), but the models take one fixed shape. "
        "Pad the rows to one length (e.g. `keras.utils.pad_sequences`) or use `.to_tensor()`. "
        f"Received: x of type {type(x).__name__} with ragged rows"
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
    assert fit_error(distiller, tf.data.Dataset.from_tensor_slices(x).batch(32), verbose=0) == (
        "Metrics compare predictions with labels, but the data has no labels (x only). Compile "
        "without `metrics`, or pass labels `y`. Received: compiled metrics with y=None"
    )
