import gzip
import json

import numpy as np
import pytest
from helpers import assert_message
from helpers import make_data
from helpers import make_mlp

from keras_distill._keras import IS_LEGACY
from keras_distill.compression.chain import compress
from keras_distill.compression.chain_report import ChainReport
from keras_distill.compression.litert import run_tflite


@pytest.fixture(scope="module")
def splits():
    return make_data(256, seed=11), make_data(128, seed=12)


def _check_common(report, out, x_test, y_test, teacher):
    assert report.rows[0]["stage"] == "input" and report.rows[-1]["stage"] == "tflite"
    final = report["tflite"]
    outputs = run_tflite(final["tflite_path"], x_test)
    assert final["accuracy"] == pytest.approx(np.mean(outputs.argmax(1) == y_test))
    teacher_top1 = np.asarray(teacher(x_test)).argmax(1)
    assert final["teacher_agreement"] == pytest.approx(np.mean(outputs.argmax(1) == teacher_top1))
    for row in report.rows:
        if row["tflite_path"]:
            data = open(row["tflite_path"], "rb").read()
            assert row["tflite_bytes"] == len(data)
            assert row["gzip_bytes"] == len(gzip.compress(data, compresslevel=9, mtime=0))
            assert row["latency_ms"] > 0
    saved = json.load(open(out / "chain_report.json"))
    assert saved == json.loads(report.to_json())
    assert [row["stage"] for row in saved["stages"]] == [row["stage"] for row in report.rows]
    assert open(out / "chain_report.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    table = str(report)
    for row in report.rows:
        assert row["stage"] in table


def test_distill_then_int8_tflite(tmp_path, trained_teacher, splits):
    (x, y), (x_test, y_test) = splits
    student = make_mlp(8, "student", seed=2)
    report = compress(
        student,
        x,
        y,
        x_test,
        y_test,
        teacher=trained_teacher,
        stages=["distill", "tflite"],
        output_dir=tmp_path,
        distill_epochs=3,
        learning_rate=0.01,
    )
    assert [row["stage"] for row in report.rows] == ["input", "distill", "tflite"]
    _check_common(report, tmp_path, x_test, y_test, trained_teacher)
    assert report["distill"]["accuracy"] > report["input"]["accuracy"]
    assert report.export_report.input_dtype == "float32"
    distilled = report.models["distill"]
    accuracy = np.mean(np.asarray(distilled(x_test)).argmax(1) == y_test)
    assert report["distill"]["accuracy"] == pytest.approx(accuracy)
    assert report["tflite"]["accuracy"] >= report["distill"]["accuracy"] - 0.05


def test_full_chain(tmp_path, trained_teacher, splits):
    (x, y), (x_test, y_test) = splits
    report = compress(
        make_mlp(16, "student", seed=2),
        x,
        y,
        x_test,
        y_test,
        teacher=trained_teacher,
        output_dir=tmp_path,
        distill_epochs=2,
        prune_epochs=3,
        qat_epochs=1,
        target_sparsity=0.75,
        learning_rate=0.01,
        batch_size=16,
    )
    assert [row["stage"] for row in report.rows] == ["input", "distill", "prune", "qat", "tflite"]
    _check_common(report, tmp_path, x_test, y_test, trained_teacher)
    kernels = [
        layer.kernel.numpy() for layer in report.models["prune"].layers if hasattr(layer, "kernel")
    ]
    zeros = sum(int(np.sum(k == 0)) for k in kernels) / sum(k.size for k in kernels)
    assert report["prune"]["sparsity"] == pytest.approx(zeros)
    assert zeros == pytest.approx(0.75, abs=0.01)
    assert report["qat"]["sparsity"] == pytest.approx(zeros)  # QAT kept the zeros
    assert report["qat"]["tflite_bytes"] is None
    assert report["prune"]["gzip_bytes"] < report["distill"]["gzip_bytes"]
    assert report.settings["generation"] == ("tf_keras" if IS_LEGACY else "keras3")
    assert report.export_report.top1_agreement >= 0.95


def test_chain_errors(tmp_path, splits):
    (x, y), (x_test, y_test) = splits
    with pytest.raises(ValueError) as info:
        compress(make_mlp(8, "s"), x, y, x_test, y_test, stages=["distill"], output_dir=tmp_path)
    assert_message(
        info,
        "The 'distill' stage needs a trained `teacher`",
        "Pass `teacher=` or leave 'distill' out of `stages`",
        "Received: teacher=None, stages=['distill']",
    )
    with pytest.raises(ValueError) as info:
        compress(make_mlp(8, "s"), x, y, x_test, y_test, stages=["cluster"], output_dir=tmp_path)
    assert_message(
        info,
        "`stages`",
        "['distill', 'prune', 'qat', 'tflite']",
        "Received: stages=['cluster']",
    )


def test_report_markdown_and_lookup():
    report = ChainReport(
        [
            {
                "stage": "input",
                "accuracy": 0.5,
                "parameters": 10,
                "sparsity": 0.0,
                "tflite_bytes": None,
                "gzip_bytes": None,
                "latency_ms": None,
                "teacher_agreement": None,
            }
        ],
        {"generation": "x"},
    )
    assert report.to_markdown().splitlines()[2] == (
        "| input | 0.5000 | n/a | 10 | 0.000 | n/a | n/a | n/a | n/a | n/a | n/a | n/a |"
    )
    with pytest.raises(KeyError, match="Existing stages are: \\['input'\\]"):
        report["prune"]
