import os
import zipfile

import h5py
import numpy as np
from helpers import make_mlp

from keras_distill import Distiller
from keras_distill._keras import IS_LEGACY
from keras_distill._keras import keras


def weight_arrays_in_keras_file(path):
    """Counts the arrays stored in a `.keras` archive's weights file, read with h5py."""
    with zipfile.ZipFile(path) as archive:
        archive.extract("model.weights.h5", os.path.dirname(path))
    arrays = []
    with h5py.File(os.path.join(os.path.dirname(path), "model.weights.h5"), "r") as weights:
        weights.visititems(
            lambda name, obj: arrays.append(obj.shape) if isinstance(obj, h5py.Dataset) else None
        )
    return arrays


def test_student_saves_alone_and_reloads(teacher, student, data, tmp_path):
    x, y = data
    distiller = Distiller(student=student, teacher=teacher)
    distiller.compile(optimizer="adam", alpha=0.9, temperature=4.0)
    distiller.fit(x, y, epochs=1, verbose=0)
    path = str(tmp_path / "student.keras")
    distiller.student.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_allclose(
        reloaded.predict(x, verbose=0), student.predict(x, verbose=0), rtol=1e-6
    )
    assert [w.shape for w in reloaded.weights] == [w.shape for w in student.weights]
    stored = weight_arrays_in_keras_file(path)
    assert sorted(map(tuple, stored)) == sorted(tuple(w.shape) for w in student.weights)
    assert sum(int(np.prod(shape)) for shape in stored) == student.count_params()
    assert student.count_params() < teacher.count_params()


def test_config_round_trip(teacher, student, data):
    x, _ = data
    distiller = Distiller(
        student=student, teacher=teacher, teacher_from_logits=True, label_mask_value=-7
    )
    config = distiller.get_config()
    rebuilt = Distiller.from_config(config)
    assert rebuilt.label_mask_value == -7
    assert rebuilt.teacher_from_logits is True
    assert len(rebuilt.student.weights) == len(student.weights)
    assert keras.saving.get_registered_object("keras_distill>Distiller") is Distiller


def test_distiller_checkpoint_resumes_training(trained_teacher, data, tmp_path):
    x, y = data

    def fresh_distiller():
        teacher = keras.models.clone_model(trained_teacher)
        teacher.set_weights(trained_teacher.get_weights())
        distiller = Distiller(student=make_mlp(8, "student", seed=2), teacher=teacher)
        distiller.compile(optimizer=keras.optimizers.Adam(0.01), alpha=0.8, temperature=2.0)
        return distiller

    uninterrupted = fresh_distiller()
    uninterrupted.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0)

    first = fresh_distiller()
    first.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)
    path = str(tmp_path / ("distiller.weights.h5" if not IS_LEGACY else "distiller_ckpt"))
    first.save_weights(path)

    resumed = fresh_distiller()
    resumed.fit(x[:32], y[:32], epochs=1, batch_size=32, verbose=0)  # builds the optimizer state
    resumed.load_weights(path)
    resumed.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)
    for expected, got in zip(uninterrupted.student.get_weights(), resumed.student.get_weights()):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
