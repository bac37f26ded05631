import re

import numpy as np
import pytest

from keras_distill import _checks
from keras_distill._keras import keras


@pytest.mark.parametrize("value", [1, 7, np.int64(3)])
def test_check_int_accepts_integers(value):
    assert _checks.check_int("epochs", value) == int(value)


@pytest.mark.parametrize("value", [0, -1, 2.0, True, "3", None])
def test_check_int_refuses_the_rest(value):
    with pytest.raises(ValueError) as error:
        _checks.check_int("epochs", value)
    assert str(error.value) == f"`epochs` must be an integer >= 1. Received: epochs={value!r}"


def test_check_int_minimum():
    assert _checks.check_int("repeats", 0, minimum=0) == 0
    with pytest.raises(
        ValueError, match=r"`repeats` must be an integer >= 0\. Received: repeats=-1"
    ):
        _checks.check_int("repeats", -1, minimum=0)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -0.5, "1"])
def test_check_number_refuses_non_finite_and_negative(value):
    with pytest.raises(ValueError) as error:
        _checks.check_number("noise_std", value, minimum=0)
    assert str(error.value) == (f"`noise_std` must be a number >= 0. Received: noise_std={value!r}")


@pytest.mark.parametrize(
    "value,bounds,expected",
    [
        (1.5, dict(minimum=0.0, maximum=1.0), "a number in [0.0, 1.0]"),
        (0.0, dict(minimum=0.0, open_minimum=True), "a number > 0.0"),
        (3, dict(maximum=2, integer=True), "an integer <= 2"),
        (True, dict(minimum=0, integer=True), "an integer >= 0"),
        (2.0, dict(minimum=1, integer=True), "an integer >= 1"),
        (1, dict(minimum=0, maximum=1, open_maximum=True), "a number in [0, 1)"),
        (0, dict(minimum=0, maximum=1, open_minimum=True), "a number in (0, 1]"),
        (5, dict(maximum=5, open_maximum=True), "a number < 5"),
    ],
)
def test_check_number_bounds(value, bounds, expected):
    with pytest.raises(ValueError, match=rf"`x` must be {re.escape(expected)}\. Received: x="):
        _checks.check_number("x", value, **bounds)


def test_check_number_accepts_the_bounds_themselves():
    assert _checks.check_number("x", 1.0, minimum=0.0, maximum=1.0) == 1.0
    assert _checks.check_number("x", 0.0, minimum=0.0, maximum=1.0) == 0.0
    assert _checks.check_number("x", 1e-9, minimum=0.0, open_minimum=True) == 1e-9
    assert _checks.check_number("x", 0, minimum=0, maximum=1, open_maximum=True) == 0


def test_check_choice_lists_the_choices():
    with pytest.raises(ValueError) as error:
        _checks.check_choice("mode", "int4", ("int8", "float16"))
    assert str(error.value) == "`mode` must be one of ['int8', 'float16']. Received: mode='int4'"


def test_check_path_ignores_case_and_names_the_argument():
    assert _checks.check_path("out", "model.KERAS", ".keras") == "model.KERAS"
    with pytest.raises(ValueError) as error:
        _checks.check_path("out", "model.h5", (".keras",))
    assert str(error.value) == (
        "`out` must be a file path ending in '.keras'. Received: out='model.h5'"
    )
    with pytest.raises(ValueError, match=r"Received: out=3"):
        _checks.check_path("out", 3, ".keras")


def test_check_existing_file_says_folder_or_missing(tmp_path):
    with pytest.raises(ValueError, match="; it is a folder. Received: data="):
        _checks.check_existing_file("data", str(tmp_path), "an existing `.npz` file")
    with pytest.raises(ValueError, match="; no such file. Received: data="):
        _checks.check_existing_file("data", str(tmp_path / "x.npz"), "an existing `.npz` file")


def test_first_line():
    assert _checks.first_line(ValueError("one\ntwo")) == "one"
    assert _checks.first_line(KeyError()) == "KeyError"


def test_check_model_requires_a_built_model_of_this_generation():
    with pytest.raises(
        ValueError,
        match=r"`student` must be a keras.Model .*Received: "
        r"student=builtins.int",
    ):
        _checks.check_model("student", 3)
    unbuilt = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"`student` is not built"):
        _checks.check_model("student", unbuilt)
