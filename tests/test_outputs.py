import numpy as np
import pytest
from helpers import assert_message

from keras_distill._keras import keras
from keras_distill._outputs import logits_from
from keras_distill._outputs import select_output
from keras_distill._outputs import static_output_shape


def two_output_model():
    inputs = keras.Input((4,))
    outputs = [
        keras.layers.Dense(3, name="classes")(inputs),
        keras.layers.Dense(1, name="aux")(inputs),
    ]
    return keras.Model(inputs, outputs)


def test_select_by_name_index_or_the_only_one():
    model = two_output_model()
    outputs = ["first", "second"]
    assert select_output(outputs, "classes", model, "teacher") == "first"
    assert select_output(outputs, 1, model, "teacher") == "second"
    assert select_output({"a": 1}, None, model, "teacher") == 1
    assert select_output("single", None, model, "teacher") == "single"


def test_select_errors_name_the_argument():
    model = two_output_model()
    with pytest.raises(ValueError) as error:
        select_output(["a", "b"], None, model, "teacher")
    assert_message(
        error,
        "2 outputs ['classes', 'aux']",
        "`teacher_output=`",
        "Received: teacher_output=None",
    )
    with pytest.raises(
        ValueError,
        match=r"Existing outputs are: \['classes', 'aux'\]. "
        r"Received: student_output='nope'",
    ):
        select_output(["a", "b"], "nope", model, "student")


def test_static_output_shape():
    assert static_output_shape(two_output_model(), "classes", "student") == (None, 3)


def test_logits_from_probabilities_is_the_log():
    probabilities = np.array([[0.5, 0.25, 0.25, 0.0]], np.float32)
    np.testing.assert_allclose(
        logits_from(probabilities, from_logits=False).numpy(),
        np.log(np.maximum(probabilities, 1e-12)),
        rtol=1e-6,
    )
    np.testing.assert_array_equal(
        logits_from(probabilities, from_logits=True).numpy(), probabilities
    )
