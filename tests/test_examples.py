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


@pytest.mark.slow
def test_lm_distill(tmp_path, capsys):
    pytest.importorskip("keras_hub")
    from keras_distill._keras import IS_LEGACY

    if IS_LEGACY:
        pytest.skip("keras_hub is built on Keras 3; tf_keras has no keras_hub")
    argv = ["--steps", "3", "--teacher-steps", "3", "--train-bytes", "20000"]
    argv += ["--test-bytes", "3000", "--teacher-path", str(tmp_path / "teacher.keras")]
    results = load("lm_distill").main(argv)
    assert set(results) == {"teacher", "student alone", "distilled (kl)"}
    for bits, agreement in results.values():
        assert 0.0 < bits < 16.0 and 0.0 <= agreement <= 1.0
    assert results["teacher"][1] == 1.0
    assert os.path.getsize(tmp_path / "teacher.keras") > 0
    again = load("lm_distill").main(argv)  # Loads the saved teacher: the same teacher scores.
    assert again["teacher"] == pytest.approx(results["teacher"], rel=1e-6)
    out = capsys.readouterr().out
    assert "teacher: loaded" in out and "| distilled (kl) |" in out and "prompt 'def '" in out
