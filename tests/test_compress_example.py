"""The compression example runs end to end (tiny settings; full numbers in docs/compression.md)."""

import importlib.util
import os

EXAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "compress_to_tflite.py")


def test_compress_to_tflite_example(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("compress_to_tflite", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    report = module.main(
        [
            "--teacher-epochs",
            "1",
            "--distill-epochs",
            "1",
            "--prune-epochs",
            "2",
            "--qat-epochs",
            "1",
            "--width",
            "16",
            "--samples",
            "600",
            "--out",
            str(tmp_path),
        ]
    )
    expected = ["input", "distill", "prune", "qat", "tflite"]  # on both generations
    assert [row["stage"] for row in report.rows] == expected
    assert os.path.exists(tmp_path / "chain_report.json")
    assert os.path.exists(tmp_path / "chain_report.png")
    assert os.path.exists(tmp_path / "tflite.tflite")
    assert "tflite" in capsys.readouterr().out
