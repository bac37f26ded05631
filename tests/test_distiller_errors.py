import pytest

from helpers import make_mlp
from keras_distill import Distiller
from keras_distill._keras import keras


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
    with pytest.raises(ValueError, match=r"`teacher` must be a keras.Model of the active Keras .*Received: teacher=builtins.str"):
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
    student = keras.Model(inputs, {"a": keras.layers.Dense(3)(hidden), "b": keras.layers.Dense(3)(hidden)})
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
        "One-hot labels need 3 columns, one per class of the models. Received: y with shape (128, 5)"
    )


def test_nan_inputs_are_found_before_training(ready, data):
    x, y = data
    bad = x.copy()
    bad[9, 2] = float("nan")
    weights = [w.copy() for w in ready.student.get_weights()]
    with pytest.raises(ValueError) as error:
        ready.fit(bad, y, verbose=0)
    assert str(error.value).startswith(
        "`x` contains NaN or Inf values (1 of 128 examples, the first at index 9). Received: x[9] with ["
    )
    assert all((a == b).all() for a, b in zip(weights, ready.student.get_weights()))


def test_non_finite_teacher_outputs(student, data):
    x, y = data
    inputs = keras.Input((8,))
    teacher = keras.Model(inputs, keras.layers.Dense(3, bias_initializer=keras.initializers.Constant(float("inf")))(inputs))
    distiller = Distiller(student=student, teacher=teacher)
    distiller.compile(optimizer="adam")
    with pytest.raises(ValueError, match=r"^`teacher outputs` contains NaN or Inf values \(64 of 64 examples"):
        distiller.fit(x, y, verbose=0)


def test_length_mismatch(ready, data):
    x, y = data
    with pytest.raises(ValueError) as error:
        ready.fit(x, y[:-1], verbose=0)
    assert str(error.value) == (
        "`x` and `y` must hold the same number of examples. Received: x with [128] and y with [127] examples"
    )


def test_input_shape_mismatch(ready, data):
    import numpy as np

    x, y = data
    with pytest.raises(ValueError) as error:
        ready.fit(np.zeros((16, 5), "float32"), y[:16], verbose=0)
    message = str(error.value)
    assert message.startswith("The teacher cannot run on `x` (")
    assert message.endswith("Expected inputs of shape [(None, 8)]. Received: x with shape [(16, 5)]")


def test_empty_data(ready):
    import numpy as np
    import tensorflow as tf

    with pytest.raises(ValueError) as error:
        ready.fit(np.zeros((0, 8), "float32"), np.zeros((0,), "int32"), verbose=0)
    assert str(error.value) == "`x` is empty: there is nothing to train on. Received: x with 0 examples"
    empty = tf.data.Dataset.from_tensor_slices((np.zeros((0, 8), "float32"), np.zeros((0,), "int32"))).batch(4)
    with pytest.raises(ValueError, match=r"^The dataset is empty: there is nothing to train on"):
        ready.fit(empty, verbose=0)
