import errno
import os

import numpy as np
import pytest
from helpers import assert_message
from helpers import make_mlp
from helpers import subprocess_env

from keras_distill import _files
from keras_distill import saving
from keras_distill._keras import keras


@pytest.fixture
def saved(tmp_path):
    model = make_mlp(4, "saved", seed=3)
    path = str(tmp_path / "model.keras")
    saving.save_model(model, path)
    return model, path


def test_save_and_load_round_trip(saved):
    model, path = saved
    loaded = saving.load_model(path)
    assert loaded.name == model.name
    for expected, actual in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(expected, actual)
    assert [f for f in os.listdir(os.path.dirname(path))] == ["model.keras"]


def test_missing_file(tmp_path):
    path = str(tmp_path / "missing.keras")
    with pytest.raises(ValueError) as info:
        saving.load_model(path)
    assert_message(info, "`path`", "no such file", f"Received: path={path!r}")


def test_wrong_suffix():
    with pytest.raises(ValueError) as info:
        saving.load_model("model.h5")
    assert_message(info, "`path`", "a `.keras` model file", "Received: path='model.h5'")


def test_truncated_file(saved, tmp_path):
    _, path = saved
    truncated = str(tmp_path / "truncated.keras")
    with open(path, "rb") as source, open(truncated, "wb") as target:
        content = source.read()
        target.write(content[: len(content) // 2])
    with pytest.raises(ValueError) as info:
        saving.load_model(truncated)
    assert_message(
        info,
        "`path` is not a valid `.keras` file",
        "not a complete zip archive",
        f"Received: path={truncated!r}",
    )


def test_corrupted_member_is_found_by_crc(saved, tmp_path):
    _, path = saved
    with open(path, "rb") as stream:
        content = bytearray(stream.read())
    # Flip bytes inside the stored weights (not in the zip directory at the end).
    position = content.find(b"HDF") + 200
    content[position : position + 8] = bytes(255 - b for b in content[position : position + 8])
    corrupted = str(tmp_path / "corrupted.keras")
    with open(corrupted, "wb") as stream:
        stream.write(bytes(content))
    with pytest.raises(ValueError) as info:
        saving.load_model(corrupted)
    assert_message(
        info,
        "`path` is not a valid `.keras` file",
        "'model.weights.h5' fails its CRC",
        f"Received: path={corrupted!r}",
    )


def _lambda_model(tmp_path):
    inputs = keras.Input((3,))
    outputs = keras.layers.Lambda(lambda t: t * 2.0, name="double")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(outputs))
    path = str(tmp_path / "lambda.keras")
    model.save(path)
    return model, path


def test_lambda_layers_are_refused(tmp_path):
    _, path = _lambda_model(tmp_path)
    with pytest.raises(ValueError) as info:
        saving.load_model(path)
    assert_message(
        info,
        "`path`",
        "Lambda layers ['double']",
        "`allow_lambda=True`",
        "`--unsafe-allow-lambda`",
        f"Received: path={path!r}",
    )


def test_lambda_layers_load_when_allowed(tmp_path):
    model, path = _lambda_model(tmp_path)
    loaded = saving.load_model(path, allow_lambda=True)
    x = np.ones((2, 3), "float32")
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-6)


def test_save_rejects_other_suffix(tmp_path):
    with pytest.raises(ValueError) as info:
        saving.save_model(make_mlp(4, "m"), "model.h5")
    assert_message(info, "`path`", "ending in '.keras'", "Received: path='model.h5'")


def _failing_save(content, error_number):
    def save(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as stream:
            stream.write(content)
        raise OSError(error_number, os.strerror(error_number))

    return save


@pytest.mark.parametrize(
    "error_number,kind,start",
    [
        (errno.ENOSPC, OSError, "Cannot write `path`: no space left on the device of"),
        (errno.EROFS, PermissionError, "Cannot write `path`: the folder"),
    ],
)
def test_failed_save_leaves_nothing_and_keeps_existing_file(
    saved, monkeypatch, error_number, kind, start
):
    model, path = saved
    with open(path, "rb") as stream:
        before = stream.read()
    monkeypatch.setattr(type(model), "save", _failing_save(b"partial", error_number))
    with pytest.raises(kind) as info:
        saving.save_model(model, path)
    assert_message(info, start, "Nothing was written", "unchanged", f"Received: path={path!r}")
    assert info.value.errno == error_number
    assert os.listdir(os.path.dirname(path)) == ["model.keras"]
    with open(path, "rb") as stream:
        assert stream.read() == before


def test_read_only_folder(tmp_path):
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        try:
            (folder / "probe").write_bytes(b"")
        except PermissionError:
            pass
        else:
            pytest.skip("this user writes into read-only folders (root); see the monkeypatch test")
        path = str(folder / "model.keras")
        with pytest.raises(PermissionError) as info:
            saving.save_model(make_mlp(4, "m"), path)
        assert str(info.value).startswith(f"Cannot write `path`: the folder {str(folder)!r} is")
        assert os.listdir(folder) == []
    finally:
        folder.chmod(0o700)


def test_load_arrays(tmp_path):
    path = str(tmp_path / "data.npz")
    np.savez(path, x=np.zeros((5, 2), "float32"), y=np.arange(5))
    x, y = saving.load_arrays(path)
    assert x.shape == (5, 2) and list(y) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    "arrays, pieces",
    [
        (
            {"x": np.array([{"a": 1}, None], dtype=object), "y": np.arange(2)},
            ("`path` holds object arrays", "Save plain numeric arrays"),
        ),
        (
            {"x": np.float32(1.0), "y": np.int32(0)},
            ("`path` holds a single value", "as 'x'", "`np.atleast_1d(...)`"),
        ),
    ],
)
def test_load_arrays_refuses_arrays_it_cannot_use(tmp_path, arrays, pieces):
    path = str(tmp_path / "arrays.npz")
    np.savez(path, **arrays)
    with pytest.raises(ValueError) as info:
        saving.load_arrays(path)
    assert_message(info, *pieces, f"Received: path={path!r}")


def test_load_arrays_errors(tmp_path):
    path = str(tmp_path / "data.npz")
    np.savez(path, x=np.zeros((5, 2)))
    with pytest.raises(ValueError) as info:
        saving.load_arrays(path)
    assert_message(
        info, "`path`", "['x', 'y']", "'y' is missing", "['x']", f"Received: path={path!r}"
    )
    np.savez(path, x=np.zeros((5, 2)), y=np.zeros(4))
    with pytest.raises(ValueError) as info:
        saving.load_arrays(path)
    assert_message(
        info,
        "`path`",
        "one row per example",
        f"Received: path={path!r} with lengths {{'x': 5, 'y': 4}}",
    )
    broken = str(tmp_path / "broken.npz")
    with open(broken, "wb") as stream:
        stream.write(b"not a zip")
    with pytest.raises(ValueError) as info:
        saving.load_arrays(broken)
    assert_message(
        info, "`path` is not a readable `.npz` file", "numpy.savez", f"Received: path={broken!r}"
    )


def test_load_config(tmp_path):
    yaml_path = tmp_path / "config.yaml"
    yaml_path.write_text("alpha: 0.7\ntemperature: 2\n")
    assert saving.load_config(str(yaml_path)) == {"alpha": 0.7, "temperature": 2}
    json_path = tmp_path / "config.json"
    json_path.write_text('{"epochs": 3}')
    assert saving.load_config(str(json_path)) == {"epochs": 3}


def test_load_config_builds_no_python_objects(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("alpha: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ValueError) as info:
        saving.load_config(str(path))
    assert_message(
        info,
        "`path` is not valid YAML at line 1",
        "only plain data",
        f"Received: path={str(path)!r}",
    )


def test_load_config_errors(tmp_path):
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    with pytest.raises(ValueError) as info:
        saving.load_config(str(path))
    assert_message(
        info, "`path`", "a mapping of option names", f"Received: path={str(path)!r} holding list"
    )
    with pytest.raises(ValueError) as info:
        saving.load_config("config.toml")
    assert_message(info, "`path`", "['.json', '.yaml', '.yml']", "Received: path='config.toml'")


def test_read_only_folder_emulated(saved, monkeypatch):
    model, path = saved
    folder = os.path.dirname(path)

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(_files.tempfile, "mkstemp", refuse)
    with pytest.raises(PermissionError) as info:
        saving.save_model(model, path)
    assert_message(
        info,
        "Cannot write `path`",
        f"the folder {folder!r} is read-only",
        "Nothing was written",
        f"Received: path={path!r}",
    )
    assert os.listdir(folder) == ["model.keras"]


def _keras_file_with_config(path, config_bytes):
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", config_bytes)
        archive.writestr("metadata.json", b"{}")
    return path


def test_config_that_inflates_beyond_the_limit_is_refused_unread(tmp_path):
    size = saving.MAX_CONFIG_BYTES + 1
    path = _keras_file_with_config(str(tmp_path / "bomb.keras"), b" " * size)
    assert os.path.getsize(path) < size // 500
    with pytest.raises(ValueError) as info:
        saving.load_model(path)
    assert_message(
        info,
        "`path` is not loaded",
        f"would inflate to {size} bytes",
        "more than the 67108864",
        f"Received: path={path!r}",
    )


@pytest.mark.parametrize("depth", [100_000, saving.MAX_CONFIG_DEPTH + 1])
def test_config_nested_too_deep_is_refused(tmp_path, depth):
    path = _keras_file_with_config(str(tmp_path / "deep.keras"), b"[" * depth + b"]" * depth)
    with pytest.raises(ValueError) as info:
        saving.load_model(path)
    assert_message(
        info,
        "`path` is not loaded",
        "nested more than 500 levels deep",
        f"Received: path={path!r}",
    )


@pytest.mark.subprocess  # The other generation needs its own interpreter.
def test_a_file_of_the_other_keras_generation_is_named(tmp_path):
    import subprocess
    import sys

    other = str(tmp_path / "other.keras")
    legacy_here = keras.__version__.startswith("2.")
    environment = subprocess_env(
        TF_USE_LEGACY_KERAS="0" if legacy_here else "1", TF_CPP_MIN_LOG_LEVEL="3"
    )
    code = (
        "import sys; from keras_distill import saving; from keras_distill._keras import keras; "
        "inputs = keras.Input((4,)); "
        "saving.save_model(keras.Model(inputs, keras.layers.Dense(2)(inputs)), sys.argv[1]); "
        "print(keras.__version__)"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code, other],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    other_version = completed.stdout.split()[-1]
    with pytest.raises(ValueError) as info:
        saving.load_model(other)
    fix = "Unset TF_USE_LEGACY_KERAS" if legacy_here else "Set TF_USE_LEGACY_KERAS=1"
    generation = "tf_keras" if legacy_here else "keras3"
    assert_message(
        info,
        f"`path` was saved by Keras {other_version}",
        f"runs on {generation} (Keras {keras.__version__})",
        fix,
        f"Received: path={other!r}",
    )
