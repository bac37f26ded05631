import os
import sysconfig

import numpy as np
import pytest
from helpers import tiny_gpt2

from keras_distill._keras import IS_LEGACY
from keras_distill._keras import keras
from keras_distill.data import text


def test_stdlib_files_are_sorted_library_sources_without_machine_specific_files():
    files = text.stdlib_files()
    assert files == sorted(files) and len(files) > 300
    assert {"os.py", "json/decoder.py", "argparse.py"} <= set(files)
    for path in files:
        assert path.endswith(".py")
        parts = path.split("/")
        assert not {"site-packages", "test", "tests", "idle_test", "__pycache__"} & set(parts)
        assert not parts[-1].startswith("_sysconfigdata")
    assert len(text.stdlib_files(include_tests=True)) > len(files)


def test_splits_partition_the_files_by_a_stable_hash():
    files = text.stdlib_files()
    splits = {name: [p for p in files if text.split_of(p) == name] for name in text.SPLITS}
    assert sum(len(v) for v in splits.values()) == len(files)
    for name in ("validation", "test"):
        assert 0.02 < len(splits[name]) / len(files) < 0.1, name
    # Pinned: the split of a path depends only on the path (CRC-32), on every machine.
    assert text.split_of("os.py") == "train"
    assert text.split_of("json/decoder.py") == "train"
    assert {text.split_of(p, 0.0, 0.0) for p in files} == {"train"}
    assert {text.split_of(p, 0.0, 1.0) for p in files} == {"test"}


def test_corpus_is_the_files_bytes_in_order_each_ended_by_end_of_text():
    root = sysconfig.get_paths()["stdlib"]
    validation = [p for p in text.stdlib_files() if text.split_of(p) == "validation"]
    first, second = (open(os.path.join(root, p), "rb").read() for p in validation[:2])
    budget = len(first) + 1 + 100
    ids = text.stdlib_corpus("validation", max_bytes=budget)
    assert ids.dtype == np.int32 and ids.shape == (budget,)
    np.testing.assert_array_equal(ids[: len(first)], np.frombuffer(first, np.uint8))
    assert ids[len(first)] == text.END_OF_TEXT
    np.testing.assert_array_equal(ids[len(first) + 1 :], np.frombuffer(second[:100], np.uint8))
    assert ids.min() >= 0 and ids.max() <= text.END_OF_TEXT


def test_encode_and_decode_round_trip():
    sample = "def f(x):\n    return 'λ' * x  # ✓\n"
    ids = text.encode(sample)
    assert ids.dtype == np.int32 and len(ids) == len(sample.encode("utf-8"))
    assert text.decode(ids) == sample
    assert text.decode([*ids, text.END_OF_TEXT, text.PAD, text.PAD]) == sample + "\n"
    assert text.decode(text.encode("λ")[:1]) == "\ufffd"


def test_windows_are_shifted_by_one_with_padding_masked():
    ids = np.arange(10, dtype=np.int32)
    x, y, sample_weight = text.causal_lm_windows(ids, sequence_length=4)
    pad = text.PAD
    np.testing.assert_array_equal(x["token_ids"], [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, pad, pad]])
    np.testing.assert_array_equal(y, [[1, 2, 3, 4], [5, 6, 7, 8], [9, pad, pad, pad]])
    np.testing.assert_array_equal(x["padding_mask"], x["token_ids"] != pad)
    np.testing.assert_array_equal(sample_weight, (y != pad).astype("float32"))
    assert x["padding_mask"].dtype == bool and sample_weight.dtype == np.float32
    assert y.dtype == np.int32 and x["token_ids"].dtype == np.int32
    x, y, _ = text.causal_lm_windows(ids, sequence_length=4, stride=2)
    np.testing.assert_array_equal(x["token_ids"][:, 0], [0, 2, 4, 6, 8])
    np.testing.assert_array_equal(y[:, 0], [1, 3, 5, 7, 9])


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: text.stdlib_corpus("dev"), r"`split` must be one of \['train'.*split='dev'"),
        (lambda: text.stdlib_corpus(max_bytes=0), r"`max_bytes` must be an integer >= 1"),
        (
            lambda: text.stdlib_corpus(validation_fraction=0.5, test_fraction=0.5),
            r"must be below 1.*Received: validation_fraction=0.5, test_fraction=0.5",
        ),
        (lambda: text.causal_lm_windows([1, 2, 3], 0), r"`sequence_length` must be an integer"),
        (lambda: text.causal_lm_windows([1], 4), r"at least 2 tokens.*Received: token_ids"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def gpt2(sequence_length):
    import keras_hub

    return tiny_gpt2(keras_hub, text.VOCABULARY_SIZE, sequence_length, layers=1, hidden=16)


@pytest.mark.skipif(IS_LEGACY, reason="keras_hub is built on Keras 3; tf_keras has no keras_hub")
def test_a_keras_hub_causal_lm_takes_the_windows():
    x, y, sample_weight = text.causal_lm_windows(text.encode("import os\n" * 8), 16)
    logits = gpt2(16)(x)
    assert tuple(logits.shape) == (*y.shape, text.VOCABULARY_SIZE) == (*sample_weight.shape, 258)


@pytest.mark.slow
@pytest.mark.skipif(IS_LEGACY, reason="keras_hub is built on Keras 3; tf_keras has no keras_hub")
def test_a_keras_hub_causal_lm_trains_on_the_windows():
    ids = text.stdlib_corpus("test", max_bytes=2000)
    x, y, sample_weight = text.causal_lm_windows(ids, sequence_length=16)
    model = gpt2(16)
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=[],
    )
    history = model.fit(x, y, sample_weight=sample_weight, batch_size=32, epochs=2, verbose=0)
    losses = history.history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
