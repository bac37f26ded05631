import dataclasses

import numpy as np
import pytest
from helpers import make_data
from helpers import make_mlp

from keras_distill import _options
from keras_distill._keras import keras
from keras_distill._options import TrainingOptions
from keras_distill.compression import _training
from keras_distill.compression import pruning
from keras_distill.compression import quantization
from keras_distill.compression.chain import compress


def test_options_are_frozen_and_replace_checks_again():
    options = TrainingOptions(epochs=3, callbacks=[keras.callbacks.History()])
    assert isinstance(options.callbacks, tuple) and len(options.callbacks) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.epochs = 4
    assert options.replace(epochs=5).epochs == 5 and options.epochs == 3
    with pytest.raises(ValueError, match=r"`epochs` must be an integer >= 1.*epochs=0"):
        options.replace(epochs=0)


@pytest.mark.parametrize(
    "changes,error,pieces",
    [
        (dict(epochs=2.0), ValueError, r"`epochs` must be an integer.*epochs=2\.0"),
        (dict(batch_size=True), ValueError, r"`batch_size`.*batch_size=True"),
        (dict(learning_rate=0), ValueError, r"`learning_rate` must be a finite number > 0"),
        (dict(alpha=1.5), ValueError, r"`alpha` must be a number in \[0, 1\].*alpha=1\.5"),
        (dict(temperature=-1), ValueError, r"`temperature`.*temperature=-1"),
        (dict(verbose=3), ValueError, r"`verbose` must be one of \[0, 1, 2, 'auto'\]"),
        (dict(verbose=True), ValueError, r"verbose=True"),
        (dict(seed=-1), ValueError, r"`seed` must be an integer >= 0"),
        (dict(callbacks=keras.callbacks.History()), TypeError, r"`callbacks` must be a list"),
    ],
)
def test_options_check_every_value(changes, error, pieces):
    with pytest.raises(error, match=pieces):
        TrainingOptions(**changes)


def test_new_optimizer_is_a_fresh_adam_unless_one_is_given():
    options = TrainingOptions(learning_rate=0.01)
    first, second = options.new_optimizer(), options.new_optimizer()
    assert first is not second and isinstance(first, keras.optimizers.Adam)
    assert float(np.asarray(first.learning_rate)) == pytest.approx(0.01)
    mine = keras.optimizers.SGD(0.1)
    assert TrainingOptions(optimizer=mine).new_optimizer() is mine


def test_fit_arguments():
    options = TrainingOptions(epochs=2, batch_size=8, verbose="auto")
    assert options.fit_arguments(batched=False) == dict(
        epochs=2, callbacks=[], validation_data=None, verbose="auto", batch_size=8
    )
    assert "batch_size" not in options.fit_arguments(batched=True)
    assert _options.VERBOSITIES == (0, 1, 2, "auto")


@pytest.fixture
def recorded_fits(monkeypatch):
    """The `(teacher, options)` of each `_training.fit` call; no training runs."""
    calls = []

    def record(model, x, y, teacher, options):
        calls.append((teacher, options))

    monkeypatch.setattr(_training, "fit", record)
    return calls


def test_prune_and_qat_hand_one_options_object_to_the_fit_loop(recorded_fits, monkeypatch):
    x, y = make_data(64)
    student = make_mlp(8, "student")
    stop = keras.callbacks.TerminateOnNaN()
    pruning.prune(student, x, y, epochs=3, batch_size=8, alpha=0.25, callbacks=[stop])
    (teacher, options) = recorded_fits[-1]
    assert teacher is None and isinstance(options, TrainingOptions)
    assert (options.epochs, options.batch_size, options.alpha) == (3, 8, 0.25)
    # The pruning callback comes first, then the caller's.
    assert options.callbacks[-1] is stop and len(options.callbacks) == 2
    monkeypatch.setattr(quantization, "unquantizable_layers", lambda model: [])
    quantization.quantization_aware_training(
        student, x, y, epochs=2, temperature=2.0, callbacks=[stop], preserve_sparsity=False
    )
    (teacher, options) = recorded_fits[-1]
    assert (options.epochs, options.temperature, options.callbacks) == (2, 2.0, (stop,))


def test_bool_settings_of_prune_are_refused():
    x, y = make_data(64)
    with pytest.raises(ValueError, match=r"`end_fraction` must be a number in \(0, 1\]"):
        pruning.prune(make_mlp(8, "student"), x, y, end_fraction=True)


@pytest.mark.parametrize(
    "changes,pieces",
    [
        (dict(target_sparsity=1.0), r"`target_sparsity` must be a number in \[0, 1\)"),
        (dict(target_sparsity=True), r"target_sparsity=True"),
        (dict(keep_float="no"), r"`keep_float` must be True or False"),
        (dict(prune_epochs=0), r"`epochs` must be an integer >= 1"),
        (dict(learning_rate=-1.0), r"`learning_rate`"),
        (dict(batch_size=256, prune_epochs=1), r"Training is too short for the pruning schedule"),
        (dict(representative_samples=0), r"`representative_samples`"),
        (dict(int8_io=1), r"`int8_io` must be True or False"),
    ],
)
def test_compress_checks_every_stage_before_any_folder_or_training(
    tmp_path, recorded_fits, changes, pieces
):
    (x, y), (x_test, y_test) = make_data(64), make_data(32, seed=1)
    out = tmp_path / "never"
    arguments = dict(stages=("prune", "qat", "tflite"), output_dir=str(out))
    with pytest.raises(ValueError, match=pieces):
        compress(make_mlp(8, "student"), x, y, x_test, y_test, **{**arguments, **changes})
    assert not out.exists()
    assert recorded_fits == []
