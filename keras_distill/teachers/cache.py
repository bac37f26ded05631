"""Teacher-output cache: run the teacher once, then distil with no teacher forward.

The cache stores the teacher's logits for a fixed set of input arrays, with a
fingerprint of those inputs (their count, shapes, dtypes and a SHA-256 of
their bytes). `cache.dataset(x, y)` pairs each example with its stored
logits and refuses inputs whose fingerprint differs.

Random augmentation is refused by design: a stored output belongs to the
exact input it was computed from, so the cache only serves the arrays it was
built on, in a `tf.data` pipeline it builds itself (shuffling allowed,
augmentation not). To distil on augmented views, use the live teacher
(the `Distiller` runs it on whatever `x` the pipeline yields), or build a
cache on a fixed, pre-augmented copy of the data.
"""

import hashlib
import zipfile

import numpy as np
import tensorflow as tf

from keras_distill import _checks
from keras_distill._files import atomic_path
from keras_distill._outputs import logits_from
from keras_distill._outputs import select_output
from keras_distill.evaluation.outputs import model_outputs
from keras_distill.teachers import cache_checks

INPUTS_KEY = "inputs"
LOGITS_KEY = "teacher_logits"
_MISSING_LOGIT = -1e4
_STORAGE_DTYPES = ("float32", "float16")


def fingerprint(x):
    """`(num_examples, sha256 hex)` of input arrays (an array, or a dict/list of arrays)."""
    leaves = [np.ascontiguousarray(leaf) for leaf in tf.nest.flatten(x)]
    digest = hashlib.sha256()
    for leaf in leaves:
        digest.update(f"{leaf.shape}{leaf.dtype}".encode())
        digest.update(leaf.tobytes())
    return len(leaves[0]), digest.hexdigest()


def is_cached_batch(x):
    """True when `x` is a batch from `TeacherCache.dataset`."""
    return isinstance(x, dict) and set(x) == {INPUTS_KEY, LOGITS_KEY}


class TeacherCache:
    """The teacher's logits for one fixed set of inputs.

    Build it with `TeacherCache.build`, keep it in memory or `save`/`load`
    it (`.npz`), and pass it to the `Distiller` in place of the teacher:

    Example:
        ```python
        cache = TeacherCache.build(teacher, x_train, dtype="float16")
        cache.save("teacher_logits.npz")
        distiller = Distiller(student=student, teacher=cache)
        distiller.compile(optimizer="adam", alpha=0.9, temperature=4.0)
        distiller.fit(cache.dataset(x_train, y_train, batch_size=64), epochs=10)
        ```

    Args:
        logits: `(n, k)` stored logits (top-k values when `indices` is set).
        num_examples: Number of inputs the cache was built on.
        digest: SHA-256 of those inputs.
        num_classes: Number of classes of the teacher.
        indices: `(n, k)` class indices of the kept logits, or `None`.
    """

    def __init__(self, logits, num_examples, digest, num_classes, indices=None):
        self.logits = logits
        self.num_examples = int(num_examples)
        self.digest = str(digest)
        self.num_classes = int(num_classes)
        self.indices = indices

    @classmethod
    def build(
        cls,
        teacher,
        x,
        batch_size=256,
        dtype="float32",
        top_k=None,
        teacher_from_logits=True,
        teacher_output=None,
        teacher_outputs=None,
    ):
        """Runs `teacher` once over the input arrays `x` and stores its logits.

        Args:
            teacher: Trained `keras.Model`.
            x: Input array (or dict/list of arrays), the whole dataset.
            batch_size: Inference batch size. Defaults to `256`.
            dtype: `"float32"` or `"float16"` storage. Defaults to `"float32"`.
            top_k: Keep only the `k` largest logits per example (many
                classes); the others count as zero probability. Defaults to
                `None` (all).
            teacher_from_logits: Whether the teacher returns logits (`False`:
                probabilities). Defaults to `True`.
            teacher_output: Name or index of the output to cache when the
                teacher has several (as in the `Distiller`). Defaults to `None`.
            teacher_outputs: Deprecated: `"probabilities"` is
                `teacher_from_logits=False`.
        """
        from_logits = _checks.check_teacher_from_logits(teacher_from_logits, teacher_outputs)
        _checks.check_choice("dtype", dtype, _STORAGE_DTYPES)
        num_examples, digest = fingerprint(x)
        # Eager calls in chunks: `predict` would trace once per batch shape of every new teacher.
        outputs = model_outputs(teacher, x, batch_size, dtype="float32")
        outputs = select_output(outputs, teacher_output, teacher, "teacher")
        logits = np.asarray(outputs, np.float32)
        cache_checks.check_storable(logits, dtype)
        logits = np.asarray(logits_from(logits, from_logits), np.float32)
        num_classes = logits.shape[-1]
        indices = None
        if top_k is not None:
            _checks.check_int("top_k", top_k)
            if top_k > num_classes:
                raise ValueError(
                    f"`top_k` must be an integer in [1, {num_classes}]. Received: top_k={top_k!r}"
                )
            top_k = int(top_k)
            indices = np.argsort(-logits, axis=-1)[:, :top_k].astype(np.int32)
            logits = np.take_along_axis(logits, indices, axis=-1)
        return cls(logits.astype(dtype), num_examples, digest, num_classes, indices)

    def check(self, x):
        """Raises unless `x` are the very inputs this cache was built on."""
        num_examples, digest = fingerprint(x)
        if (num_examples, digest) != (self.num_examples, self.digest):
            raise ValueError(
                "These inputs are not the ones the teacher cache was built on "
                f"({self.num_examples} examples, fingerprint {self.digest[:12]}). "
                f"Rebuild the cache for them. Received: {num_examples} examples, "
                f"fingerprint {digest[:12]}"
            )

    def full_logits(self, start=None, stop=None):
        """Float32 `(n, num_classes)` logits (missing top-k classes filled very low)."""
        logits = self.logits[start:stop].astype(np.float32)
        if self.indices is None:
            return logits
        full = np.full((len(logits), self.num_classes), _MISSING_LOGIT, np.float32)
        np.put_along_axis(full, self.indices[start:stop], logits, axis=-1)
        return full

    def dataset(self, x, y=None, sample_weight=None, batch_size=32, shuffle=True, seed=None):
        """A `tf.data.Dataset` of `({"inputs": x, "teacher_logits": t}, y[, w])` batches.

        Args:
            x: The inputs the cache was built on (checked).
            y: Labels, or `None` for a teacher-labelled transfer set.
            sample_weight: Optional per-example weights.
            batch_size: Defaults to `32`.
            shuffle: Shuffle every epoch. Defaults to `True`.
            seed: Shuffle seed. Defaults to `None`.
        """
        self.check(x)
        features = {INPUTS_KEY: x, LOGITS_KEY: self.full_logits()}
        element = (features,) if y is None else (features, y)
        if sample_weight is not None:
            element = (features, y, sample_weight)
        data = tf.data.Dataset.from_tensor_slices(element)
        if shuffle:
            data = data.shuffle(self.num_examples, seed=seed, reshuffle_each_iteration=True)
        return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)

    def save(self, path):
        """Writes the cache to `path` (`.npz`) atomically."""
        with atomic_path(path, suffix=".npz") as temporary:
            np.savez(
                temporary,
                logits=self.logits,
                indices=self.indices if self.indices is not None else np.zeros((0,), np.int32),
                meta=np.array([self.num_examples, self.num_classes], np.int64),
                digest=np.array(self.digest),
            )

    @classmethod
    def load(cls, path):
        """Reads a cache written by `save` (no pickled objects are loaded).

        Every array is checked (presence, kind, shape, finite logits, top-k
        indices in range), so a damaged or hostile file is refused with a
        `ValueError` that names what is wrong.
        """
        _checks.check_existing_file("path", path, "an existing `.npz` cache file")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
        except ValueError as error:
            raise ValueError(
                "`path` holds object arrays, which are not loaded (they would need "
                f"unpickling) ({_checks.first_line(error)}). Received: path={path!r}"
            ) from None
        except (OSError, EOFError, zipfile.BadZipFile) as error:
            raise ValueError(
                f"`path` is not a readable `.npz` file ({_checks.first_line(error)}). "
                f"Received: path={path!r}"
            ) from None
        logits, indices, num_examples, num_classes, digest = cache_checks.check_loaded(arrays, path)
        return cls(logits, num_examples, digest, num_classes, indices)
