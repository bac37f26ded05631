import numpy as np
import pytest
import tensorflow as tf
from helpers import make_data

from keras_distill import TeacherCache
from keras_distill.matching.capture import LayerCapture
from keras_distill.teachers.source import CachedTeacher
from keras_distill.teachers.source import LiveTeacher
from keras_distill.teachers.source import teacher_source


def test_teacher_source_picks_live_or_cached(teacher):
    x, _ = make_data(16)
    assert isinstance(teacher_source(teacher), LiveTeacher)
    assert isinstance(teacher_source(TeacherCache.build(teacher, x)), CachedTeacher)


def test_live_teacher_is_frozen_and_gives_float32_logits(teacher):
    x, _ = make_data(16)
    source = LiveTeacher(teacher)
    assert teacher.trainable is False
    inputs, logits, features = source.forward(tf.constant(x), LayerCapture(teacher, [], "teacher"))
    assert logits.dtype == tf.float32 and features == {}
    np.testing.assert_allclose(logits.numpy(), teacher.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_probabilities_become_log_probabilities(teacher):
    x, _ = make_data(16)
    source = LiveTeacher(teacher, from_logits=False)
    logits = source.forward(x, LayerCapture(teacher, [], "teacher"))[1]
    expected = np.log(np.maximum(teacher.predict(x, verbose=0), 1e-12))
    np.testing.assert_allclose(logits.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_cached_teacher_reads_logits_from_the_batch_and_refuses_others(teacher):
    x, y = make_data(16)
    cache = TeacherCache.build(teacher, x)
    source = CachedTeacher(cache)
    batch = next(iter(cache.dataset(x, y, batch_size=16, shuffle=False)))[0]
    inputs, logits, features = source.forward(batch)
    np.testing.assert_allclose(inputs.numpy(), x)
    np.testing.assert_allclose(logits.numpy(), teacher.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="train it on `cache.dataset"):
        source.forward(tf.constant(x))
