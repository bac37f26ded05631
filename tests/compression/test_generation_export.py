"""Causal LMs (keras_hub, tiny random configs) as .tflite files with `prefill` and `decode`:
greedy tokens against keras_hub's `generate()`, logits against the full forward pass, builtin ops
only, int8 weights, atomic writes and the errors of bad inputs."""

import os

import numpy as np
import pytest
from helpers import tiny_gpt2

from keras_distill._keras import keras as active_keras
from keras_distill.compression import TFLiteGenerator
from keras_distill.compression import export_generation_tflite
from keras_distill.compression import export_tflite
from keras_distill.compression import generation_export
from keras_distill.compression.litert import tflite_ops

# keras_hub builds Keras 3 models in both generations (it imports `keras`, never tf_keras), and
# the export traces `call_with_cache` with TensorFlow alone, so these tests run under both.
hub = pytest.importorskip("keras_hub", reason="the zoo extra: pip install 'keras-distill[zoo]'")
keras3 = pytest.importorskip("keras")

VOCABULARY = 96
LENGTH = 48


def gpt2():
    return tiny_gpt2(hub, VOCABULARY, LENGTH)


def llama():
    """Grouped-query attention: 4 query heads share 2 key/value heads."""
    keras3.utils.set_random_seed(1)
    backbone = hub.models.LlamaBackbone(
        vocabulary_size=VOCABULARY,
        num_layers=2,
        num_query_heads=4,
        num_key_value_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
    )
    return hub.models.LlamaCausalLM(backbone=backbone, preprocessor=None)


FAMILIES = {"gpt2": gpt2, "llama": llama}
# GPT-2's prompts fill at most 16 of the 48 positions; Llama's prefill takes all 48.
PREFILL_LENGTHS = {"gpt2": 16, "llama": LENGTH}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """`family -> (model, path, info)`, each exported once for the module."""
    folder = tmp_path_factory.mktemp("generation")
    done = {}

    def get(family):
        if family not in done:
            model = FAMILIES[family]()
            path = str(folder / f"{family}.tflite")
            info = export_generation_tflite(
                model, path, max_sequence_length=LENGTH, prefill_length=PREFILL_LENGTHS[family]
            )
            done[family] = (model, path, info)
        return done[family]

    return get


def make_prompts(count, seed, shortest=3, longest=8):
    rng = np.random.default_rng(seed)
    return [
        rng.integers(1, VOCABULARY, size=int(rng.integers(shortest, longest + 1))).astype("int32")
        for _ in range(count)
    ]


def keras_hub_greedy(model, prompts, new_tokens):
    """The reference: keras_hub `generate()` with the greedy sampler, token ids in and out.

    Without a preprocessor `generate()` takes `{"token_ids", "padding_mask"}` as wide as the
    whole sequence; it keeps the masked-in prompt tokens and fills the rest.
    """
    model.compile(sampler="greedy")
    width = max(len(p) for p in prompts) + new_tokens
    token_ids = np.zeros((len(prompts), width), "int32")
    mask = np.zeros((len(prompts), width), bool)
    for row, prompt in enumerate(prompts):
        token_ids[row, : len(prompt)] = prompt
        mask[row, : len(prompt)] = True
    output = model.generate({"token_ids": token_ids, "padding_mask": mask}, stop_token_ids=None)
    output = np.asarray(output["token_ids"])
    return [output[row, len(p) : len(p) + new_tokens] for row, p in enumerate(prompts)]


def forward_logits(model, prompt, tokens):
    """Logits choosing each generated token, from one full forward pass over the sequence."""
    sequence = np.concatenate([prompt, tokens[:-1]]).astype("int32")[None]
    logits = model({"token_ids": sequence, "padding_mask": np.ones_like(sequence, bool)})
    return np.asarray(logits)[0, len(prompt) - 1 :]


def check_parity(model, path, prompts, new_tokens):
    generator = TFLiteGenerator(path)
    expected = keras_hub_greedy(model, prompts, new_tokens)
    worst_per_step = np.zeros(new_tokens)
    for prompt, reference in zip(prompts, expected):
        result = generator.generate(prompt, new_tokens, return_logits=True)
        np.testing.assert_array_equal(result["tokens"], reference)
        diff = np.abs(result["logits"] - forward_logits(model, prompt, result["tokens"]))
        worst_per_step = np.maximum(worst_per_step, diff.max(axis=-1))
    print("largest |tflite - keras| logit difference per step:", np.round(worst_per_step, 8))
    assert worst_per_step.max() < 1e-4


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_greedy_tokens_equal_keras_hub_generate(exported, family):
    model, path, _ = exported(family)
    check_parity(model, path, make_prompts(2, seed=3), new_tokens=12)


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_32_tokens_from_8_prompts_equal_keras_hub_generate(exported, family):
    model, path, _ = exported(family)
    check_parity(model, path, make_prompts(8, seed=4, longest=16), new_tokens=32)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_signatures_cache_shape_and_builtin_ops_only(exported, family):
    model, path, info = exported(family)
    backbone = model.backbone
    query_heads = getattr(backbone, "num_query_heads", None) or backbone.num_heads
    kv_heads = getattr(backbone, "num_key_value_heads", None) or query_heads
    expected_cache = (1, 2, 2, LENGTH, kv_heads, backbone.hidden_dim // query_heads)
    assert info["cache_shape"] == expected_cache
    if family == "llama":
        assert expected_cache[4] == 2  # the key/value heads, not the 4 query heads
    generator = TFLiteGenerator(path)
    signatures = generator.interpreter.get_signature_list()
    assert signatures == {
        "decode": {"inputs": ["cache", "position", "token_id"], "outputs": ["cache", "logits"]},
        "prefill": {"inputs": ["length", "token_ids"], "outputs": ["cache", "logits"]},
    }
    assert generator.prefill_length == info["prefill_length"] == PREFILL_LENGTHS[family]
    assert generator.max_sequence_length == info["max_sequence_length"] == LENGTH
    assert generator.vocabulary_size == VOCABULARY
    ops = tflite_ops(path)
    assert ops == info["ops"]
    assert "DYNAMIC_UPDATE_SLICE" in ops  # the cache is written in place of a position
    assert not [op for op in ops if op.startswith("Flex") or op in ("DELEGATE", "CUSTOM")]
    assert len(info["max_abs_logit_diff"]) == 5  # prefill and 4 decode steps
    assert max(info["max_abs_logit_diff"]) < 1e-4


def test_tflite_ops_names_flex_ops(tmp_path):
    """The op listing can fail: a file that needs TensorFlow's own kernels shows Flex ops."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec((3, 3), tf.float32)])
    def flex(x):
        return tf.linalg.inv(x)

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [flex.get_concrete_function()], flex
    )
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS,
        tf.lite.OpsSet.SELECT_TF_OPS,
    ]
    path = tmp_path / "flex.tflite"
    path.write_bytes(converter.convert())
    assert tflite_ops(path) == ["FlexMatrixInverse"]


def test_dynamic_int8_weights(exported, tmp_path):
    model, float_path, _ = exported("gpt2")
    path = str(tmp_path / "gpt2_int8.tflite")
    info = export_generation_tflite(model, path, quantization="dynamic")
    assert info["quantization"] == "dynamic"
    assert info["file_size_bytes"] < os.path.getsize(float_path)
    assert not [op for op in info["ops"] if op.startswith("Flex")]
    generator = TFLiteGenerator(path)
    int8_weights = [d for d in generator.interpreter.get_tensor_details() if d["dtype"] == np.int8]
    assert int8_weights
    assert 0 < max(info["max_abs_logit_diff"]) < 0.05


def arithmetic_sequences(count, length, seed):
    """`x[t] = (x[0] + t * step) % VOCABULARY`, step 1-3: a task a small model learns to
    predict with a clear margin (random weights leave near-ties that any rounding flips)."""
    rng = np.random.default_rng(seed)
    start = rng.integers(0, VOCABULARY, (count, 1))
    step = rng.integers(1, 4, (count, 1))
    return ((start + step * np.arange(length)[None]) % VOCABULARY).astype("int32")


@pytest.mark.slow
def test_int8_file_is_under_a_third_and_keeps_the_first_16_tokens(tmp_path):
    """Wide enough (1.6M weights) that the weights dominate the file."""
    model = tiny_gpt2(hub, VOCABULARY, LENGTH, hidden=256, heads=4, intermediate_dim=1024)
    sequences = arithmetic_sequences(1024, 25, seed=0)
    model.compile(
        optimizer=keras3.optimizers.Adam(3e-3),
        loss=keras3.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x = {"token_ids": sequences[:, :-1], "padding_mask": np.ones((1024, 24), bool)}
    model.fit(x, sequences[:, 1:], batch_size=32, epochs=2, verbose=0)
    files = {}
    for mode in (None, "dynamic"):
        path = str(tmp_path / f"{mode}.tflite")
        files[mode] = (path, export_generation_tflite(model, path, quantization=mode))
    ratio = files["dynamic"][1]["file_size_bytes"] / files[None][1]["file_size_bytes"]
    print(f"int8 / float32 file size: {ratio:.3f}")
    assert ratio <= 0.3
    prompts = list(arithmetic_sequences(8, 6, seed=1))
    tokens = {
        mode: [TFLiteGenerator(path).generate(p, 16)["tokens"] for p in prompts]
        for mode, (path, _) in files.items()
    }
    agree = sum(np.array_equal(a, b) for a, b in zip(tokens[None], tokens["dynamic"]))
    print(f"prompts whose first 16 tokens agree: {agree} of 8")
    assert agree >= 7


# Bad inputs.


def test_a_model_without_call_with_cache_is_refused(tmp_path):
    inputs = active_keras.Input((4,))
    model = active_keras.Model(inputs, active_keras.layers.Dense(3)(inputs))
    with pytest.raises(
        TypeError, match=r"`model` must be a causal language model.*Received: model="
    ):
        export_generation_tflite(model, str(tmp_path / "x.tflite"))
    assert not os.listdir(tmp_path)


def test_a_maximum_length_above_the_models_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"at most 48.*Received: max_sequence_length=64"):
        export_generation_tflite(gpt2(), str(tmp_path / "x.tflite"), max_sequence_length=64)


def test_a_rotary_model_needs_a_maximum_length(tmp_path):
    with pytest.raises(ValueError, match=r"max_sequence_length=256.*Received: max_sequence_length"):
        export_generation_tflite(llama(), str(tmp_path / "x.tflite"))


def test_prefill_longer_than_the_cache_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"`prefill_length` must be at most.*prefill_length=49"):
        export_generation_tflite(gpt2(), str(tmp_path / "x.tflite"), prefill_length=49)


def test_calibrated_int8_is_refused_with_the_alternative(tmp_path):
    with pytest.raises(ValueError, match=r"quantization='dynamic'.*Received: quantization='int8'"):
        export_generation_tflite(gpt2(), str(tmp_path / "x.tflite"), quantization="int8")
    with pytest.raises(ValueError, match=r"quantization"):
        export_generation_tflite(gpt2(), str(tmp_path / "x.tflite"), quantization="int4")


def test_a_failed_export_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "lm.tflite"
    path.write_bytes(b"old")

    def truncated(*args):
        return b"TFL3 truncated"

    monkeypatch.setattr(generation_export, "_convert", truncated)
    with pytest.raises(ValueError, match="corrupted or truncated"):
        export_generation_tflite(gpt2(), str(path), max_sequence_length=8)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["lm.tflite"]


def test_the_runner_refuses_prompts_that_do_not_fit(exported):
    _, path, _ = exported("gpt2")
    generator = TFLiteGenerator(path)
    with pytest.raises(ValueError, match=r"longer than the 16 tokens.*prompt of length 17"):
        generator.generate(np.ones(17, "int32"), 1)
    with pytest.raises(ValueError, match=r"at most 38 tokens.*Received: max_new_tokens=39"):
        generator.generate(np.ones(10, "int32"), 39)
    assert len(generator.generate(np.ones(10, "int32"), 38)["tokens"]) == 38
    with pytest.raises(ValueError, match=r"token ids in \[0, 96\).*from 1 to 96"):
        generator.generate([1, 96], 1)
    with pytest.raises(ValueError, match=r"1-D sequence of integer token ids.*float"):
        generator.generate([1.5, 2.0], 1)
    with pytest.raises(ValueError, match=r"`max_new_tokens` must be an integer >= 1"):
        generator.generate([1, 2], 0)


def test_the_runner_refuses_a_file_without_the_two_signatures(tmp_path):
    inputs = active_keras.Input((4,))
    model = active_keras.Model(inputs, active_keras.layers.Dense(3)(inputs))
    path = str(tmp_path / "plain.tflite")
    export_tflite(model, path, num_samples=2)
    with pytest.raises(ValueError, match=r"'prefill' and 'decode'.*\['serving_default'\]"):
        TFLiteGenerator(path)
