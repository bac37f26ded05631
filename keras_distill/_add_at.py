"""Dense rows plus a few values per row, added where the rows already are when that is safe.

`add_at(rows, indices, amounts)` returns `rows[..., indices[..., j]] += amounts[..., j]`
(repeated classes in a row add up): the student gradient of a top-k KL, a dense
softmax row plus `k + 1` sparse values per position. On CPU, TensorFlow's
`tensor_scatter_nd_add` copies its dense input (`benchmarks/add_at.py`: on
`(2048, 8192)` rows it adds 32 ms with one value per row and 38 ms with 33),
which for a language model's logits costs as much as the loss itself;
`InplaceAdd` adds into the buffer it is given, one index at a time (1 and 8
ms). It is used when all of these hold:

- no GPU or other accelerator is visible (its GPU kernel adds repeated indices
  without atomics, and GPU scatters are fast anyway);
- the graph is not compiled by XLA, which has no `InplaceAdd` (and whose own
  scatter reuses its buffer);
- `rows` has fewer than 2^31 elements (`InplaceAdd` takes int32 indices into
  the flattened rows);
- `rows` depends on a value known only when the graph runs (a function
  argument, a variable, a stateful op). Grappler folds whatever else into a
  constant, and adding into a folded constant would change it for every later
  call.

Otherwise it is `tensor_scatter_nd_add`. Either way the caller passes a
`rows` tensor that nothing else reads: an intermediate made for this sum.
"""

import tensorflow as tf

from keras_distill._xla import compiled_by_xla

INT32_LIMIT = 2**31 - 1


# It runs while a step is traced; AutoGraph must leave its walk over the graph alone.
@tf.autograph.experimental.do_not_convert
def add_at(rows, indices, amounts):
    """`rows` `(..., classes)` plus `amounts` `(..., k)` at the classes `indices` `(..., k)`."""
    if not _in_place_allowed(rows):
        return _scatter_add(rows, indices, amounts)
    size = rows.shape.num_elements()
    if size is not None:
        if size < INT32_LIMIT:
            return _in_place_add(rows, indices, amounts)
        return _scatter_add(rows, indices, amounts)
    fits = tf.size(rows, out_type=tf.int64) < INT32_LIMIT
    return tf.cond(
        fits,
        lambda: _in_place_add(rows, indices, amounts),
        lambda: _scatter_add(rows, indices, amounts),
    )


def _in_place_allowed(rows):
    if not _cpu_only():
        return False
    if tf.executing_eagerly():
        return True
    return not compiled_by_xla() and _known_at_run_time(rows)


def _known_at_run_time(tensor):
    """Whether `tensor` depends on a function argument, a variable or a stateful op."""
    stack, seen = [tensor], set()
    while stack:
        tensor = stack.pop()
        operation = tensor.op
        if id(operation) in seen:
            continue
        seen.add(id(operation))
        if operation.type == "Placeholder":
            outer = _captured(tensor)
            if outer is None:  # An argument, or a value captured from eager code.
                return True
            stack.append(outer)
        elif operation.op_def.is_stateful:
            return True
        else:
            stack.extend(operation.inputs)
    return False


def _captured(placeholder):
    """The tensor of an enclosing graph that `placeholder` stands for (a `tf.cond` branch's
    input), or `None`."""
    for outer, inner in getattr(placeholder.graph, "captures", ()):
        if inner is placeholder and tf.is_symbolic_tensor(outer):
            return outer
    return None


def _cpu_only():
    return all(device.device_type == "CPU" for device in tf.config.list_logical_devices())


def _in_place_add(rows, indices, amounts):
    classes = tf.shape(rows)[-1]
    flat = tf.reshape(rows, [-1, 1])
    k = tf.shape(indices)[-1]
    row_starts = tf.range(tf.shape(flat)[0] // classes) * classes
    positions = tf.reshape(tf.reshape(indices, [-1, k]) + row_starts[:, None], [-1])
    flat = tf.raw_ops.InplaceAdd(x=flat, i=positions, v=tf.reshape(amounts, [-1, 1]))
    return tf.reshape(flat, tf.shape(rows))


def _scatter_add(rows, indices, amounts):
    classes = tf.shape(rows)[-1]
    flat = tf.reshape(rows, [-1, classes])
    k = tf.shape(indices)[-1]
    row_ids = tf.repeat(tf.range(tf.shape(flat)[0]), k)
    positions = tf.stack([row_ids, tf.reshape(indices, [-1])], axis=1)
    flat = tf.tensor_scatter_nd_add(flat, positions, tf.reshape(amounts, [-1]))
    return tf.reshape(flat, tf.shape(rows))
