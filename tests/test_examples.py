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
    results = load("mnist1d_distill").main(
        [
            "--unlabeled",
            "400",
            "--epochs",
            "2",
            "--teacher-epochs",
            "1",
            "--patience",
            "1",
            "--latency-repeats",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    assert set(results) == {"teacher", "student alone", "student (kept)", "kept"}
    assert all(
        0.0 <= results[name] <= 1.0 for name in ("teacher", "student alone", "student (kept)")
    )
    names = (
        "mnist1d_student.keras",
        "recipe.json",
        "report.json",
        "validation_curves.png",
        "accuracy_vs_size.png",
    )
    for name in names:
        assert os.path.getsize(tmp_path / name) > 0, name
    out = capsys.readouterr().out
    assert f"Kept: {results['kept']}." in out
    assert "| teacher | 11,658 |" in out
    assert (
        out.strip()
        .splitlines()[-1]
        .startswith(f"Wrote {', '.join(names[:-1])} and {names[-1]} to {tmp_path}/")
    )


@pytest.mark.slow
def test_feature_distill():
    results = load("feature_distill").main(["--epochs", "1"])
    assert "+ RKD (distance, angle)" in results


@pytest.mark.slow
def test_attention_transfer():
    results = load("attention_transfer").main(
        ["--epochs", "1", "--student-epochs", "1", "--train", "200"]
    )
    assert "student, KD + attention KL" in results
