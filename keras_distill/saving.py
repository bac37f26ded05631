"""Safe loading and atomic saving of models, data arrays and configuration files.

Nothing here unpickles: `.keras` files load with Keras `safe_mode=True`,
`.npz` files with `allow_pickle=False`, YAML with `yaml.safe_load`.
"""

import json
import zipfile

import numpy as np

from keras_distill._checks import check_existing_file
from keras_distill._checks import check_keras_model
from keras_distill._checks import check_path
from keras_distill._checks import first_line
from keras_distill._files import atomic_path
from keras_distill._keras import GENERATION
from keras_distill._keras import KERAS_VERSION
from keras_distill._keras import keras

CONFIG_SUFFIXES = (".json", ".yaml", ".yml")
_GENERATION_FIX = {
    "keras3": "Set TF_USE_LEGACY_KERAS=1 before importing keras_distill to load it with "
    "tf_keras, or save the model again with Keras 3.",
    "tf_keras": "Unset TF_USE_LEGACY_KERAS to load it with Keras 3, or save the model again "
    "with tf_keras.",
}
_KERAS_MEMBERS = ("config.json",)
MAX_CONFIG_BYTES = 64 * 2**20
"""Largest `config.json` (uncompressed) a `.keras` file may declare; models need far less."""
MAX_CONFIG_DEPTH = 500
"""Deepest nesting of `config.json`; Keras configs of nested models stay far below."""


def load_model(
    path,
    safe_mode=True,
    allow_lambda=False,
    compile=False,
    custom_objects=None,
    argument_name="path",
):
    """Loads a `.keras` model file, checking it before Keras reads it.

    The file must exist and be a complete zip archive with a readable
    `config.json` (every member's CRC is checked, so truncated or corrupted
    files are reported as such). `Lambda` layers can carry arbitrary Python
    code, so a model that has one (at any depth) is refused unless
    `allow_lambda=True`; Keras's own `safe_mode` then also has to be off for
    Lambda layers that hold Python bytecode, so `allow_lambda=True` loads
    such a file with `safe_mode=False`. Only use it for files you trust.

    Args:
        path: Path to a `.keras` file (the Keras v3 format; `.h5` and
            SavedModel folders are not loaded).
        safe_mode: Passed to `keras.models.load_model`. Defaults to `True`.
        allow_lambda: Load models with `Lambda` layers. Defaults to `False`.
        compile: Restore the training configuration (optimizer, loss).
            Defaults to `False` (a model to distil or export needs none).
        custom_objects: Optional `{name: class}` for custom layers.
        argument_name: How errors name `path` (the command line passes its
            option, e.g. `"--teacher"`). Defaults to `"path"`.

    Returns:
        The `keras.Model`.

    Raises:
        ValueError: for a missing, truncated or corrupted file, a refused
            `Lambda` layer, or a file Keras cannot rebuild.

    Example:
        ```python
        teacher = keras_distill.saving.load_model("teacher.keras")
        ```
    """
    name = argument_name
    path = check_path(name, path, (".keras",), "a `.keras` model file")
    check_existing_file(name, path, "an existing `.keras` file")
    config = _read_keras_config(path, name)
    lambdas = sorted(_lambda_layer_names(config))
    if lambdas and not allow_lambda:
        raise ValueError(
            f"`{name}` holds a model with Lambda layers {lambdas}, which can run arbitrary "
            "Python code, so it is not loaded. Opt in only for files you trust "
            "(`allow_lambda=True`, or `--unsafe-allow-lambda` on the command line). "
            f"Received: {name}={path!r}"
        )
    if lambdas:
        safe_mode = False
    try:
        return keras.models.load_model(
            path, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode
        )
    except Exception as error:  # Keras raises many types while rebuilding a model.
        saved_by = _saved_by_other_generation(path)
        if saved_by is not None:
            raise ValueError(
                f"`{name}` was saved by Keras {saved_by}, but keras_distill runs on {GENERATION} "
                f"(Keras {KERAS_VERSION}), which cannot rebuild it. {_GENERATION_FIX[GENERATION]} "
                f"Received: {name}={path!r}"
            ) from error
        reason = first_line(error).split(" Full object config:")[0]
        raise ValueError(
            f"`{name}` could not be loaded as a Keras model ({reason}). Received: {name}={path!r}"
        ) from error


def save_model(model, path):
    """Saves `model` to a `.keras` file atomically.

    The model is saved to a temporary file in the destination folder, synced
    to disk, and moved onto `path` with `os.replace` (atomic on POSIX and
    Windows). If anything fails (a read-only folder, a full disk, an error in
    Keras), the temporary file is removed and an existing `path` is left as
    it was: there is never a partial file at `path`.

    Args:
        model: A `keras.Model` of the active Keras generation.
        path: Destination ending in `.keras`. Missing folders are created.

    Returns:
        `path`.

    Raises:
        ValueError: for a `path` not ending in `.keras` or a non-model.
        PermissionError: when the folder is read-only.
        OSError: when the disk is full or another write fails.
    """
    path = check_path("path", path, (".keras",))
    check_keras_model("model", model)
    with atomic_path(path, suffix=".tmp.keras") as temporary:
        model.save(temporary)
    return path


def load_arrays(path, names=("x", "y"), argument_name="path"):
    """Loads named arrays from a `.npz` file without unpickling.

    Args:
        path: Path to a `.npz` file (`numpy.savez`), e.g. with arrays `x`
            (inputs, examples first) and `y` (labels).
        names: Arrays that must be present, returned in this order.
            Defaults to `("x", "y")`.
        argument_name: How errors name `path`. Defaults to `"path"`.

    Returns:
        A tuple of NumPy arrays, one per name.

    Raises:
        ValueError: for a missing or unreadable file, object (pickled)
            arrays, a missing name, empty arrays or arrays of different
            lengths.
    """
    name = argument_name
    path = check_path(name, path, (".npz",), "a `.npz` file")
    check_existing_file(name, path, "an existing `.npz` file")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"`{name}` is not a readable `.npz` file (not a complete zip archive as written by "
            f"numpy.savez). Received: {name}={path!r}"
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            present = list(archive.files)
            missing = [n for n in names if n not in present]
            if missing:
                raise ValueError(
                    f"`{name}` must hold arrays named {list(names)}; {missing[0]!r} is missing. "
                    f"Existing arrays: {present}. Received: {name}={path!r}"
                )
            arrays = tuple(archive[n] for n in names)
    except ValueError as error:
        if "pickle" not in str(error).lower():
            raise
        raise ValueError(
            f"`{name}` holds object arrays, which are not loaded (they would need unpickling). "
            f"Save plain numeric arrays. Received: {name}={path!r}"
        ) from None
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise ValueError(
            f"`{name}` is not a readable `.npz` file ({first_line(error)}). "
            f"Received: {name}={path!r}"
        ) from None
    scalars = [n for n, a in zip(names, arrays) if a.ndim == 0]
    if scalars:
        raise ValueError(
            f"`{name}` holds a single value (a 0-d array) as {scalars[0]!r}; it needs one row "
            f"per example (save e.g. `np.atleast_1d(...)`). Received: {name}={path!r}"
        )
    lengths = {n: len(a) for n, a in zip(names, arrays)}
    if any(length == 0 for length in lengths.values()):
        raise ValueError(
            f"`{name}` holds an empty array: there is nothing to use. "
            f"Received: {name}={path!r} with lengths {lengths}"
        )
    if len(set(lengths.values())) > 1:
        raise ValueError(
            f"The arrays in `{name}` must have one row per example. "
            f"Received: {name}={path!r} with lengths {lengths}"
        )
    return arrays


def load_config(path, argument_name="path"):
    """Loads a JSON or YAML configuration file into a dict.

    YAML is read with `yaml.safe_load` (plain data only: no Python objects
    are built). The file must hold a mapping.

    Args:
        path: Path ending in `.json`, `.yaml` or `.yml`.
        argument_name: How errors name `path`. Defaults to `"path"`.

    Returns:
        The mapping as a `dict`.

    Raises:
        ValueError: for a missing file, another suffix, a syntax error or
            content that is not a mapping.
        ImportError: for YAML when PyYAML is not installed.
    """
    name = argument_name
    path = check_path(name, path, CONFIG_SUFFIXES, f"a file ending in {list(CONFIG_SUFFIXES)}")
    check_existing_file(name, path, "an existing configuration file")
    with open(path, encoding="utf-8") as stream:
        text = stream.read()
    if path.lower().endswith(".json"):
        try:
            config = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"`{name}` is not valid JSON ({error.msg} at line {error.lineno}). "
                f"Received: {name}={path!r}"
            ) from None
    else:
        try:
            import yaml
        except ImportError as error:  # pragma: no cover - pyyaml is a dependency
            raise ImportError(
                "Reading YAML configuration files needs PyYAML: `pip install pyyaml`."
            ) from error
        try:
            config = yaml.safe_load(text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise ValueError(
                f"`{name}` is not valid YAML{where} (only plain data is read). "
                f"Received: {name}={path!r}"
            ) from None
    if not isinstance(config, dict):
        raise ValueError(
            f"`{name}` must hold a mapping of option names to values. "
            f"Received: {name}={path!r} holding {type(config).__name__}"
        )
    return config


def _read_keras_config(path, name):
    def corrupted(reason):
        return ValueError(
            f"`{name}` is not a valid `.keras` file: it is truncated or corrupted ({reason}). "
            f"Received: {name}={path!r}"
        )

    if not zipfile.is_zipfile(path):
        raise corrupted("not a complete zip archive")
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.namelist()
            config_info = archive.getinfo("config.json") if "config.json" in members else None
            oversized = config_info is not None and config_info.file_size > MAX_CONFIG_BYTES
            bad_member = None if oversized else archive.testzip()
            content = None
            if bad_member is None and config_info is not None and not oversized:
                content = json.loads(archive.read("config.json").decode("utf-8"))
    except RecursionError:
        raise _too_deep(name, path) from None
    except (zipfile.BadZipFile, OSError, EOFError, UnicodeDecodeError, ValueError) as error:
        raise corrupted(first_line(error)) from error
    if oversized:
        raise _oversized(config_info, name, path)
    if bad_member is not None:
        raise corrupted(f"member {bad_member!r} fails its CRC")
    for member in _KERAS_MEMBERS:
        if member not in members:
            raise corrupted(f"no {member!r} inside")
    if _depth(content) > MAX_CONFIG_DEPTH:
        raise _too_deep(name, path)
    return content


def _saved_by_other_generation(path):
    """The Keras version in the file's metadata.json when its major version is not ours."""
    try:
        with zipfile.ZipFile(path) as archive:
            if archive.getinfo("metadata.json").file_size > MAX_CONFIG_BYTES:
                return None
            version = str(json.loads(archive.read("metadata.json"))["keras_version"])
    except (KeyError, TypeError, ValueError, OSError, zipfile.BadZipFile, RecursionError):
        return None
    return None if version.split(".")[0] == KERAS_VERSION.split(".")[0] else version


def _oversized(info, name, path):
    """The error for a `config.json` declaring more than `MAX_CONFIG_BYTES` (left unread)."""
    return ValueError(
        f"`{name}` is not loaded: its config.json would inflate to {info.file_size} bytes "
        f"(from {info.compress_size}), more than the {MAX_CONFIG_BYTES} a model config "
        f"needs. It is damaged or hostile. Received: {name}={path!r}"
    )


def _too_deep(name, path):
    return ValueError(
        f"`{name}` is not loaded: its config.json is nested more than {MAX_CONFIG_DEPTH} levels "
        f"deep, far beyond any model's. It is damaged or hostile. Received: {name}={path!r}"
    )


def _depth(config):
    """Nesting depth of lists and dicts, without recursion."""
    deepest, stack = 0, [(config, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            deepest = max(deepest, depth)
            if depth > MAX_CONFIG_DEPTH:
                return depth
            stack.extend(
                (item, depth + 1) for item in (value.values() if isinstance(value, dict) else value)
            )
    return deepest


def _lambda_layer_names(config):
    """Names of every `Lambda` layer in a serialized model config, at any depth."""
    if isinstance(config, dict):
        if config.get("class_name") == "Lambda":
            inner = config.get("config") or {}
            yield inner.get("name", "?") if isinstance(inner, dict) else "?"
        for value in config.values():
            yield from _lambda_layer_names(value)
    elif isinstance(config, list):
        for value in config:
            yield from _lambda_layer_names(value)
