"""Peak memory of a top-k teacher cache over many tokens: building it, then training from it.

A token-level teacher (embedding and a vocabulary-wide head) runs over
`--tokens` tokens in sequences of `--length`; `ShardedTeacherCache.build`
keeps `k` logits per token and writes them a shard at a time. Then a
student trains `--steps` steps from `cache.dataset(...)`, which reads the
shards in turn and expands the kept logits one batch at a time. The peak
resident set size is read after each phase, beside the size of the stored
files and of the full float32 logits.

    python benchmarks/cache_memory.py [--tokens 10000000] [--vocabulary 1024] [--top-k 32]
"""

import argparse
import os
import shutil
import tempfile
import time

import numpy as np
from resident_memory import peak_mib

from keras_distill import Distiller
from keras_distill import ShardedTeacherCache
from keras_distill._keras import keras


def tagger(vocabulary, length, width, seed):
    keras.utils.set_random_seed(seed)
    tokens = keras.Input((length,), dtype="int32")
    hidden = keras.layers.Embedding(vocabulary, width)(tokens)
    return keras.Model(tokens, keras.layers.Dense(vocabulary)(hidden))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=10_000_000)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--vocabulary", type=int, default=1024)
    parser.add_argument("--top-k", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--examples-per-shard", type=int, default=512)
    args = parser.parse_args(argv)
    examples = args.tokens // args.length
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, args.vocabulary, size=(examples, args.length)).astype("int32")
    labels = np.roll(tokens, -1, axis=1)
    teacher = tagger(args.vocabulary, args.length, 64, seed=1)
    start_mib = peak_mib()
    start = time.perf_counter()
    folder = tempfile.mkdtemp(prefix="teacher_cache_")
    cache = ShardedTeacherCache.build(
        teacher,
        tokens,
        folder,
        examples_per_shard=args.examples_per_shard,
        top_k=args.top_k,
        dtype="float16",
        top_k_rest="uniform",
        batch_size=64,
    )
    build_s, build_mib = time.perf_counter() - start, peak_mib()
    student = tagger(args.vocabulary, args.length, 16, seed=2)
    distiller = Distiller(student=student, teacher=cache)
    distiller.compile(optimizer="adam", alpha=0.5, temperature=2.0)
    data = cache.dataset(tokens, labels, batch_size=8).take(args.steps)
    start = time.perf_counter()
    distiller.fit(data, epochs=1, verbose=0)
    train_s, train_mib = time.perf_counter() - start, peak_mib()
    full_gib = examples * args.length * args.vocabulary * 4 / 2**30
    stored = sum(os.path.getsize(os.path.join(folder, name)) for _, _, name in cache.shards)
    print(
        f"{examples * args.length:,} tokens, vocabulary {args.vocabulary}, top-{args.top_k} "
        f"(float16 values, int32 indices, uniform rest)"
    )
    print()
    print("| phase | seconds | peak resident memory (MiB) |")
    print("|---|---|---|")
    print(f"| inputs made (before the cache) | - | {start_mib:.0f} |")
    print(f"| ShardedTeacherCache.build | {build_s:.0f} | {build_mib:.0f} |")
    print(f"| {args.steps} training steps from cache.dataset | {train_s:.0f} | {train_mib:.0f} |")
    print()
    print(
        f"{len(cache.shards)} shard files, {stored / 2**30:.2f} GiB in all; "
        f"the full float32 logits: {full_gib:.1f} GiB"
    )
    shutil.rmtree(folder)


if __name__ == "__main__":
    main()
