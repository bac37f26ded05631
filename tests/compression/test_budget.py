"""`search_budget`: the most accurate channel-pruned file within a size or latency budget."""

import os

import numpy as np
import pytest
from helpers import assert_message
from helpers import make_data
from helpers import make_mlp

from keras_distill._keras import keras
from keras_distill.compression import search_budget
from keras_distill.compression.litert import run_tflite


@pytest.fixture(scope="module")
def wide_student():
    (x, y), test = make_data(256, seed=21), make_data(128, seed=22)
    student = make_mlp(256, "wide", seed=3)
    student.compile(
        keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    student.fit(x, y, epochs=5, batch_size=32, verbose=0)
    return student, (x, y), test


def test_the_most_accurate_file_within_the_size_budget_is_chosen(tmp_path, wide_student):
    student, (x, y), (x_test, y_test) = wide_student
    # float32 files: 256 hidden units about 14 KiB, 128 about 8 KiB.
    found = search_budget(
        student,
        x,
        y,
        x_test,
        y_test,
        target_size_kib=11,
        fractions=(1.0, 0.5),
        quantizations=(None,),
        recover_epochs=1,
        output_dir=tmp_path,
    )
    rows = found["candidates"]
    assert [(r["fraction"], r["meets"]) for r in rows] == [(1.0, False), (0.5, True)]
    for row in rows:
        assert row["size_kib"] == os.path.getsize(row["path"]) / 1024
        top1 = run_tflite(row["path"], x_test).argmax(1)
        assert row["accuracy"] == pytest.approx(np.mean(top1 == y_test))
    assert found["choice"] is rows[1] and found["path"] == rows[1]["path"]
    assert found["model"].get_layer("wide_hidden").units == 128
    assert student.get_layer("wide_hidden").units == 256


def test_a_budget_no_candidate_meets_is_refused_with_the_closest(tmp_path, wide_student):
    student, (x, y), (x_test, y_test) = wide_student
    with pytest.raises(ValueError) as error:
        search_budget(
            student,
            x,
            y,
            x_test,
            y_test,
            target_size_kib=0.5,
            fractions=(0.5,),
            quantizations=(None,),
            recover_epochs=0,
            output_dir=tmp_path,
        )
    assert_message(
        error,
        "No candidate meets the budget",
        "0.5 of the channels in float32",
        "missed target_size_kib",
        "Loosen a target",
        "Received: target_size_kib=0.5",
    )


def test_unknown_quantization_is_refused(tmp_path, wide_student):
    student, (x, y), (x_test, y_test) = wide_student
    with pytest.raises(ValueError, match=r"`quantizations` must hold values from \[None, 'int8'\]"):
        search_budget(student, x, y, x_test, y_test, quantizations=("int4",), output_dir=tmp_path)
