"""Generation speed of a causal LM exported with `prefill` and `decode` signatures.

Builds keras_hub causal LMs from configs (random weights: speed does not
depend on them), exports each with `export_generation_tflite` (float32 and
int8 weights, a 64-token prefill and a cache of `--max-length` positions)
and measures, after warm-up:
- `decode`: one token through LiteRT's `decode` signature (the cache goes in
  and comes out, as on a phone), with 1 and 2 interpreter threads;
- `prefill`: a 64-token prompt through the `prefill` signature;
- the same two steps in TensorFlow: the Keras model's `call_with_cache` in
  a `tf.function` (graph mode, TensorFlow's own thread pools), the way
  keras_hub's `generate()` calls it.
Each repeat times a block of `--tokens` decode steps (per token) and one
prefill for every runner in turn, so the runners alternate; the table gives
the minimum and the median over the repeats, and the TensorFlow / LiteRT
ratio of the minima. The results go to docs/android.md, below its
"## Measured speed" heading (the text above it is kept):

    .venv/bin/python benchmarks/generation.py
"""

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_distill.compression import TFLiteGenerator  # noqa: E402
from keras_distill.compression import export_generation_tflite  # noqa: E402
from keras_distill.compression.generation_export import _GenerationFunctions  # noqa: E402

COMMAND = ".venv/bin/python benchmarks/generation.py"
HEADING = "## Measured speed"
PREFILL = 64


def build(family, vocabulary, max_length):
    import keras
    import keras_hub

    keras.utils.set_random_seed(0)
    if family == "gpt2":
        backbone = keras_hub.models.GPT2Backbone(
            vocabulary_size=vocabulary,
            num_layers=4,
            num_heads=4,
            hidden_dim=256,
            intermediate_dim=1024,
            max_sequence_length=max_length,
        )
        return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    backbone = keras_hub.models.LlamaBackbone(
        vocabulary_size=vocabulary,
        num_layers=4,
        num_query_heads=8,
        num_key_value_heads=2,
        hidden_dim=256,
        intermediate_dim=768,
    )
    return keras_hub.models.LlamaCausalLM(backbone=backbone, preprocessor=None)


def describe(family, model):
    backbone = model.backbone
    heads = (
        f"{backbone.num_query_heads} query / {backbone.num_key_value_heads} key-value heads"
        if family == "llama"
        else f"{backbone.num_heads} heads"
    )
    return (
        f"{family}: {model.count_params():,} parameters, {backbone.num_layers} layers, "
        f"hidden {backbone.hidden_dim}, {heads}, vocabulary {backbone.vocabulary_size}"
    )


class LiteRTRunner:
    def __init__(self, path, threads, prompt):
        self.generator = TFLiteGenerator(path, num_threads=threads)
        self.prompt = prompt
        self.start = self.generator.prefill(prompt)

    def prefill(self):
        self.generator.prefill(self.prompt)

    def decode(self, steps):
        outputs = self.start
        for position in range(len(self.prompt), len(self.prompt) + steps):
            outputs = self.generator.decode(7, position, outputs["cache"])


class TensorFlowRunner:
    def __init__(self, model, cache_shape, prompt):
        functions = _GenerationFunctions(model, cache_shape, PREFILL)
        self._prefill = tf.function(functions.prefill, input_signature=functions.prefill_signature)
        self._decode = tf.function(functions.decode, input_signature=functions.decode_signature)
        self.prompt = prompt
        self.token_ids = tf.constant(prompt[None])
        self.length = tf.constant([len(prompt)], tf.int32)
        self.start = self._prefill(self.token_ids, self.length)

    def prefill(self):
        self._prefill(self.token_ids, self.length)["logits"].numpy()

    def decode(self, steps):
        outputs = self.start
        token = tf.constant([[7]], tf.int32)
        for position in range(len(self.prompt), len(self.prompt) + steps):
            outputs = self._decode(token, tf.constant([position], tf.int32), outputs["cache"])
        outputs["logits"].numpy()


def measure(runners, tokens, repeats, warmup):
    """`{name: {"decode": [ms per token...], "prefill": [ms...]}}`, runners alternating."""
    times = {name: {"decode": [], "prefill": []} for name in runners}
    for repeat in range(warmup + repeats):
        for name, runner in runners.items():
            start = time.perf_counter()
            runner.decode(tokens)
            decode = (time.perf_counter() - start) * 1000.0 / tokens
            start = time.perf_counter()
            runner.prefill()
            prefill = (time.perf_counter() - start) * 1000.0
            if repeat >= warmup:
                times[name]["decode"].append(decode)
                times[name]["prefill"].append(prefill)
    return times


def table(family, model, sizes, times):
    lines = [
        f"### {describe(family, model)}",
        "",
        "| runner | file MB | decode ms/token min | median | prefill 64 ms min | median "
        "| TF / this (decode) | TF / this (prefill) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    tf_times = times["TensorFlow call_with_cache"]
    for name, entry in times.items():
        decode, prefill = entry["decode"], entry["prefill"]
        decode_ratio = min(tf_times["decode"]) / min(decode)
        prefill_ratio = min(tf_times["prefill"]) / min(prefill)
        size = sizes.get(name)
        lines.append(
            f"| {name} | {'' if size is None else f'{size / 1e6:.2f}'} | {min(decode):.3f} "
            f"| {statistics.median(decode):.3f} | {min(prefill):.2f} "
            f"| {statistics.median(prefill):.2f} | {decode_ratio:.2f} | {prefill_ratio:.2f} |"
        )
    return "\n".join(lines) + "\n"


def cache_copy_forms(cache_shape, repeats):
    """ms of LiteRT copying a cache of `cache_shape` per layer, in two forms of the same data.

    keras_hub's `call_with_cache` takes layer `i`'s cache as `cache[:, i, ...]` (a
    `STRIDED_SLICE` that drops the axis) and stacks the layers' caches again (`PACK`); the other
    form keeps the axis (`SLICE`) and concatenates (`CONCATENATION`).
    """
    from keras_distill.compression.litert import load_interpreter

    layers = cache_shape[1]
    forms = {
        "cache[:, i, ...] and stack (keras_hub)": lambda c: tf.stack(
            [c[:, i, ...] + 0.0 for i in range(layers)], axis=1
        ),
        "cache[:, i:i+1, ...] and concat": lambda c: tf.concat(
            [c[:, i : i + 1, ...] + 0.0 for i in range(layers)], axis=1
        ),
    }
    cache = np.random.default_rng(0).random(cache_shape, dtype=np.float32)
    result = {}
    for name, form in forms.items():
        function = tf.function(form, input_signature=[tf.TensorSpec(cache_shape, tf.float32)])
        converter = tf.lite.TFLiteConverter.from_concrete_functions(
            [function.get_concrete_function()], function
        )
        interpreter = load_interpreter(converter.convert(), num_threads=1)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], cache)
        times = []
        for _ in range(repeats + 2):
            start = time.perf_counter()
            interpreter.invoke()
            times.append((time.perf_counter() - start) * 1000.0)
        result[name] = (min(times[2:]), statistics.median(times[2:]))
    return result


def run_family(family, args, folder):
    model = build(family, args.vocabulary, args.max_length)
    rng = np.random.default_rng(0)
    prompt = rng.integers(1, args.vocabulary, size=PREFILL).astype("int32")
    runners, sizes = {}, {}
    cache_shape = None
    for mode, label in ((None, "float32"), ("dynamic", "int8 weights")):
        path = os.path.join(folder, f"{family}_{label.replace(' ', '_')}.tflite")
        info = export_generation_tflite(
            model,
            path,
            max_sequence_length=args.max_length,
            prefill_length=PREFILL,
            quantization=mode,
        )
        cache_shape = info["cache_shape"]
        for threads in (1, 2):
            name = f"LiteRT {label}, {threads} thread{'s' if threads > 1 else ''}"
            runners[name] = LiteRTRunner(path, threads, prompt)
            sizes[name] = info["file_size_bytes"]
    runners["TensorFlow call_with_cache"] = TensorFlowRunner(model, cache_shape, prompt)
    times = measure(runners, args.tokens, args.repeats, args.warmup)
    copies = cache_copy_forms(cache_shape, args.repeats)
    lines = [
        "",
        f"Copying this cache ({np.prod(cache_shape) * 4 / 1e6:.2f} MB, shape {cache_shape}) "
        "once, layer by layer, in LiteRT (1 thread, min / median ms):",
        "",
    ]
    lines += [f"- {name}: {low:.3f} / {mid:.3f}" for name, (low, mid) in copies.items()]
    return table(family, model, sizes, times) + "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=["gpt2", "llama"])
    parser.add_argument("--vocabulary", type=int, default=4096)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--tokens", type=int, default=16, help="decode steps per repeat")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--output", default="docs/android.md")
    args = parser.parse_args()
    sections = []
    with tempfile.TemporaryDirectory() as folder:
        for family in args.families:
            section = run_family(family, args, folder)
            print(section, flush=True)
            sections.append(section)
    header = [
        HEADING,
        "",
        f"`{COMMAND} {' '.join(sys.argv[1:])}`".replace(" `", "`"),
        "",
        f"Batch 1, cache of {args.max_length} positions, prompt of {PREFILL} tokens; "
        f"decode: a block of {args.tokens} steps per repeat, per token; minimum and median of "
        f"{args.repeats} alternated repeats after {args.warmup} warm-up ones. "
        "`TF / this`: ratio of the minima (above 1: LiteRT is faster). Machine: "
        f"{platform.machine()}, {os.cpu_count()} CPU cores (shared), Python "
        f"{platform.python_version()}, TensorFlow {tf.__version__}.",
        "",
    ]
    text = "\n".join(header) + "\n" + "\n".join(sections)
    head = ""
    if os.path.exists(args.output):
        with open(args.output, encoding="utf-8") as handle:
            page = handle.read()
        head = page[: page.index(HEADING)] if HEADING in page else page.rstrip() + "\n\n"
    from keras_distill._files import write_text

    write_text(args.output, head + text)


if __name__ == "__main__":
    main()
