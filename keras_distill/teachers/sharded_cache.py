"""A teacher cache kept in shard files and streamed with `tf.data`: for caches too big for memory.

`ShardedTeacherCache.build` runs the teacher over `examples_per_shard`
examples at a time and writes each shard as a `TeacherCache` file
(`shard-00000.npz`, ...), then an index `cache.json` with the fingerprint of
all the inputs. `dataset()` reads the shards one after the other while it
trains, so memory holds one shard, a shuffle buffer and one batch of full
logits, whatever the number of tokens.
"""

import json
import os

import numpy as np
import tensorflow as tf

from keras_distill import _checks
from keras_distill._files import write_text
from keras_distill.teachers import cache as cache_lib

INDEX_FILE = "cache.json"
_SHARD_FILE = "shard-{:05d}.npz"


class ShardedTeacherCache:
    """The teacher's logits for one fixed set of inputs, in shard files of a folder.

    Build it with `ShardedTeacherCache.build`, reopen it with `open`, and
    pass it to the `Distiller` in place of the teacher, as a `TeacherCache`:

    Example:
        ```python
        cache = ShardedTeacherCache.build(
            teacher, token_ids, "teacher_cache", top_k=32, examples_per_shard=2048
        )
        distiller = Distiller(student=student, teacher=cache)
        distiller.compile(optimizer="adam", alpha=0.5, temperature=1.0)
        distiller.fit(cache.dataset(token_ids, labels, weights, batch_size=8), epochs=1)
        ```

    Args:
        folder: The folder of the shards and the index.
        index: The index's contents (see `build`).
    """

    def __init__(self, folder, index):
        self.folder = os.fspath(folder)
        self.num_examples = int(index["num_examples"])
        self.digest = str(index["digest"])
        self.num_classes = int(index["num_classes"])
        self.positions = tuple(index["positions"])
        self.top_k = index["top_k"]
        self.has_rest_logits = bool(index["has_rest_logits"])
        self.shards = [tuple(shard) for shard in index["shards"]]

    @classmethod
    def build(
        cls,
        teacher,
        x,
        folder,
        examples_per_shard=1024,
        batch_size=256,
        dtype="float16",
        top_k=None,
        top_k_rest="renormalize",
        teacher_from_logits=True,
        teacher_output=None,
    ):
        """Runs `teacher` over `x` a shard at a time and writes the shards and the index.

        Args:
            teacher: Trained `keras.Model`.
            x: Input array (or dict/list of arrays), the whole dataset.
            folder: Where the files go (created if missing).
            examples_per_shard: Examples per shard file. Defaults to `1024`.
            batch_size, dtype, top_k, top_k_rest, teacher_from_logits,
                teacher_output: As in `TeacherCache.build`; `dtype` defaults
                to `"float16"`.

        Returns:
            The `ShardedTeacherCache` of the folder.
        """
        _checks.check_output_folder("folder", folder)
        examples_per_shard = _checks.check_int("examples_per_shard", examples_per_shard)
        num_examples, digest = cache_lib.fingerprint(x)
        os.makedirs(folder, exist_ok=True)
        shards = []
        part = None
        for number, start in enumerate(range(0, num_examples, examples_per_shard)):
            stop = min(start + examples_per_shard, num_examples)
            chunk = tf.nest.map_structure(lambda leaf: leaf[start:stop], x)
            part = cache_lib.TeacherCache.build(
                teacher,
                chunk,
                batch_size=batch_size,
                dtype=dtype,
                top_k=top_k,
                teacher_from_logits=teacher_from_logits,
                teacher_output=teacher_output,
                top_k_rest=top_k_rest,
            )
            name = _SHARD_FILE.format(number)
            part.save(os.path.join(folder, name))
            shards.append((start, stop, name))
        index = {
            "num_examples": num_examples,
            "digest": digest,
            "num_classes": part.num_classes,
            "positions": list(part.positions),
            "top_k": None if part.indices is None else int(part.indices.shape[-1]),
            "has_rest_logits": part.rest_logits is not None,
            "shards": shards,
        }
        write_text(os.path.join(folder, INDEX_FILE), json.dumps(index, indent=1))
        return cls(folder, index)

    @classmethod
    def open(cls, folder):
        """The cache written by `build` into `folder` (its index and shard files checked)."""
        path = os.path.join(os.fspath(folder), INDEX_FILE)
        _checks.check_existing_file("folder", path, f"a folder with the index {INDEX_FILE}")
        with open(path) as stream:
            index = json.load(stream)
        missing = [n for _, _, n in index["shards"] if not os.path.exists(os.path.join(folder, n))]
        if missing:
            raise ValueError(
                f"`folder` is an incomplete teacher cache: the shard {missing[0]!r} is missing. "
                f"Rebuild it with `ShardedTeacherCache.build`. Received: folder={folder!r}"
            )
        return cls(folder, index)

    def check(self, x):
        """Raises unless `x` are the very inputs this cache was built on."""
        num_examples, digest = cache_lib.fingerprint(x)
        if (num_examples, digest) != (self.num_examples, self.digest):
            raise ValueError(
                "These inputs are not the ones the teacher cache was built on "
                f"({self.num_examples} examples, fingerprint {self.digest[:12]}). "
                f"Rebuild the cache for them. Received: {num_examples} examples, "
                f"fingerprint {digest[:12]}"
            )

    def dataset(
        self,
        x,
        y=None,
        sample_weight=None,
        batch_size=32,
        shuffle_buffer=1024,
        seed=None,
        expand_top_k=True,
    ):
        """A `tf.data.Dataset` of `({"inputs": x, "teacher_logits": t}, y[, w])` batches.

        The shards are read in order, one at a time; examples are shuffled
        within a buffer of `shuffle_buffer` examples (`0`: not shuffled).

        Args:
            x: The inputs the cache was built on (checked).
            y: Labels, or `None` for a teacher-labelled transfer set.
            sample_weight: Optional weights per example or per position.
            batch_size: Defaults to `32`.
            shuffle_buffer: Examples in the shuffle buffer. Defaults to `1024`.
            seed: Shuffle seed. Defaults to `None`.
            expand_top_k: With a top-k cache, `False` keeps each batch's kept
                logits and classes instead of full rows, as in
                `TeacherCache.dataset`. Defaults to `True`.
        """
        self.check(x)
        shuffle_buffer = _checks.check_int("shuffle_buffer", shuffle_buffer, minimum=0)
        expand_top_k = _checks.check_bool("expand_top_k", expand_top_k)
        teacher = tf.data.Dataset.range(len(self.shards)).flat_map(self._shard_dataset)
        if self.top_k is not None and not expand_top_k and not self.has_rest_logits:
            teacher = teacher.map(_without_rest_logits)  # Renormalised: none to carry.
        inputs = [x] + [part for part in (y, sample_weight) if part is not None]
        if sample_weight is not None and y is None:
            raise ValueError(
                "`sample_weight` weighs labels' losses; pass `y` with it. "
                "Received: y=None with sample_weight"
            )
        data = tf.data.Dataset.zip((tf.data.Dataset.from_tensor_slices(tuple(inputs)), teacher))
        data = data.map(_element)
        if shuffle_buffer:
            data = data.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        to_batch = cache_lib.full_logits_batch if expand_top_k else cache_lib.top_k_batch
        return data.batch(batch_size).map(to_batch(self.num_classes)).prefetch(tf.data.AUTOTUNE)

    def _shard_dataset(self, number):
        """The stored arrays of shard `number`, example by example (read when reached)."""
        top_k = self.top_k
        specs = [tf.float32] if top_k is None else [tf.float32, tf.int32, tf.float32]
        arrays = tf.numpy_function(self._read_shard, [number], specs, stateful=False)
        width = self.num_classes if top_k is None else top_k
        shapes = [(None, *self.positions, width)]
        if top_k is not None:
            shapes += [(None, *self.positions, top_k), (None, *self.positions)]
        for array, shape in zip(arrays, shapes):
            array.set_shape(shape)
        if top_k is None:
            return tf.data.Dataset.from_tensor_slices({cache_lib.LOGITS_KEY: arrays[0]})
        keys = (
            cache_lib.TOP_K_VALUES_KEY,
            cache_lib.TOP_K_INDICES_KEY,
            cache_lib.REST_LOGITS_KEY,
        )
        return tf.data.Dataset.from_tensor_slices(dict(zip(keys, arrays)))

    def _read_shard(self, number):
        _, _, name = self.shards[int(number)]
        shard = cache_lib.TeacherCache.load(os.path.join(self.folder, name))
        values = shard.logits.astype(np.float32)
        if shard.indices is None:
            return [values]
        rest = shard.full_rest_logits()
        return [values, shard.indices.astype(np.int32), rest]


def _without_rest_logits(teacher):
    return {key: value for key, value in teacher.items() if key != cache_lib.REST_LOGITS_KEY}


def _element(inputs, teacher):
    """`((x, y, w), teacher arrays)` -> `({"inputs": x, **teacher arrays}, y, w)`."""
    features = {cache_lib.INPUTS_KEY: inputs[0], **teacher}
    return (features, *inputs[1:])
