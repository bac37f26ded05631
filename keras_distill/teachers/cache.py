"""Teacher-output cache: run the teacher once, then distil with no teacher forward.

The cache stores the teacher's logits for a fixed set of input arrays, with a
fingerprint of those inputs (their count, shapes, dtypes and a SHA-256 of
their bytes). `cache.dataset(x, y)` pairs each example with its stored
logits and refuses inputs whose fingerprint differs.

Logits with positions, `(n, ..., classes)` (a causal LM's tokens, a
segmentation's pixels), are stored per position. With `top_k`, only the `k`
largest logits of each position are kept, with their class indices; the
teacher's probability outside them is either dropped (the kept classes are
renormalised: `top_k_rest="renormalize"`) or spread evenly over the other
classes (`top_k_rest="uniform"`, which keeps each kept class's probability
exact). `dataset()` expands the kept logits to full rows one batch at a time,
so memory holds the top-k arrays and one batch of full logits. With
`dataset(..., expand_top_k=False)` the batches carry the kept logits and
classes instead: for a renormalised cache and the forward KL, the
`Distiller`'s step computes the KL from them
(`losses.top_k_distillation_kl`) and never builds full teacher rows; other
losses and `"uniform"` caches expand them inside the step.

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
TOP_K_VALUES_KEY = "teacher_top_k_values"
TOP_K_INDICES_KEY = "teacher_top_k_indices"
REST_LOGITS_KEY = "teacher_rest_logits"
MISSING_LOGIT = -1e4
_STORAGE_DTYPES = ("float32", "float16")
TOP_K_REST = ("renormalize", "uniform")


def fingerprint(x):
    """`(num_examples, sha256 hex)` of input arrays (an array, or a dict/list of arrays)."""
    leaves = [np.ascontiguousarray(leaf) for leaf in tf.nest.flatten(x)]
    digest = hashlib.sha256()
    for leaf in leaves:
        digest.update(f"{leaf.shape}{leaf.dtype}".encode())
        digest.update(leaf.tobytes())
    return len(leaves[0]), digest.hexdigest()


_TOP_K_KEYS = {INPUTS_KEY, TOP_K_VALUES_KEY, TOP_K_INDICES_KEY}
_BATCH_KEYS = ({INPUTS_KEY, LOGITS_KEY}, _TOP_K_KEYS, _TOP_K_KEYS | {REST_LOGITS_KEY})


def is_cached_batch(x):
    """True when `x` is a batch from `TeacherCache.dataset` (full rows or top-k)."""
    return isinstance(x, dict) and set(x) in _BATCH_KEYS


def is_top_k_batch(x):
    """True when `x` is a batch from `TeacherCache.dataset(..., expand_top_k=False)`."""
    return is_cached_batch(x) and TOP_K_VALUES_KEY in x


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

    A causal LM's top-k cache, trained without full teacher rows:

        ```python
        cache = TeacherCache.build(teacher, x, top_k=32)  # top_k_rest="renormalize"
        distiller = Distiller(student=student, teacher=cache,
                              padding_mask_input="padding_mask")
        distiller.compile(optimizer="adam", alpha=0.5, temperature=1.0)
        distiller.fit(cache.dataset(x, y, weights, expand_top_k=False), epochs=1)
        ```

    Args:
        logits: `(n, ..., k)` stored logits (top-k values when `indices` is set).
        num_examples: Number of inputs the cache was built on.
        digest: SHA-256 of those inputs.
        num_classes: Number of classes of the teacher.
        indices: `(n, ..., k)` class indices of the kept logits, or `None`.
        rest_logits: `(n, ...)`: with top-k, the logit given to every class
            that was not kept (see `top_k_rest` in `build`), or `None` (very
            low: the kept classes are renormalised).
    """

    def __init__(self, logits, num_examples, digest, num_classes, indices=None, rest_logits=None):
        self.logits = logits
        self.num_examples = int(num_examples)
        self.digest = str(digest)
        self.num_classes = int(num_classes)
        self.indices = indices
        self.rest_logits = rest_logits

    @property
    def positions(self):
        """The axes between examples and classes, e.g. `(sequence_length,)`; `()` per example."""
        return tuple(self.logits.shape[1:-1])

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
        top_k_rest="renormalize",
    ):
        """Runs `teacher` once over the input arrays `x` and stores its logits.

        The teacher runs on `batch_size` examples at a time and only what is
        stored of them is kept, so with `top_k` the full logits of the whole
        set never exist at once.

        Args:
            teacher: Trained `keras.Model`.
            x: Input array (or dict/list of arrays), the whole dataset.
            batch_size: Inference batch size. Defaults to `256`.
            dtype: `"float32"` or `"float16"` storage. Defaults to `"float32"`.
            top_k: Keep only the `k` largest logits per example or position
                (many classes). Defaults to `None` (all).
            teacher_from_logits: Whether the teacher returns logits (`False`:
                probabilities). Defaults to `True`.
            teacher_output: Name or index of the output to cache when the
                teacher has several (as in the `Distiller`). Defaults to `None`.
            teacher_outputs: Deprecated: `"probabilities"` is
                `teacher_from_logits=False`.
            top_k_rest: With `top_k`, what happens to the teacher's
                probability outside the kept classes: `"renormalize"` drops
                it (the kept classes' probabilities are rescaled to sum to
                1), `"uniform"` spreads it evenly over the other classes
                (every kept probability stays exact). Defaults to
                `"renormalize"`.
        """
        from_logits = _checks.check_teacher_from_logits(teacher_from_logits, teacher_outputs)
        _checks.check_choice("dtype", dtype, _STORAGE_DTYPES)
        _checks.check_choice("top_k_rest", top_k_rest, TOP_K_REST)
        batch_size = _checks.check_int("batch_size", batch_size)
        if top_k is not None:
            top_k = _checks.check_int("top_k", top_k)
        num_examples, digest = fingerprint(x)
        first = tf.nest.map_structure(lambda leaf: leaf[:1], x)
        outputs = select_output(teacher(first, training=False), teacher_output, teacher, "teacher")
        num_classes = int(outputs.shape[-1])
        if top_k is not None and top_k > num_classes:
            raise ValueError(
                f"`top_k` must be an integer in [1, {num_classes}]. Received: top_k={top_k!r}"
            )
        store = _batch_storer(teacher, teacher_output, from_logits, top_k, top_k_rest)
        parts = []
        for start in range(0, num_examples, batch_size):
            chunk = tf.nest.map_structure(
                lambda leaf: tf.convert_to_tensor(leaf[start : start + batch_size]), x
            )
            values, indices, rest, finite, largest = store(chunk)
            if not bool(finite) or (
                dtype == "float16" and float(largest) > cache_checks.FLOAT16_MAX
            ):
                outputs = model_outputs(teacher, chunk, batch_size, dtype="float32")
                outputs = select_output(outputs, teacher_output, teacher, "teacher")
                cache_checks.check_storable(np.asarray(outputs), dtype)
            parts.append(
                (
                    values.numpy().astype(dtype),
                    None if indices is None else indices.numpy(),
                    None if rest is None else rest.numpy(),
                )
            )
        logits, indices, rest = (
            None if part[0] is None else np.concatenate(part) for part in zip(*parts)
        )
        return cls(logits, num_examples, digest, num_classes, indices, rest)

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
        """Float32 `(n, ..., num_classes)` logits of examples `start:stop`, top-k expanded.

        Classes outside the top k get the stored rest logit (`"uniform"`) or
        a very low one (`"renormalize"`).
        """
        logits = self.logits[start:stop].astype(np.float32)
        if self.indices is None:
            return logits
        rest = self.full_rest_logits(start, stop)
        full = np.broadcast_to(rest[..., None], logits.shape[:-1] + (self.num_classes,)).copy()
        np.put_along_axis(full, self.indices[start:stop], logits, axis=-1)
        return full

    def full_rest_logits(self, start=None, stop=None):
        """With top-k: the logit of the classes not kept, `(n, ...)` (very low if renormalised)."""
        if self.rest_logits is not None:
            return self.rest_logits[start:stop].astype(np.float32)
        return np.full(self.logits[start:stop].shape[:-1], MISSING_LOGIT, np.float32)

    def dataset(
        self,
        x,
        y=None,
        sample_weight=None,
        batch_size=32,
        shuffle=True,
        seed=None,
        expand_top_k=True,
    ):
        """A `tf.data.Dataset` of `({"inputs": x, "teacher_logits": t}, y[, w])` batches.

        Args:
            x: The inputs the cache was built on (checked).
            y: Labels, or `None` for a teacher-labelled transfer set.
            sample_weight: Optional per-example weights.
            batch_size: Defaults to `32`.
            shuffle: Shuffle every epoch. Defaults to `True`.
            seed: Shuffle seed. Defaults to `None`.
            expand_top_k: With a top-k cache, expand each batch's kept
                logits to full rows `t` in the pipeline. `False`: the batch
                carries the kept values and classes (`"teacher_top_k_values"`,
                `"teacher_top_k_indices"`, and with `top_k_rest="uniform"` the
                rest logits) instead; the `Distiller` then computes the
                forward KL from them without building full rows (a
                renormalised cache and the `"kl"` loss), or expands them
                inside its step (other losses, `"uniform"`). Defaults to
                `True`.
        """
        self.check(x)
        expand_top_k = _checks.check_bool("expand_top_k", expand_top_k)
        if self.indices is None:
            features = {INPUTS_KEY: x, LOGITS_KEY: self.logits}
        elif not expand_top_k:
            features = {
                INPUTS_KEY: x,
                TOP_K_VALUES_KEY: self.logits,
                TOP_K_INDICES_KEY: self.indices,
            }
            if self.rest_logits is not None:
                features[REST_LOGITS_KEY] = self.rest_logits
        else:
            features = {
                INPUTS_KEY: x,
                TOP_K_VALUES_KEY: self.logits,
                TOP_K_INDICES_KEY: self.indices,
                REST_LOGITS_KEY: self.full_rest_logits(),
            }
        element = (features,) if y is None else (features, y)
        if sample_weight is not None:
            element = (features, y, sample_weight)
        data = tf.data.Dataset.from_tensor_slices(element)
        if shuffle:
            data = data.shuffle(self.num_examples, seed=seed, reshuffle_each_iteration=True)
        to_batch = full_logits_batch if expand_top_k else top_k_batch
        return data.batch(batch_size).map(to_batch(self.num_classes)).prefetch(tf.data.AUTOTUNE)

    def save(self, path):
        """Writes the cache to `path` (`.npz`) atomically."""
        with atomic_path(path, suffix=".npz") as temporary:
            empty = np.zeros((0,), np.int32)
            np.savez(
                temporary,
                logits=self.logits,
                indices=self.indices if self.indices is not None else empty,
                rest_logits=self.rest_logits if self.rest_logits is not None else empty,
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
        rest = cache_checks.check_loaded_rest(arrays, logits, indices, path)
        return cls(logits, num_examples, digest, num_classes, indices, rest)


def _batch_storer(teacher, teacher_output, from_logits, top_k, top_k_rest):
    """A compiled function: a batch of inputs -> `(values, indices, rest logits, finite,
    largest |output|)` to store; `indices` and `rest` are `None` without top-k and with
    `"renormalize"`."""

    @tf.function(reduce_retracing=True)
    def store(x):
        outputs = select_output(teacher(x, training=False), teacher_output, teacher, "teacher")
        raw = tf.cast(outputs, tf.float32)
        finite = tf.reduce_all(tf.math.is_finite(raw))
        largest = tf.reduce_max(tf.abs(raw))
        logits = logits_from(raw, from_logits)
        classes = logits.shape[-1]
        if top_k is None:
            return logits, None, None, finite, largest
        values, indices = tf.math.top_k(logits, k=top_k)
        if top_k_rest == "renormalize" or top_k == classes:
            return values, indices, None, finite, largest
        return values, indices, uniform_rest_logits(logits, values), finite, largest

    return store


def uniform_rest_logits(logits, kept):
    """The logit that gives every class outside `kept` an equal share of the rest of the mass.

    `r = log((1 - sum_kept p) / (K - k)) + logsumexp(z)`, so that a softmax
    over the kept logits and `K - k` copies of `r` gives the kept classes
    their exact teacher probabilities `p`. Floored at a very low logit when
    the rest of the mass underflows.

    Args:
        logits: The full logits `(..., K)`.
        kept: The kept ones `(..., k)`.
    """
    log_normalizer = tf.cast(tf.reduce_logsumexp(logits, axis=-1), tf.float64)
    kept = tf.cast(kept, tf.float64)
    kept_mass = tf.reduce_sum(tf.exp(kept - log_normalizer[..., None]), axis=-1)
    rest_mass = tf.clip_by_value(1.0 - kept_mass, 0.0, 1.0) / float(
        logits.shape[-1] - kept.shape[-1]
    )
    rest = tf.math.log(rest_mass) + log_normalizer
    return tf.cast(tf.maximum(rest, log_normalizer + MISSING_LOGIT), tf.float32)


def full_logits_batch(num_classes):
    """A `tf.data` map function: a batch whose features hold top-k values, indices and rest
    logits (or full logits) -> the same batch with float32 full logits under `LOGITS_KEY`."""

    def full_batch(features, *rest):
        features = dict(features)
        if TOP_K_VALUES_KEY in features:
            features[LOGITS_KEY] = expand_top_k(
                features.pop(TOP_K_VALUES_KEY),
                features.pop(TOP_K_INDICES_KEY),
                features.pop(REST_LOGITS_KEY),
                num_classes,
            )
        features[LOGITS_KEY] = tf.cast(features[LOGITS_KEY], tf.float32)
        return (features, *rest)

    return full_batch


def top_k_batch(num_classes):
    """A `tf.data` map function: a batch of full logits -> float32 full logits; a batch of
    top-k values, indices (and rest logits) -> float32 values, int32 indices, float32 rest."""

    def cast_batch(features, *rest):
        features = dict(features)
        if LOGITS_KEY in features:
            return full_logits_batch(num_classes)(features, *rest)
        features[TOP_K_VALUES_KEY] = tf.cast(features[TOP_K_VALUES_KEY], tf.float32)
        features[TOP_K_INDICES_KEY] = tf.cast(features[TOP_K_INDICES_KEY], tf.int32)
        if REST_LOGITS_KEY in features:
            features[REST_LOGITS_KEY] = tf.cast(features[REST_LOGITS_KEY], tf.float32)
        return (features, *rest)

    return cast_batch


def expand_top_k(values, indices, rest_logits, num_classes):
    """Full logits `(..., num_classes)` from top-k `values` and `indices` `(..., k)`.

    Classes outside `indices` get `rest_logits` `(...)`.
    """
    values = tf.cast(values, tf.float32)
    full_shape = tf.concat([tf.shape(values)[:-1], [num_classes]], axis=0)
    full = tf.broadcast_to(tf.cast(rest_logits, tf.float32)[..., None], full_shape)
    flat = tf.reshape(full, [-1, num_classes])
    k = tf.shape(values)[-1]
    rows = tf.repeat(tf.range(tf.shape(flat)[0]), k)
    columns = tf.reshape(tf.cast(indices, tf.int32), [-1])
    flat = tf.tensor_scatter_nd_update(
        flat, tf.stack([rows, columns], axis=1), tf.reshape(values, [-1])
    )
    return tf.reshape(flat, full_shape)
