import os

import numpy as np
import pytest
from helpers import assert_message
from helpers import make_mlp

from keras_distill import Distiller
from keras_distill import TeacherCache
from keras_distill._keras import keras


def fit_weights(teacher_or_cache, data_fn, epochs=2):
    student = make_mlp(8, "student", seed=2)
    distiller = Distiller(student=student, teacher=teacher_or_cache)
    distiller.compile(optimizer=keras.optimizers.SGD(0.1), alpha=0.7, temperature=3.0)
    history = distiller.fit(data_fn(), epochs=epochs, verbose=0).history
    return student.get_weights(), history, distiller


def test_cache_gives_the_live_teachers_loss_and_training(teacher, data):
    x, y = data
    cache = TeacherCache.build(teacher, x)
    np.testing.assert_allclose(cache.full_logits(), teacher.predict(x, verbose=0), rtol=1e-6)
    live_weights, live, live_distiller = fit_weights(
        teacher, lambda: __import__("tensorflow").data.Dataset.from_tensor_slices((x, y)).batch(32)
    )
    cached_weights, cached, cached_distiller = fit_weights(
        cache, lambda: cache.dataset(x, y, batch_size=32, shuffle=False)
    )
    for name in ("loss", "student_loss", "distillation_loss"):
        np.testing.assert_allclose(cached[name], live[name], rtol=1e-5)
    for a, b in zip(live_weights, cached_weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # Evaluated and predicted as the student, with or without the cache.
    np.testing.assert_allclose(
        cached_distiller.predict(x, verbose=0), cached_distiller.student(x), rtol=1e-6
    )


def test_float16_and_top_k_storage(teacher, data, tmp_path):
    x, y = data
    full = teacher.predict(x, verbose=0)
    half = TeacherCache.build(teacher, x, dtype="float16")
    assert half.logits.dtype == np.float16
    np.testing.assert_allclose(half.full_logits(), full, rtol=2e-3, atol=2e-3)
    top = TeacherCache.build(teacher, x, top_k=2)
    rebuilt = top.full_logits()
    best_two = np.argsort(-full, axis=-1)[:, :2]
    np.testing.assert_allclose(
        np.take_along_axis(rebuilt, best_two, -1), np.take_along_axis(full, best_two, -1), rtol=1e-6
    )
    assert np.all(np.sort(rebuilt, -1)[:, 0] == -1e4)
    path = str(tmp_path / "cache.npz")
    top.save(path)
    loaded = TeacherCache.load(path)
    np.testing.assert_array_equal(loaded.full_logits(), rebuilt)
    assert (loaded.num_examples, loaded.digest, loaded.num_classes) == (
        top.num_examples,
        top.digest,
        3,
    )
    _, history, _ = fit_weights(loaded, lambda: loaded.dataset(x, y, batch_size=32))
    assert np.all(np.isfinite(history["loss"]))


def test_x_only_transfer_set_from_cache(teacher, data):
    x, _ = data
    cache = TeacherCache.build(teacher, x)
    _, history, _ = fit_weights(cache, lambda: cache.dataset(x, batch_size=32))
    np.testing.assert_allclose(history["loss"], history["distillation_loss"], rtol=1e-6)


def test_mismatched_inputs_are_refused(teacher, data):
    x, y = data
    cache = TeacherCache.build(teacher, x)
    with pytest.raises(ValueError) as error:
        cache.dataset(x[:-1], y[:-1])
    assert str(error.value).startswith(
        "These inputs are not the ones the teacher cache was built on (128 examples, "
        f"fingerprint {cache.digest[:12]})."
    )
    assert "Received: 127 examples" in str(error.value)
    changed = x.copy()
    changed[0, 0] += 1.0
    with pytest.raises(ValueError, match=r"Received: 128 examples, fingerprint"):
        cache.dataset(changed, y)


def test_live_batches_are_refused_by_a_cache_distiller(teacher, data):
    x, y = data
    distiller = Distiller(
        student=make_mlp(8, "student", seed=2), teacher=TeacherCache.build(teacher, x)
    )
    distiller.compile(optimizer="adam")
    with pytest.raises(ValueError, match=r"train it on `cache.dataset\(x, y\)`"):
        distiller.fit(x, y, epochs=1, verbose=0)


def test_cache_argument_errors(teacher, data, tmp_path):
    x, _ = data
    with pytest.raises(ValueError, match=r"Received: dtype='int8'"):
        TeacherCache.build(teacher, x, dtype="int8")
    with pytest.raises(ValueError) as error:
        TeacherCache.build(teacher, x, top_k=5)
    assert_message(error, "`top_k`", "an integer in [1, 3]", "Received: top_k=5")


def test_save_is_atomic(teacher, data, tmp_path, monkeypatch):
    x, _ = data
    cache = TeacherCache.build(teacher, x)
    path = str(tmp_path / "cache.npz")
    cache.save(path)
    before = open(path, "rb").read()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        cache.save(path)
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["cache.npz"]


def test_float16_overflow_is_refused_at_build(data):
    x, _ = data
    inputs = keras.Input((8,))
    loud = keras.Model(inputs, keras.layers.Dense(3, kernel_initializer="ones")(inputs) * 1e5)
    with pytest.raises(ValueError) as error:
        TeacherCache.build(loud, x, dtype="float16")
    largest = float(np.max(np.abs(loud.predict(x, verbose=0))))
    assert_message(
        error,
        f"The teacher's logits reach {largest:.6g}",
        "float16's largest value 65504",
        "Build the cache with dtype='float32'",
        "Received: dtype='float16'",
    )
    assert np.isfinite(TeacherCache.build(loud, x).logits).all()


def test_top_k_accepts_numpy_integers(teacher, data):
    x, _ = data
    cache = TeacherCache.build(teacher, x, top_k=np.int64(2))
    assert cache.indices.shape == (len(x), 2)


def saved_arrays(teacher, x, tmp_path, top_k=2):
    path = str(tmp_path / "cache.npz")
    TeacherCache.build(teacher, x, top_k=top_k).save(path)
    with np.load(path) as archive:
        return {key: archive[key] for key in archive.files}


def refusal(path, reason):
    """What a refusal to load a damaged cache must say: the argument, why, the fix, the value."""
    return (
        "`path` is not a valid teacher cache",
        reason,
        "`TeacherCache.build(...).save(path)`",
        f"Received: path={path!r}",
    )


@pytest.mark.parametrize(
    "edit, reason",
    [
        (
            lambda a: a["indices"].__setitem__((5, 1), -1),
            "'indices' holds class -1 (row 5), outside [0, 2]",
        ),
        (
            lambda a: a["indices"].__setitem__((7, 0), 3),
            "'indices' holds class 3 (row 7), outside [0, 2]",
        ),
        (lambda a: a["logits"].__setitem__((9, 0), np.nan), "'logits' holds NaN or Inf (row 9)"),
        (
            lambda a: a.pop("meta"),
            "the array 'meta' is missing (it holds ['digest', 'indices', 'logits', 'rest_logits'])",
        ),
        (
            lambda a: a.update(logits=a["logits"][:10], indices=a["indices"][:10]),
            "'logits' has 10 rows for 128 examples",
        ),
        (
            lambda a: a.update(logits=np.array(1.0)),
            "'logits' must be a float array of 2 or more dimensions, not float64 of shape ()",
        ),
        (
            lambda a: a.update(meta=np.array(5)),
            "'meta' must be 2 positive integers, not int64 of shape ()",
        ),
    ],
)
def test_damaged_cache_files_are_refused_at_load(teacher, data, tmp_path, edit, reason):
    x, _ = data
    arrays = saved_arrays(teacher, x, tmp_path)
    edit(arrays)
    path = str(tmp_path / "damaged.npz")
    np.savez(path, **arrays)
    with pytest.raises(ValueError) as error:
        TeacherCache.load(path)
    assert_message(error, *refusal(path, reason))


def test_object_arrays_in_a_cache_file_are_not_unpickled(teacher, data, tmp_path):
    x, _ = data
    arrays = saved_arrays(teacher, x, tmp_path)
    arrays["logits"] = np.array([{"a": 1}], dtype=object)
    path = str(tmp_path / "pickled.npz")
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r"^`path` holds object arrays, which are not loaded"):
        TeacherCache.load(path)


def test_a_saved_cache_loads_back(teacher, data, tmp_path):
    x, _ = data
    path = str(tmp_path / "cache.npz")
    built = TeacherCache.build(teacher, x, top_k=2)
    built.save(path)
    loaded = TeacherCache.load(path)
    np.testing.assert_array_equal(loaded.full_logits(), built.full_logits())
