"""Distils with `BackupAndRestore`; `test_resume.py` kills it mid-epoch and resumes it.

Usage: python resume_run.py FOLDER BACKUP_DIR EPOCH_LOG OUT.npz [MARKER]

With MARKER, the run writes that file in the middle of epoch `KILL_EPOCH` and
then waits there to be killed.
"""

import os
import sys
import time

EPOCHS = 4
KILL_EPOCH = 2
KILL_BATCH = 3


def train(folder, backup_dir, epoch_log, marker=None):
    """Runs the distillation; returns the student's weights."""
    from keras_distill import Distiller
    from keras_distill import saving
    from keras_distill._keras import keras

    class EpochLog(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            with open(epoch_log, "a") as stream:
                stream.write(f"{epoch}\n")

    class WaitToBeKilled(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == KILL_EPOCH and batch == KILL_BATCH:
                with open(marker, "w") as stream:
                    stream.write(f"epoch {self.epoch}, batch {batch}\n")
                time.sleep(300)

    keras.utils.set_random_seed(0)
    teacher = saving.load_model(os.path.join(folder, "teacher.keras"))
    student = saving.load_model(os.path.join(folder, "student.keras"))
    x, y = saving.load_arrays(os.path.join(folder, "train.npz"))
    distiller = Distiller(student=student, teacher=teacher)
    distiller.compile(optimizer=keras.optimizers.Adam(0.01), alpha=0.6, temperature=3.0)
    callbacks = [keras.callbacks.BackupAndRestore(backup_dir), EpochLog()]
    if marker:
        callbacks.append(WaitToBeKilled())
    distiller.fit(x, y, epochs=EPOCHS, batch_size=16, shuffle=False, verbose=0, callbacks=callbacks)
    return student.get_weights()


if __name__ == "__main__":
    import numpy as np

    folder, backup_dir, epoch_log, out = sys.argv[1:5]
    weights = train(folder, backup_dir, epoch_log, sys.argv[5] if len(sys.argv) > 5 else None)
    np.savez(out, *weights)
