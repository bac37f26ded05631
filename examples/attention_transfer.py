"""Attention transfer between Transformers on a sequence task generated in code.

Task: each sequence starts with a pointer token `p`; the label is the class of
the token at position `p`. Sequences have random lengths (padding id 0, masked
in attention). A 4-layer, 4-head teacher is distilled into a 2-layer, 2-head
student, with logits KD alone and with MiniLM-style attention KL on a uniform
(TinyBERT) layer mapping. Offline; a few minutes on 2 CPU cores.

    python examples/attention_transfer.py [--epochs 30] [--student-epochs 6]
"""

import argparse

import numpy as np
import tensorflow as tf

from keras_distill import AttentionMatch
from keras_distill import Distiller
from keras_distill._keras import keras

LENGTH, VOCAB, NUM_CLASSES = 12, 24, 4


def make_task(num_examples, seed):
    """Token sequences; label = class of the token the first token points at."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(6, LENGTH + 1, size=num_examples)
    tokens = rng.integers(NUM_CLASSES + 1, VOCAB, size=(num_examples, LENGTH))
    pointers = rng.integers(1, lengths)
    tokens[:, 0] = pointers  # ids 1..LENGTH-1 double as pointers
    tokens[np.arange(LENGTH)[None, :] >= lengths[:, None]] = 0
    labels = tokens[np.arange(num_examples), pointers] % NUM_CLASSES
    return tokens.astype("int32"), labels.astype("int32")


@keras.saving.register_keras_serializable(package="examples")
class TokenAndPosition(keras.layers.Layer):
    """Token embedding plus a learned position embedding."""

    def __init__(self, vocab, length, width, **kwargs):
        super().__init__(**kwargs)
        self.vocab, self.length, self.width = vocab, length, width
        self.tokens = keras.layers.Embedding(vocab, width)
        self.positions = keras.layers.Embedding(length, width)

    def call(self, ids):
        return self.tokens(ids) + self.positions(tf.range(self.length))[None]

    def get_config(self):
        return {
            **super().get_config(),
            "vocab": self.vocab,
            "length": self.length,
            "width": self.width,
        }


@keras.saving.register_keras_serializable(package="examples")
class PaddingMask(keras.layers.Layer):
    """Token ids -> `(batch, L, L)` attention mask (both positions are tokens)."""

    def call(self, ids):
        keep = ids != 0
        return keep[:, :, None] & keep[:, None, :]


def transformer(prefix, layers, heads, width=32):
    ids = keras.Input((LENGTH,), dtype="int32")
    mask = PaddingMask(name=f"{prefix}_mask")(ids)
    x = TokenAndPosition(VOCAB, LENGTH, width, name=f"{prefix}_embed")(ids)
    for i in range(layers):
        attended = keras.layers.MultiHeadAttention(heads, width // heads, name=f"{prefix}_mha_{i}")(
            x, x, attention_mask=mask
        )
        x = keras.layers.LayerNormalization()(x + attended)
        x = keras.layers.LayerNormalization()(x + keras.layers.Dense(width, activation="relu")(x))
    x = keras.layers.Flatten()(x)
    return keras.Model(
        ids, keras.layers.Dense(NUM_CLASSES, name=f"{prefix}_logits")(x), name=prefix
    )


def accuracy(model, x, y):
    return float(np.mean(np.asarray(model(x, training=False)).argmax(-1) == y))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30, help="teacher epochs")
    parser.add_argument("--student-epochs", type=int, default=6)
    parser.add_argument("--train", type=int, default=3000, help="training examples")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    x_train, y_train = make_task(args.train, args.seed)
    x_test, y_test = make_task(1000, args.seed + 1)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    keras.utils.set_random_seed(args.seed)
    teacher = transformer("t", layers=4, heads=4)
    teacher.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    teacher.fit(x_train, y_train, epochs=args.epochs, batch_size=64, verbose=0)
    results = {"teacher (4 layers x 4 heads)": accuracy(teacher, x_test, y_test)}

    keras.utils.set_random_seed(args.seed)
    alone = transformer("s", layers=2, heads=2)
    alone.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    alone.fit(x_train, y_train, epochs=args.student_epochs, batch_size=64, verbose=0)
    results["student alone (2 x 2)"] = accuracy(alone, x_test, y_test)

    teacher_layers = [f"t_mha_{i}" for i in range(4)]
    recipes = {
        "student, logits KD": [],
        "student, KD + attention KL": AttentionMatch.uniform(
            ["s_mha_0", "s_mha_1"], teacher_layers, loss="kl"
        ),
    }
    for name, matches in recipes.items():
        keras.utils.set_random_seed(args.seed)
        student = transformer("s", layers=2, heads=2)
        distiller = Distiller(student=student, teacher=teacher, attention_matches=matches)
        distiller.compile(optimizer=keras.optimizers.Adam(1e-3), alpha=0.5, temperature=2.0)
        history = distiller.fit(
            x_train, y_train, epochs=args.student_epochs, batch_size=64, verbose=0
        )
        results[name] = accuracy(student, x_test, y_test)
        print(
            f"{name}: last epoch "
            + ", ".join(f"{k}={v[-1]:.3g}" for k, v in history.history.items())
        )

    print(
        f"\nPointer task, {args.train} training sequences, teacher {args.epochs} epochs, "
        f"students {args.student_epochs} epochs"
    )
    print("| model | test accuracy |\n|---|---|")
    for name, value in results.items():
        print(f"| {name} | {value:.3f} |")
    return results


if __name__ == "__main__":
    main()
