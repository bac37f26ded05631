"""`BestOnValidation`: early stopping on a model's validation accuracy, best weights restored."""

import numpy as np

from keras_distill import _checks
from keras_distill._keras import keras
from keras_distill.evaluation.outputs import model_outputs

TIE_BREAKS = ("earlier", "later")


def accuracy(model, x, y, batch_size=512):
    """Top-1 accuracy of `model`'s outputs on `(x, y)` (eager calls, no retracing)."""
    return float(np.mean(model_outputs(model, x, batch_size).argmax(-1) == y))


class BestOnValidation(keras.callbacks.Callback):
    """Checks `model`'s accuracy on `(x_val, y_val)` after every epoch, keeps the best.

    Training stops after `patience` epochs without a better accuracy; at the
    end of training the best epoch's weights are restored into `model`. The
    same instance may serve several `fit()` calls in a row (a search, then
    more epochs): it counts epochs over all of them and keeps its patience.

    The model checked is the student itself, not the `keras.Model` being
    fitted, so the callback works the same for a plain student and for a
    `Distiller` (whose teacher may be a `TeacherCache`).

    Args:
        model: The student whose accuracy is checked and whose weights are
            restored.
        x_val: Validation inputs.
        y_val: Validation labels (class indices).
        patience: Epochs without improvement before stopping.
        tie_break: `"earlier"` keeps the first epoch of equal best accuracy;
            `"later"` lets an epoch that equals the best replace it (and
            restart the patience): on a small validation set accuracy
            plateaus, and keeping the earliest epoch of a plateau can stop
            training long before the student has fitted. Defaults to
            `"earlier"`.

    Attributes:
        best: Best validation accuracy so far (`-1` before the first epoch).
        best_epoch: Its epoch, counted from 1 over all `fit()` calls.
        epochs: Epochs seen.
        curve: Validation accuracy after each epoch.
        exhausted: True once patience ran out.
    """

    def __init__(self, model, x_val, y_val, patience, tie_break="earlier"):
        super().__init__()
        self.student, self.x_val, self.y_val, self.patience = model, x_val, y_val, patience
        self.tie_break = _checks.check_choice("tie_break", tie_break, TIE_BREAKS)
        self.best, self.best_epoch, self.epochs = -1.0, 0, 0
        self.best_weights = None
        self.curve = []
        self.exhausted = False

    def on_epoch_end(self, epoch, logs=None):
        self.epochs += 1
        value = accuracy(self.student, self.x_val, self.y_val)
        self.curve.append(value)
        later = self.tie_break == "later" and value == self.best
        if value > self.best or later:
            self.best, self.best_epoch = value, self.epochs
            self.best_weights = self.student.get_weights()
        elif self.epochs - self.best_epoch >= self.patience:
            self.exhausted = True
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.student.set_weights(self.best_weights)
