"""`compress` runs every stage's real file through LiteRT, and rolls back a stage that loses."""

import numpy as np
import pytest
from helpers import make_data

from keras_distill._clone import clone_with_weights
from keras_distill.compression.chain import compress
from keras_distill.compression.file_check import tflite_ops
from keras_distill.compression.litert import run_tflite


@pytest.fixture(scope="module")
def splits():
    return make_data(256, seed=11), make_data(128, seed=12)


@pytest.fixture
def student(trained_teacher):
    """A trainable copy of the trained teacher (other tests' Distillers freeze the teacher)."""
    copy = clone_with_weights(trained_teacher)
    for layer in copy.layers:  # Keras 3 clones keep the frozen layers of a frozen model.
        layer.trainable = True
    return copy


def test_every_file_is_run_by_litert_and_measured(tmp_path, student, trained_teacher, splits):
    (x, y), (x_test, y_test) = splits
    report = compress(
        student,
        x,
        y,
        x_test,
        y_test,
        teacher=trained_teacher,
        stages=["tflite"],
        output_dir=tmp_path,
        plot=False,
    )
    teacher_top1 = np.asarray(trained_teacher(x_test)).argmax(1)
    for row in report.rows:
        top1 = run_tflite(row["tflite_path"], x_test).argmax(1)
        assert row["file_accuracy"] == pytest.approx(np.mean(top1 == y_test))
        assert row["file_teacher_agreement"] == pytest.approx(np.mean(top1 == teacher_top1))
        assert row["ops"] == sorted(set(tflite_ops(row["tflite_path"])))
        assert "FULLY_CONNECTED" in row["ops"] and row["flex_ops"] == []
        assert row["latency_ms"] > 0 and row["latency_ms_2_threads"] > 0
    assert "QUANTIZE" in report["tflite"]["ops"]  # the int8 file
    assert report["tflite"]["rolled_back"] is False
    assert "Flex ops" in str(report) and "none" in str(report)


def test_a_stage_that_loses_more_than_allowed_is_rolled_back(
    tmp_path, student, trained_teacher, splits
):
    (x, y), (x_test, y_test) = splits
    # A learning rate of 50 wrecks the distilled copy: far more than 0.1 is lost.
    report = compress(
        student,
        x,
        y,
        x_test,
        y_test,
        teacher=trained_teacher,
        stages=["distill", "tflite"],
        output_dir=tmp_path,
        distill_epochs=1,
        learning_rate=50.0,
        plot=False,
        max_accuracy_drop=0.1,
    )
    assert report["input"]["file_accuracy"] - report["distill"]["file_accuracy"] > 0.1
    assert report["distill"]["rolled_back"] is True
    assert "distill" not in report.models
    # The int8 file comes from the input model, as if the stage had not run.
    assert report["tflite"]["rolled_back"] is False
    assert report["tflite"]["accuracy"] >= report["input"]["file_accuracy"] - 0.05
    assert report.settings["max_accuracy_drop"] == 0.1


@pytest.mark.parametrize("drop", [-0.1, "1%", float("nan")])
def test_max_accuracy_drop_must_be_a_number_at_least_zero(tmp_path, splits, trained_teacher, drop):
    (x, y), (x_test, y_test) = splits
    with pytest.raises(ValueError, match=r"`max_accuracy_drop` must be a number >= 0"):
        compress(
            trained_teacher,
            x,
            y,
            x_test,
            y_test,
            stages=["tflite"],
            output_dir=tmp_path,
            max_accuracy_drop=drop,
        )
