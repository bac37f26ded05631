"""Real text offline: the Python standard library's own sources, as byte-level tokens.

The corpus is the `.py` files of the running Python's standard library
(located through `sysconfig.get_paths()["stdlib"]`): several MB of text that
no one here wrote, identical on every machine with the same Python version.
Excluded: `site-packages`, the per-machine `_sysconfigdata_*.py` and
`config-*` files, `__pycache__`, and (by default) the test suites.

Files are split into train, validation and test by a hash of their path
relative to the library (CRC-32), so the split is the same on every machine
and a file never straddles two splits. Each file's UTF-8 bytes become token
ids `0..255`, followed by `END_OF_TEXT` (256); `PAD` (257) fills the last
window. `VOCABULARY_SIZE` is 258.

`causal_lm_windows` cuts a token stream into `(x, y, sample_weight)` shaped as
keras_hub's `CausalLMPreprocessor` yields them: `x = {"token_ids",
"padding_mask"}` of length `sequence_length`, `y` the same tokens shifted by
one, and `sample_weight` the padding mask of `y`. Any keras_hub causal LM with
`vocabulary_size >= VOCABULARY_SIZE` trains on them.
"""

import os
import sysconfig
import zlib

import numpy as np

from keras_distill import _checks

END_OF_TEXT = 256
PAD = 257
VOCABULARY_SIZE = 258
SPLITS = ("train", "validation", "test")
_TEST_FOLDERS = frozenset({"test", "tests", "idle_test"})


def stdlib_root():
    """The folder of the running Python's standard library."""
    return sysconfig.get_paths()["stdlib"]


def stdlib_files(root=None, include_tests=False):
    """The standard library's `.py` files, as sorted `/`-separated relative paths.

    Args:
        root: Library folder. Defaults to `stdlib_root()`.
        include_tests: Whether to keep the test suites (`test/`, `tests/`,
            `idle_test/`, about 60% of the bytes). Defaults to `False`.

    Returns:
        A sorted list of relative paths, e.g. `"json/decoder.py"`.
    """
    root = stdlib_root() if root is None else os.fspath(root)
    found = []
    for folder, subfolders, files in os.walk(root):
        relative = os.path.relpath(folder, root)
        parts = [] if relative == "." else relative.split(os.sep)
        skip = (
            "site-packages" in parts
            or "dist-packages" in parts
            or "__pycache__" in parts
            or (parts and parts[0].startswith("config-"))
            or (not include_tests and _TEST_FOLDERS.intersection(parts))
        )
        if skip:
            subfolders[:] = []
            continue
        for name in files:
            if name.endswith(".py") and not name.startswith("_sysconfigdata"):
                found.append("/".join([*parts, name]))
    return sorted(found)


def split_of(path, validation_fraction=0.05, test_fraction=0.05):
    """The split (`"train"`, `"validation"` or `"test"`) a relative path belongs to.

    `u = crc32(path) / 2^32` in `[0, 1)`: test below `test_fraction`, then
    validation below `test_fraction + validation_fraction`, else train.
    """
    position = zlib.crc32(path.encode("utf-8")) / 2**32
    if position < test_fraction:
        return "test"
    if position < test_fraction + validation_fraction:
        return "validation"
    return "train"


def encode(text):
    """Byte-level token ids (int32 `0..255`) of a `str` (UTF-8) or `bytes`."""
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    return np.frombuffer(data, np.uint8).astype(np.int32)


def decode(token_ids):
    """The text of byte-level token ids; `END_OF_TEXT` becomes a newline, `PAD` is dropped.

    Invalid UTF-8 (e.g. a window that cuts a character) decodes with `U+FFFD`.
    """
    ids = np.asarray(token_ids).reshape(-1)
    ids = np.where(ids == END_OF_TEXT, ord("\n"), ids)
    data = ids[(ids >= 0) & (ids < 256)].astype(np.uint8).tobytes()
    return data.decode("utf-8", errors="replace")


def stdlib_corpus(
    split="train",
    max_bytes=None,
    root=None,
    include_tests=False,
    validation_fraction=0.05,
    test_fraction=0.05,
):
    """The token ids of one split: its files in sorted order, each ended by `END_OF_TEXT`.

    Args:
        split: `"train"`, `"validation"` or `"test"`. Defaults to `"train"`.
        max_bytes: Optional budget: stop after this many tokens (the last
            file is cut). Defaults to the whole split.
        root: Library folder. Defaults to `stdlib_root()`.
        include_tests: Whether to keep the test suites. Defaults to `False`.
        validation_fraction: Share of files in validation. Defaults to `0.05`.
        test_fraction: Share of files in test. Defaults to `0.05`.

    Returns:
        Int32 array of token ids.

    Example:
        >>> ids = stdlib_corpus("validation", max_bytes=100_000)
        >>> decode(ids[:40])
    """
    _checks.check_choice("split", split, SPLITS)
    if max_bytes is not None:
        max_bytes = _checks.check_int("max_bytes", max_bytes)
    validation_fraction = _checks.check_unit_interval("validation_fraction", validation_fraction)
    test_fraction = _checks.check_unit_interval("test_fraction", test_fraction)
    if validation_fraction + test_fraction >= 1.0:
        raise ValueError(
            "`validation_fraction + test_fraction` must be below 1, leaving files to train on. "
            f"Received: validation_fraction={validation_fraction}, test_fraction={test_fraction}"
        )
    root = stdlib_root() if root is None else os.fspath(root)
    pieces, total = [], 0
    for path in stdlib_files(root, include_tests):
        if split_of(path, validation_fraction, test_fraction) != split:
            continue
        with open(os.path.join(root, *path.split("/")), "rb") as file:
            ids = np.append(encode(file.read()), END_OF_TEXT).astype(np.int32)
        if max_bytes is not None and total + len(ids) >= max_bytes:
            pieces.append(ids[: max_bytes - total])
            total = max_bytes
            break
        pieces.append(ids)
        total += len(ids)
    if not pieces:
        raise ValueError(
            f"No standard library file falls in the {split!r} split under {root!r}. "
            f"Received: split={split!r}, root={root!r}"
        )
    return np.concatenate(pieces)


def causal_lm_windows(token_ids, sequence_length, stride=None):
    """Cuts a token stream into causal LM examples shaped as keras_hub yields them.

    Window `i` covers tokens `[i * stride, i * stride + sequence_length + 1)`;
    `x["token_ids"]` is its first `sequence_length` tokens, `y` its last
    `sequence_length` (the logits at position `j` predict token `j + 1`). The
    last window is padded with `PAD` (its `padding_mask` is `False` there);
    `sample_weight` is `y`'s padding mask, so padded targets do not count.

    Args:
        token_ids: 1-D integer array (e.g. from `stdlib_corpus`).
        sequence_length: Model input length. Must be >= 1.
        stride: Start-to-start distance of windows. Defaults to
            `sequence_length` (windows overlap by the one shifted token).

    Returns:
        `(x, y, sample_weight)`: `x = {"token_ids": int32 (n, L),
        "padding_mask": bool (n, L)}`, `y` int32 `(n, L)`, `sample_weight`
        float32 `(n, L)`.
    """
    sequence_length = _checks.check_int("sequence_length", sequence_length)
    stride = sequence_length if stride is None else _checks.check_int("stride", stride)
    ids = np.asarray(token_ids).reshape(-1).astype(np.int32)
    if len(ids) < 2:
        raise ValueError(
            "`token_ids` must hold at least 2 tokens (one input and its next token). "
            f"Received: token_ids with {len(ids)} tokens"
        )
    starts = np.arange(0, len(ids) - 1, stride)
    span = sequence_length + 1
    padded = np.concatenate([ids, np.full(span, PAD, np.int32)])
    windows = padded[starts[:, None] + np.arange(span)[None, :]]
    mask = (starts[:, None] + np.arange(span)[None, :]) < len(ids)
    x = {"token_ids": windows[:, :-1], "padding_mask": mask[:, :-1]}
    return x, windows[:, 1:], mask[:, 1:].astype(np.float32)
