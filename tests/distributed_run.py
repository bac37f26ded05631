"""Trains a distiller for one epoch under a tf.distribute strategy and saves the result.

Run as a separate process (strategies and logical devices must be set up
before TensorFlow starts):

    python tests/distributed_run.py {single|mirrored|multiworker} OUT.npz

`multiworker` reads TF_CONFIG. `NAN_ROW=i` puts a NaN in row `i` of `x`;
a failed run saves its message to `OUT.error`, next to its weights. Used by
tests/test_distribute.py.
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


def main(mode, out):
    strategy = strategy_for(mode)
    sys.path.insert(0, os.path.dirname(__file__))
    from helpers import make_data
    from helpers import make_mlp

    from keras_distill import Distiller
    from keras_distill._keras import keras

    x, y = make_data(num_examples=128)
    if "NAN_ROW" in os.environ:
        x[int(os.environ["NAN_ROW"]), 0] = np.nan
    weights = np.linspace(0.5, 1.5, len(y)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, y, weights)).batch(32)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    data = data.with_options(options)
    with strategy.scope():
        teacher = make_mlp(16, "teacher", seed=1)
        student = make_mlp(8, "student", seed=2)
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
    main(sys.argv[1], sys.argv[2])
