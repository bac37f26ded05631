import glob
import json
import os
import re
import subprocess
import sys
from importlib import metadata

import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_message
from helpers import make_data
from helpers import make_mlp
from helpers import subprocess_env
from helpers import tiny_gpt2

from keras_distill import cli
from keras_distill import saving
from keras_distill._keras import IS_LEGACY
from keras_distill._keras import keras


@pytest.fixture(scope="module")
def files(tmp_path_factory, trained_teacher):
    folder = tmp_path_factory.mktemp("cli")
    saving.save_model(trained_teacher, str(folder / "teacher.keras"))
    saving.save_model(make_mlp(8, "student", seed=2), str(folder / "student.keras"))
    for name, seed, size in (("train", 0, 128), ("val", 1, 64), ("test", 2, 64)):
        x, y = make_data(size, seed=seed)
        np.savez(folder / f"{name}.npz", x=x, y=y)
    return folder


def call(capsys, *args):
    """Runs `cli.main` in this process; returns (exit code, stdout, stderr lines)."""
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err.splitlines()


def assert_error_line(code, err, *pieces):
    """Exit code 1 and one `keras-distill: error:` line that holds every one of `pieces`."""
    assert code == 1, err
    (line,) = err
    assert line.startswith("keras-distill: error: "), line
    assert_message(line, *pieces)


def scalars(folder):
    """`{tag: [values by step]}` read back from the TensorBoard event files in `folder`."""
    values = {}
    for path in sorted(glob.glob(os.path.join(folder, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                number = (
                    float(tf.make_ndarray(value.tensor))
                    if value.HasField("tensor")
                    else value.simple_value
                )
                values.setdefault(value.tag, []).append((event.step, number))
    return {tag: [v for _, v in sorted(items)] for tag, items in values.items()}


def test_distill_end_to_end(files, capsys, monkeypatch):
    monkeypatch.chdir(files)
    (files / "config.yaml").write_text(
        "alpha: 0.7\ntemperature: 3\nepochs: 2\nlearning_rate: 0.01\n"
    )
    code, out, err = call(
        capsys,
        "distill",
        "--teacher",
        "teacher.keras",
        "--student",
        "student.keras",
        "--data",
        "train.npz",
        "--val",
        "val.npz",
        "--config",
        "config.yaml",
        "--epochs",
        "3",
        "--batch-size",
        "16",
        "--out",
        "out/distilled.keras",
        "--tensorboard",
        "tb",
        "--history",
        "history.json",
        "--backup-dir",
        "backup",
        "--verbose",
        "2",
    )
    assert code == 0, err
    # BackupAndRestore removes its state after success (tf_keras leaves the empty folder).
    assert not (files / "backup").exists() or not any((files / "backup").iterdir())
    assert "student_loss" in out and "distillation_loss" in out
    assert out.strip().endswith("Saved the student to out/distilled.keras")
    history = json.loads((files / "history.json").read_text())
    assert len(history["loss"]) == 3  # The command line wins over the config file.
    assert {"student_loss", "distillation_loss", "val_distillation_loss", "accuracy"} <= set(
        history
    )
    # alpha=0.7 from the config: every batch loss is 0.3 * H + 0.7 * D, so the epoch means are too.
    np.testing.assert_allclose(
        history["loss"],
        0.3 * np.array(history["student_loss"]) + 0.7 * np.array(history["distillation_loss"]),
        rtol=1e-4,
    )
    student = saving.load_model(str(files / "out" / "distilled.keras"))
    initial = saving.load_model(str(files / "student.keras"))
    assert not np.allclose(student.get_weights()[0], initial.get_weights()[0])

    # TensorBoard: every loss component, per epoch, with the values of the history.
    logged = scalars(str(files / "tb" / "train"))
    for name in ("loss", "student_loss", "distillation_loss"):
        np.testing.assert_allclose(logged[f"epoch_{name}"], history[name], rtol=1e-5)
    validation = scalars(str(files / "tb" / "validation"))
    np.testing.assert_allclose(
        validation["epoch_distillation_loss"], history["val_distillation_loss"], rtol=1e-5
    )


def test_export_prints_the_parity_report(files, capsys, monkeypatch):
    monkeypatch.chdir(files)
    code, out, err = call(
        capsys,
        "export",
        "teacher.keras",
        "--out",
        "teacher_int8.tflite",
        "--quantization",
        "int8",
        "--calibration",
        "train.npz",
        "--min-agreement",
        "0.5",
        "--json",
        "export.json",
    )
    assert code == 0, err
    assert out.startswith("TFLite export\n")
    report = json.loads((files / "export.json").read_text())
    assert report["quantization"] == "int8" and report["passed"]
    assert report["file_size_bytes"] == os.path.getsize(files / "teacher_int8.tflite")


def test_report_writes_table_json_and_png(files, capsys, monkeypatch):
    monkeypatch.chdir(files)
    code, out, err = call(
        capsys,
        "report",
        "--teacher",
        "teacher.keras",
        "--student",
        "student.keras",
        "--data",
        "test.npz",
        "--out-dir",
        "report",
        "--latency-repeats",
        "0",
    )
    assert code == 0, err
    assert "| model |" in out
    report = json.loads((files / "report" / "report.json").read_text())
    x, y = make_data(64, seed=2)
    rows = {row["name"]: row for row in report["models"]}
    for name in ("teacher", "student"):
        model = saving.load_model(str(files / f"{name}.keras"))
        expected = float(np.mean(np.argmax(model.predict(x, verbose=0), -1) == y))
        assert rows[name]["accuracy"] == pytest.approx(expected)
    with open(files / "report" / "accuracy_vs_size.png", "rb") as stream:
        assert stream.read(8) == b"\x89PNG\r\n\x1a\n"


def test_a_corrupted_model_is_one_line_without_traceback(files, capsys, monkeypatch):
    monkeypatch.chdir(files)
    (files / "truncated.keras").write_bytes((files / "teacher.keras").read_bytes()[:100])
    code, out, err = call(
        capsys,
        "distill",
        "--teacher",
        "truncated.keras",
        "--student",
        "student.keras",
        "--data",
        "train.npz",
        "--out",
        "never.keras",
    )
    assert code == 1
    (line,) = err
    assert line.startswith("keras-distill: error: `--teacher` is not a valid `.keras` file")
    assert "truncated or corrupted" in line
    assert line.endswith("Received: --teacher='truncated.keras'")
    assert not (files / "never.keras").exists()


DISTILL = (
    "distill",
    "--teacher",
    "teacher.keras",
    "--student",
    "student.keras",
    "--data",
    "train.npz",
    "--out",
    "o.keras",
)


def distill_args(replacements):
    """`DISTILL` with options replaced or added from `{option: value}`."""
    args = list(DISTILL)
    for option, value in replacements.items():
        if option in args:
            args[args.index(option) + 1] = value
        else:
            args += [option, value]
    return args


@pytest.mark.parametrize(
    "extra,code,pieces",
    [
        (("--alpha", "1.5"), 1, ("`--alpha` must be a number in [0.0, 1.0]", "--alpha=1.5")),
        (("--temperature", "0"), 1, ("`--temperature` must be a number > 0.0", "--temperature=0")),
        (("--epochs", "two"), 1, ("`--epochs` must be an integer >= 1", "--epochs='two'")),
        (("--epochs", "2.5"), 1, ("`--epochs` must be an integer >= 1", "--epochs='2.5'")),
        (("--optimizer", "lion"), 1, ("`--optimizer` must be one of ['adam',", "='lion'")),
        (("--distillation-loss", "l1"), 1, ("`--distillation-loss` must be one of", "'dkd'")),
        (("--verbose", "5"), 1, ("`--verbose` must be one of ['0', '1', '2']", "--verbose='5'")),
        (("--frobnicate",), 2, ("unrecognized arguments: --frobnicate", "keras-distill --help")),
    ],
)
def test_distill_option_errors(files, capsys, monkeypatch, extra, code, pieces):
    monkeypatch.chdir(files)
    got_code, out, err = call(capsys, *DISTILL, *extra)
    assert got_code == code
    (line,) = err
    assert line.startswith("keras-distill: error: ")
    for piece in pieces:
        assert piece in line, (piece, line)


def test_file_errors(files, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(files)
    np.savez(tmp_path / "no_labels.npz", x=np.zeros((4, 8), "float32"))
    (tmp_path / "bad.yaml").write_text("alpha: 0.5\nwarmup: 3\n")
    inputs = keras.Input((8,))
    lambda_model = keras.Model(inputs, keras.layers.Lambda(lambda t: t + 1.0, name="shift")(inputs))
    lambda_model.save(str(tmp_path / "lambda.keras"))
    cases = [
        (
            {"--teacher": "missing.keras"},
            ("`--teacher`", "no such file", "Received: --teacher='missing.keras'"),
        ),
        (
            {"--data": str(tmp_path / "no_labels.npz")},
            (
                "`--data`",
                "['x', 'y']",
                "'y' is missing",
                f"Received: --data={str(tmp_path / 'no_labels.npz')!r}",
            ),
        ),
        ({"--out": "o.h5"}, ("`--out`", "ending in '.keras'", "Received: --out=o.h5")),
        (
            {"--config": str(tmp_path / "bad.yaml")},
            (
                "`--config`",
                "unknown options ['warmup']",
                "['alpha', 'batch_size', 'distillation_loss', 'epochs', 'learning_rate', "
                "'optimizer', 'seed', 'temperature']",
                f"Received: --config={tmp_path / 'bad.yaml'}",
            ),
        ),
        (
            {"--student": str(tmp_path / "lambda.keras")},
            (
                "`--student`",
                "Lambda layers ['shift']",
                "`--unsafe-allow-lambda`",
                f"Received: --student={str(tmp_path / 'lambda.keras')!r}",
            ),
        ),
    ]
    for replacements, pieces in cases:
        code, out, err = call(capsys, *distill_args(replacements))
        assert_error_line(code, err, *pieces)
    assert not os.path.exists("o.keras")


def test_export_errors(files, capsys, monkeypatch):
    monkeypatch.chdir(files)
    code, _, err = call(
        capsys, "export", "teacher.keras", "--out", "t.tflite", "--quantization", "int4"
    )
    assert code == 1
    (line,) = err
    assert "`--quantization` must be one of ['none', 'dynamic', 'float16', 'int8']" in line
    assert line.endswith("Received: --quantization='int4'")
    code, _, err = call(
        capsys, "export", "teacher.keras", "--out", "t.tflite", "--quantization", "int8"
    )
    assert code == 1
    (line,) = err
    assert "`--quantization int8` needs `--calibration`" in line
    assert line.endswith("Received: --calibration=None")
    code, _, err = call(capsys, "export", "--out", "t.tflite")
    assert code == 2
    (line,) = err
    assert "the following arguments are required: MODEL.keras" in line
    assert "keras-distill export --help" in line
    assert not os.path.exists("t.tflite")


def test_help_describes_every_option(capsys):
    expected = {
        "distill": [
            "--teacher",
            "--student",
            "--data",
            "--val",
            "--alpha",
            "--temperature",
            "--epochs",
            "--batch-size",
            "--out",
            "--tensorboard",
            "--config",
            "--unsafe-allow-lambda",
            "--recipe",
            "--unlabeled",
            "--recipe-report",
        ],
        "export": ["--out", "--quantization", "--calibration", "{none,dynamic,float16,int8}"],
        "report": ["--teacher", "--student", "--data", "--out-dir"],
    }
    for command, options in expected.items():
        with pytest.raises(SystemExit) as info:
            cli.main([command, "--help"])
        assert info.value.code == 0
        text = capsys.readouterr().out
        for option in options:
            assert option in text, (command, option)
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert ".npz archives with arrays `x` (inputs) and `y` (labels)" in text


def test_console_entry_point_is_declared():
    (entry,) = metadata.entry_points(group="console_scripts", name="keras-distill")
    assert entry.value == "keras_distill_cli:main"


# Sends Ctrl-C (SIGINT) to itself the moment TensorFlow starts to load, then runs the launcher.
_INTERRUPT_DURING_IMPORT = """
import os, signal, sys

class InterruptTensorFlowImport:
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow":
            os.kill(os.getpid(), signal.SIGINT)
        return None

# As in a terminal, even when the test run itself ignores SIGINT (started in the background).
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.meta_path.insert(0, InterruptTensorFlowImport())
import keras_distill_cli
sys.exit(keras_distill_cli.main(["report", "--teacher", "t.keras", "--student", "s.keras",
                                 "--data", "d.npz"]))
"""


@pytest.mark.subprocess
def test_ctrl_c_while_tensorflow_loads_prints_one_line(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-c", _INTERRUPT_DURING_IMPORT],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=subprocess_env(),
        timeout=300,
    )
    assert completed.returncode == cli.EXIT_INTERRUPTED
    assert completed.stderr.splitlines() == ["keras-distill: error: interrupted"]
    assert completed.stdout == ""


# Asks for help and makes a usage error through the launcher, then lists what was imported.
_LIGHT_LAUNCHER = """
import contextlib, io, sys
import keras_distill_cli
with contextlib.redirect_stdout(io.StringIO()) as out:
    try:
        keras_distill_cli.main(["distill", "--help"])
    except SystemExit as exit:
        assert exit.code == 0, exit.code
assert "--distillation-loss" in out.getvalue()
code = keras_distill_cli.main(["export", "--frobnicate"])
print(code, sorted(name for name in ("tensorflow", "keras", "numpy") if name in sys.modules))
"""


@pytest.mark.subprocess
def test_help_and_usage_errors_do_not_import_tensorflow(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-c", _LIGHT_LAUNCHER],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=subprocess_env(),
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == [str(cli.EXIT_USAGE), "[]"]
    assert "the following arguments are required: MODEL.keras" in completed.stderr


def test_option_choices_and_defaults_are_the_library_s():
    import inspect

    from keras_distill import distiller
    from keras_distill import losses
    from keras_distill.recipe import distill

    assert cli.LOSS_NAMES == tuple(sorted(losses._REGISTRY))
    default_alpha, default_temperature = distiller._DEFAULTS[distiller.HINTON]
    assert (cli.DISTILL_DEFAULTS["alpha"], cli.DISTILL_DEFAULTS["temperature"]) == (
        default_alpha,
        default_temperature,
    )
    parameters = inspect.signature(distill).parameters
    for key in ("epochs", "batch_size", "learning_rate", "seed"):
        assert cli.RECIPE_DEFAULTS[key] == parameters[key].default, key


def test_launcher_runs_the_command_line(capsys):
    import keras_distill_cli

    assert keras_distill_cli.EXIT_INTERRUPTED == cli.EXIT_INTERRUPTED
    code = keras_distill_cli.main(["report", "--data", "missing.npz"])
    assert code == cli.EXIT_USAGE
    assert "keras-distill: error:" in capsys.readouterr().err


def test_distill_stops_on_non_finite_loss_and_saves_nothing(files, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    inputs = keras.Input((8,))
    teacher = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    kernel = np.zeros((8, 3), "float32")
    kernel[0] = [1e10, -1e10, 0.0]  # Finite logits for ordinary rows, +-inf for x0 = 1e30.
    teacher.set_weights([kernel, np.zeros(3, "float32")])
    saving.save_model(teacher, "teacher.keras")
    x, y = make_data(128, seed=6)
    x[100, 0] = 1e30  # Batch 6 of 16 rows; the first-batch check sees rows 0-63.
    np.savez("train.npz", x=x, y=y)
    (tmp_path / "kept.keras").write_bytes(b"previous content")
    code, _, err = call(
        capsys,
        "distill",
        "--teacher",
        "teacher.keras",
        "--student",
        str(files / "student.keras"),
        "--data",
        "train.npz",
        "--batch-size",
        "16",
        "--epochs",
        "2",
        "--verbose",
        "0",
        "--out",
        "kept.keras",
    )
    assert_error_line(
        code,
        err,
        "Non-finite loss",
        "distillation_loss=nan",
        "The student was not saved",
        "Received: --out=kept.keras",
    )
    # fit() shuffles, so the poisoned row lands in a batch that depends on the generation.
    match = re.search(r"at epoch 0, batch (\d+)", err[0])
    assert match, err[0]
    batch = int(match.group(1))
    restored = f"the end of epoch 0, batch {batch - 1}" if batch else "the weights before training"
    assert_message(err[0], f"weights restored to {restored}")
    assert (tmp_path / "kept.keras").read_bytes() == b"previous content"


def test_distill_recipe_says_which_student_it_kept(files, capsys, monkeypatch):
    monkeypatch.chdir(files)
    np.savez(files / "unlabeled.npz", x=make_data(96, seed=7)[0])
    code, out, err = call(
        capsys,
        "distill",
        "--teacher",
        "teacher.keras",
        "--student",
        "student.keras",
        "--data",
        "train.npz",
        "--val",
        "val.npz",
        "--unlabeled",
        "unlabeled.npz",
        "--recipe",
        "--epochs",
        "4",
        "--batch-size",
        "32",
        "--learning-rate",
        "0.01",
        "--out",
        "recipe/kept.keras",
        "--recipe-report",
        "recipe/report.json",
    )
    assert code == 0, err
    report = json.loads((files / "recipe" / "report.json").read_text())
    assert out.strip().splitlines()[-1] == (
        f"Saved the student to recipe/kept.keras (kept: {report['kept']})"
    )
    assert "[7/7]" in out and "| run | alpha | T |" in out and f"Kept: {report['kept']}." in out
    assert report["settings"]["num_transfer"] == 128 + 96
    assert report["settings"]["epochs"] == 4
    runs = {run["name"]: run for run in report["runs"]}
    kept = runs[report["kept"]]
    for other in ("student alone", "plain KD a=0.5 T=4"):
        assert kept["validation_accuracy"] >= runs[other]["validation_accuracy"]
    # The saved student is the kept run refit on the 128 + 64 labelled examples.
    assert report["refit"]["run"] == report["kept"]
    assert report["refit"]["num_examples"] == 128 + 64
    assert report["refit"]["epochs"] == kept["best_epoch"]
    model = saving.load_model(str(files / "recipe" / "kept.keras"))
    assert model.count_params() == saving.load_model(str(files / "student.keras")).count_params()


def test_recipe_option_errors(files, capsys, monkeypatch):
    monkeypatch.chdir(files)
    code, _, err = call(capsys, *DISTILL, "--recipe", "--tensorboard", "tb")
    assert_error_line(
        code,
        err,
        "`--tensorboard` cannot be used with `--recipe`",
        "Received: --tensorboard=tb",
    )
    code, _, err = call(capsys, *DISTILL, "--unlabeled", "u.npz")
    assert_error_line(code, err, "`--unlabeled` needs `--recipe`", "Received: --unlabeled=u.npz")
    code, _, err = call(capsys, *DISTILL, "--recipe", "--epochs", "0")
    assert_error_line(code, err, "`--epochs`", "an integer >= 1", "Received: --epochs=0")
    assert not os.path.exists("o.keras")


def test_output_locations_are_checked_before_any_work(files, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(files)
    (tmp_path / "a_file").write_text("")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    a_file = str(tmp_path / "a_file")
    cases = [
        (
            {"--out": "teacher.keras"},
            (
                "`--out` must differ from `--teacher`",
                "Choose another file",
                "Received: --out='teacher.keras', --teacher='teacher.keras'",
            ),
        ),
        (
            {"--out": "./student.keras"},
            (
                "`--out` must differ from `--student`",
                "Choose another file",
                "Received: --out='./student.keras', --student='student.keras'",
            ),
        ),
        (
            {"--out": a_file + "/o.keras"},
            (
                f"`--out` lies inside {a_file!r}, which is a file",
                "Choose another location",
                f"Received: --out={a_file + '/o.keras'!r}",
            ),
        ),
        (
            {"--history": str(locked / "h.json")},
            (
                f"`--history` cannot be written: the folder {str(locked)!r} is not writable",
                "Choose another location",
                f"Received: --history={str(locked / 'h.json')!r}",
            ),
        ),
        (
            {"--history": a_file + "/h.json"},
            (
                f"`--history` lies inside {a_file!r}, which is a file",
                "Choose another location",
                f"Received: --history={a_file + '/h.json'!r}",
            ),
        ),
        (
            {"--tensorboard": a_file},
            (
                "`--tensorboard` must be a folder",
                "Remove it or choose another folder",
                f"Received: --tensorboard={a_file!r}",
            ),
        ),
        (
            {"--backup-dir": a_file},
            (
                "`--backup-dir` must be a folder",
                "Remove it or choose another folder",
                f"Received: --backup-dir={a_file!r}",
            ),
        ),
    ]
    if os.access(locked, os.W_OK):  # Running as root: every folder is writable.
        cases = [case for case in cases if "--history" not in case[0]]
    for replacements, pieces in cases:
        code, out, err = call(capsys, *distill_args(replacements))
        assert_error_line(code, err, *pieces)
    assert (files / "teacher.keras").stat().st_size > 1000
    code, _, err = call(
        capsys,
        "report",
        "--teacher",
        "teacher.keras",
        "--student",
        "student.keras",
        "--data",
        "test.npz",
        "--out-dir",
        a_file,
    )
    assert_error_line(
        code,
        err,
        "`--out-dir` must be a folder",
        "Remove it or choose another folder",
        f"Received: --out-dir={a_file!r}",
    )
    code, _, err = call(
        capsys, "export", "teacher.keras", "--out", "t.tflite", "--json", str(tmp_path)
    )
    assert_error_line(
        code,
        err,
        "`--json` must be a file path",
        "it is a folder",
        f"Received: --json={str(tmp_path)!r}",
    )


@pytest.mark.parametrize(
    "labels, pieces",
    [
        (
            np.array(["a", "b"] * 32),
            (
                "Labels must be numbers",
                "`np.unique(y, return_inverse=True)`",
                "Received: y with dtype <U1 starting ['a', 'b', 'a']",
            ),
        ),
        (
            np.full(64, 5),
            ("class indices in [0, 2]", "Received: y with values from 5 to 5"),
        ),
        (
            np.where(np.arange(64) == 7, np.nan, 1.0),
            (
                "whole class indices in [0, 2]",
                "1 label is not, e.g. nan",
                "Round or remap them",
                "Received: y=nan",
            ),
        ),
    ],
)
def test_report_refuses_labels_it_cannot_score(
    files, capsys, monkeypatch, tmp_path, labels, pieces
):
    monkeypatch.chdir(files)
    x, _ = make_data(64, seed=2)
    np.savez(tmp_path / "bad.npz", x=x, y=labels)
    code, _, err = call(
        capsys,
        "report",
        "--teacher",
        "teacher.keras",
        "--student",
        "student.keras",
        "--data",
        str(tmp_path / "bad.npz"),
        "--out-dir",
        str(tmp_path / "report"),
        "--latency-repeats",
        "0",
    )
    assert_error_line(code, err, "`--data` cannot be used", *pieces)


def test_report_refuses_nan_inputs(files, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(files)
    x, y = make_data(64, seed=2)
    x[3, 1] = np.nan
    np.savez(tmp_path / "bad.npz", x=x, y=y)
    code, _, err = call(
        capsys,
        "report",
        "--teacher",
        "teacher.keras",
        "--student",
        "student.keras",
        "--data",
        str(tmp_path / "bad.npz"),
        "--out-dir",
        str(tmp_path / "report"),
        "--latency-repeats",
        "0",
    )
    assert_error_line(
        code,
        err,
        "`--data` cannot be used",
        "`x` contains NaN or Inf values",
        "(1 of 64 examples, the first at index 3)",
    )


def test_export_accepts_an_upper_case_suffix(files, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(files)
    code, out, err = call(capsys, "export", "student.keras", "--out", str(tmp_path / "m.TFLITE"))
    assert code == 0, err
    assert (tmp_path / "m.TFLITE").stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_bad_validation_label_is_one_clear_line(files, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(files)
    x, y = make_data(64, seed=1)
    y[40] = 7
    np.savez(tmp_path / "bad_val.npz", x=x, y=y)
    code, _, err = call(
        capsys,
        *distill_args(
            {
                "--val": str(tmp_path / "bad_val.npz"),
                "--out": str(tmp_path / "o.keras"),
                "--epochs": "1",
                "--batch-size": "32",
                "--verbose": "0",
            }
        ),
    )
    assert_error_line(
        code,
        err,
        "`y` must hold class indices 0, 1, ..., 2",
        "validation batch 1 (`validation_data`, epoch 0), row 8 of the batch holds 7",
        "Fix the labels",
        "Received: y=7",
    )
    assert not (tmp_path / "o.keras").exists()


@pytest.mark.skipif(
    IS_LEGACY, reason="keras_hub models are Keras 3 .keras files, which tf_keras cannot load"
)
def test_export_generate_writes_prefill_and_decode(capsys, monkeypatch, tmp_path):
    hub = pytest.importorskip("keras_hub", reason="the zoo extra: pip install 'keras-distill[zoo]'")
    model = tiny_gpt2(hub, 96, 16)
    saving.save_model(model, str(tmp_path / "lm.keras"))
    monkeypatch.chdir(tmp_path)
    code, out, err = call(
        capsys,
        "export",
        "lm.keras",
        "--out",
        "lm.tflite",
        "--generate",
        "--max-length",
        "12",
        "--prefill-length",
        "8",
        "--quantization",
        "dynamic",
        "--json",
        "lm.json",
    )
    assert code == 0, err
    assert out.startswith("TFLite generation export\n")
    info = json.loads((tmp_path / "lm.json").read_text())
    assert info["max_sequence_length"] == 12 and info["prefill_length"] == 8
    assert info["file_size_bytes"] == os.path.getsize(tmp_path / "lm.tflite")
    from keras_distill.compression import TFLiteGenerator

    generator = TFLiteGenerator(str(tmp_path / "lm.tflite"))
    assert (generator.prefill_length, generator.max_sequence_length) == (8, 12)
    for args, message in (
        (("--max-length", "17"), "at most 16"),
        (("--quantization", "int8"), "`--quantization` must be one of"),
        (("--calibration", "x.npz"), "`--calibration` does not apply to `--generate`"),
        (("--max-length", "0"), "`--max-length` must be an integer >= 1"),
    ):
        code, _, err = call(capsys, "export", "lm.keras", "--out", "x.tflite", "--generate", *args)
        assert code == 1 and message in err[-1], err
    code, _, err = call(capsys, "export", "lm.keras", "--out", "x.tflite", "--max-length", "8")
    assert code == 1 and "`--max-length` needs `--generate`" in err[-1]
    assert not os.path.exists(tmp_path / "x.tflite")
