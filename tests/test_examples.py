"""The examples run end to end (tiny settings here; the full runs are in docs/)."""

import importlib.util
import os

import pytest

EXAMPLES = os.path.join(os.path.dirname(__file__), os.pardir, "examples")


def load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mnist1d_distill(tmp_path, capsys):
    results = load("mnist1d_distill").main(["--epochs", "1", "--out", str(tmp_path)])
    assert set(results) == {"teacher (CNN)", "student alone (MLP)", "student distilled (MLP)"}
    assert all(0.0 <= value <= 1.0 for value in results.values())
    for name in ("mnist1d_student.keras", "report.json", "history.png", "accuracy_vs_size.png"):
        assert os.path.getsize(tmp_path / name) > 0, name
    assert "| teacher (CNN)" in capsys.readouterr().out


@pytest.mark.slow
def test_feature_distill():
    results = load("feature_distill").main(["--epochs", "1"])
    assert "+ RKD (distance, angle)" in results


@pytest.mark.slow
def test_attention_transfer():
    results = load("attention_transfer").main(["--epochs", "1", "--student-epochs", "1", "--train", "200"])
    assert "student, KD + attention KL" in results
