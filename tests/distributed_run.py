"""Trains distillers for two epochs under a tf.distribute strategy and saves the results.

Run as a separate process (strategies and logical devices must be set up
before TensorFlow starts); one process runs every case asked for, one after
the other, each into `OUT_DIR/CASE.npz`. The `single` mode needs no set-up
and also runs in the test process (`main("single", OUT_DIR, CASES)`):

    python tests/distributed_run.py {single|mirrored|multiworker} OUT_DIR [CASE,...]

Cases: `plain` (an MLP), `positions` (a token tagger with padded rows, so the
replicas of a batch count different numbers of positions) and `nan` (the MLP
with a NaN in row 70 of `x`); `plain` by default. `multiworker` reads
TF_CONFIG. A failed run saves its message to `CASE.npz.error`, next to its
weights. Used by tests/test_distribute.py.
"""

import os
import sys

import numpy as np
import tensorflow as tf


def strategy_for(mode):
    if mode == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
        )
        return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    if mode == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def tagger(width, name, seed):
    from keras_distill._keras import keras

    keras.utils.set_random_seed(seed)
    tokens = keras.Input((6,), dtype="int32")
    hidden = keras.layers.Embedding(10, width)(tokens)
    return keras.Model(tokens, keras.layers.Dense(3)(hidden), name=name)


def token_data(n):
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 10, size=(n, 6)).astype("int32")
    lengths = np.where(np.arange(n) % 32 < 16, 6, 1)[:, None]  # long rows, then short rows
    weights = (np.arange(6)[None] < lengths).astype("float32")
    return tokens * weights.astype("int32"), (tokens % 3).astype("int32"), weights


NAN_ROW = 70  # Global batch 2 of 32 rows.


def main(mode, out_dir, cases="plain"):
    strategy = strategy_for(mode)
    for case in cases.split(","):
        run_case(strategy, mode, case, os.path.join(out_dir, f"{case}.npz"))


def run_case(strategy, mode, case, out):
    sys.path.insert(0, os.path.dirname(__file__))
    from helpers import make_data
    from helpers import make_mlp

    from keras_distill import Distiller
    from keras_distill._keras import keras

    x, y = make_data(num_examples=128)
    if case == "nan":
        x[NAN_ROW, 0] = np.nan
    weights = np.linspace(0.5, 1.5, len(y)).astype("float32")
    make_models = make_mlp
    if case == "positions":
        # Tokens with padding: the replicas of a batch count different numbers of positions.
        x, y, weights = token_data(len(y))
        make_models = tagger
    data = tf.data.Dataset.from_tensor_slices((x, y, weights)).batch(32)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    data = data.with_options(options)
    with strategy.scope():
        teacher = make_models(16, "teacher", seed=1)
        student = make_models(8, "student", seed=2)
        distiller = Distiller(student=student, teacher=teacher)
        distiller.compile(optimizer=keras.optimizers.SGD(0.5), alpha=0.7, temperature=3.0)
    try:
        history = distiller.fit(data, epochs=2, verbose=0).history
    except ValueError as error:
        with open(out + ".error", "w") as file:
            file.write(str(error))
        history = {"loss": [np.nan]}
    if mode != "multiworker" or os.environ.get("WORKER_INDEX", "0") == "0":
        arrays = {f"w{i}": w for i, w in enumerate(student.get_weights())}
        np.savez(
            out, loss=np.array(history["loss"]), replicas=strategy.num_replicas_in_sync, **arrays
        )


if __name__ == "__main__":
    main(*sys.argv[1:])
