"""One interface for "where the teacher's logits come from": a live model or a cache.

The `Distiller` asks its teacher source for each batch's
`(student inputs, teacher logits, captured teacher features)` and never needs
to know which kind it has.
"""

import tensorflow as tf

from keras_distill import _checks
from keras_distill._outputs import logits_from
from keras_distill._outputs import select_output
from keras_distill._outputs import static_output_shape
from keras_distill.teachers import cache as cache_lib
from keras_distill.teachers import top_k
from keras_distill.teachers.sharded_cache import ShardedTeacherCache


class LiveTeacher:
    """A frozen `keras.Model` run once per step, in inference mode, outside the tape.

    Args:
        model: The trained teacher (frozen here: `trainable = False`).
        from_logits: Whether the selected output is logits (`False`:
            probabilities, turned into `log(p)`). Defaults to `True`.
        output: Name or index of the output to distil when the teacher has
            several. Defaults to `None`.
    """

    is_cached = False

    def __init__(self, model, from_logits=True, output=None):
        _checks.check_model("teacher", model)
        model.trainable = False
        self.model = model
        self.from_logits = from_logits
        self.output = output

    def output_shape(self):
        """Static shape of the distilled output, `None` where the model cannot tell."""
        return static_output_shape(self.model, self.output, "teacher")

    def forward(self, x, capture):
        """`(x, float32 teacher logits, captured features)`; no gradient flows back.

        A batch from `TeacherCache.dataset` brings its logits along: then the
        teacher does not run.
        """
        if cache_lib.is_cached_batch(x):
            return cached_batch(x, (self.output_shape() or (None,))[-1])
        with capture.recording() as captured:
            outputs = self.model(x, training=False)
        outputs = select_output(outputs, self.output, self.model, "teacher")
        logits = tf.stop_gradient(logits_from(outputs, self.from_logits))
        features = tf.nest.map_structure(
            lambda value: value if value is None else tf.stop_gradient(value), dict(captured)
        )
        return x, logits, features


class CachedTeacher:
    """Teacher logits read from the batch (`TeacherCache.dataset`): no teacher runs.

    Args:
        cache: The `TeacherCache`.
    """

    is_cached = True
    model = None
    from_logits = True

    def __init__(self, cache):
        self.cache = cache

    def output_shape(self):
        """`(None, ..., num_classes)` of the cached logits."""
        return (None, *self.cache.positions, self.cache.num_classes)

    def forward(self, x, capture=None):
        """`(student inputs, float32 cached logits or `TopKLogits`, {})` of a cached batch."""
        if not cache_lib.is_cached_batch(x):
            raise ValueError(
                "This Distiller reads the teacher's outputs from a TeacherCache: train it on "
                "`cache.dataset(x, y)`. Received: a batch without cached teacher logits"
            )
        return cached_batch(x, self.cache.num_classes)


def cached_batch(x, num_classes=None):
    """`(student inputs, teacher logits, {})` of a batch from `TeacherCache.dataset`.

    The logits are float32 full rows, or the batch's `TopKLogits` when it
    carries the kept values and classes (`expand_top_k=False`) of a teacher
    with `num_classes` classes.
    """
    if cache_lib.is_top_k_batch(x):
        if num_classes is None:
            raise ValueError(
                "A batch of top-k teacher logits needs the teacher's number of classes, which "
                "this teacher cannot tell. Pass the TeacherCache as the teacher, or build the "
                "dataset with `expand_top_k=True`. Received: num_classes=None"
            )
        return x[cache_lib.INPUTS_KEY], top_k.from_batch(x, num_classes), {}
    logits = tf.cast(x[cache_lib.LOGITS_KEY], tf.float32)
    return x[cache_lib.INPUTS_KEY], logits, {}


def teacher_source(teacher, from_logits=True, output=None):
    """The `LiveTeacher` or `CachedTeacher` for a `keras.Model` or a `TeacherCache`."""
    if isinstance(teacher, (cache_lib.TeacherCache, ShardedTeacherCache)):
        return CachedTeacher(teacher)
    return LiveTeacher(teacher, from_logits=from_logits, output=output)


def student_inputs(x):
    """The student's part of a batch: `x` itself, or the inputs of a cached batch."""
    if cache_lib.is_cached_batch(x):
        return x[cache_lib.INPUTS_KEY]
    return x
