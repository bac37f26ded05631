"""The `Distiller`: a `keras.Model` that trains a student from a frozen teacher."""

import numpy as np
import tensorflow as tf

from keras_distill import _checks
from keras_distill import _data_checks
from keras_distill import _hinton_terms
from keras_distill import _keras
from keras_distill import _positions
from keras_distill import _trace_once
from keras_distill import losses as losses_lib
from keras_distill._keras import keras
from keras_distill._outputs import is_nested as _is_nested
from keras_distill._outputs import select_output as _select
from keras_distill._outputs import static_output_shape as _static_output_shape
from keras_distill.matching.adapters import FeatureAdapter
from keras_distill.matching.capture import LayerCapture
from keras_distill.matching.capture import captured_shape
from keras_distill.matching.matches import AttentionMatch
from keras_distill.matching.matches import FeatureMatch
from keras_distill.teachers import source as teacher_sources
from keras_distill.teachers.top_k import TopKLogits
from keras_distill.teachers.top_k import first_dimension as _first_dimension

HINTON = "hinton"
KERAS_IO = "keras_io"
_DEFAULTS = {HINTON: (0.5, 4.0), KERAS_IO: (0.1, 3.0)}
_COUNTED = "counted_weight"
"""Key of the batch's total position weight among the loss components (positions only)."""


@_keras.register_serializable
class Distiller(keras.Model):
    """Trains `student` to match a frozen `teacher` with plain `fit()`.

    Per example `i` with a label, the loss is

    `L_i = (1 - alpha) * H(y_i, s_i) + alpha * D(t_i, s_i)`,

    where `H` is the cross-entropy of the student's logits `s` with the label
    and `D` the distillation loss on the teacher's logits `t` (by default
    `T^2 * KL(softmax(t/T) || softmax(s/T))`). Examples without a label
    (x-only batches, or sparse labels equal to `label_mask_value`) use
    `L_i = D(t_i, s_i)`. The batch loss is the sample-weighted mean of `L_i`.
    `fit()` logs `student_loss` (mean `H` over labelled examples),
    `distillation_loss` (mean `D`) and `loss`.

    Logits with positions, `(batch, ..., classes)` (causal LMs, taggers,
    segmentation), get the same loss per position, averaged over the
    positions that count: weighted by `sample_weight` (`(batch,)` or
    `(batch, ...)`) and by the padding mask input named by
    `padding_mask_input`; a position whose label is `label_mask_value` does
    not count at all. See `docs/sequences.md`.

    Feature and attention matches add `weight * loss` terms to `L`, each
    logged under its match's name. Their layers are captured in the same
    forward pass that produces the logits: one teacher and one student call
    per step, however many matches there are.

    Two conventions for `alpha` (see `compile`): here `alpha` weighs the
    distillation term (Hinton et al.). Passing `student_loss_fn` or
    `distillation_loss_fn` to `compile` selects the keras.io example's form,
    where `alpha` weighs the student loss.

    The teacher is frozen (`teacher.trainable = False`) and runs once per step
    with `training=False`, outside the gradient tape. `predict()`,
    `evaluate()` metrics and `__call__` are the student's. Save the student
    alone with `distiller.student.save(...)`.

    Args:
        student: Built `keras.Model` to train. Outputs logits.
        teacher: Built, trained `keras.Model`, or a `TeacherCache` of its
            outputs (then feed `cache.dataset(...)`; no teacher runs).
        teacher_from_logits: Whether the teacher returns logits (`False`:
            probabilities, e.g. a softmax head). Defaults to `True`.
        student_output: For several outputs, the name or index of the one to
            distil. Defaults to `None` (the only output).
        teacher_output: Same, for the teacher. Defaults to `None`.
        label_mask_value: Sparse label marking "no label" (one-hot rows whose
            entries all equal it count as missing too), e.g. `-100` for
            Hugging Face data or `255` for segmentation masks. Defaults to
            `-1`.
        padding_mask_input: For dict inputs, the name of the input holding
            the padding mask `(batch, ...)` (1 for real positions, 0 for
            padding), e.g. `"padding_mask"`. Defaults to `None` (positions
            count by `sample_weight` and labels only).
        shared_classes: Compare only the first `shared_classes` classes of
            both models' logits, for vocabularies padded to different sizes
            (e.g. `50257` for a teacher with 50,304 logits and a student with
            50,257). Defaults to `None` (the class counts must agree).
        feature_matches: List of `FeatureMatch`. Defaults to none.
        attention_matches: List of `AttentionMatch`. Defaults to none.
        teacher_outputs: Deprecated: `"probabilities"` is
            `teacher_from_logits=False`.
        **kwargs: Passed to `keras.Model` (e.g. `name`).

    Example:
        ```python
        distiller = Distiller(student=student, teacher=teacher)
        distiller.compile(optimizer="adam", metrics=["accuracy"],
                          alpha=0.9, temperature=4.0)
        distiller.fit(train_ds, epochs=10, validation_data=val_ds)
        distiller.student.save("student.keras")
        ```

    References:
        Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural
        Network", 2015. https://arxiv.org/abs/1503.02531
    """

    def __init__(
        self,
        student,
        teacher,
        teacher_from_logits=True,
        student_output=None,
        teacher_output=None,
        label_mask_value=-1,
        feature_matches=None,
        attention_matches=None,
        teacher_outputs=None,
        padding_mask_input=None,
        shared_classes=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        teacher_from_logits = _checks.check_teacher_from_logits(
            teacher_from_logits, teacher_outputs
        )
        _checks.check_model("student", student)
        _checks.check_distinct(student, teacher)
        self.teacher_source = teacher_sources.teacher_source(
            teacher, from_logits=teacher_from_logits, output=teacher_output
        )
        if self.teacher_source.is_cached and (feature_matches or attention_matches):
            raise ValueError(
                "Feature and attention matches need the live teacher; a TeacherCache holds "
                "logits only. Received: teacher=TeacherCache with matches"
            )
        self.student = student
        self.teacher = self.teacher_source.model
        self.teacher_from_logits = teacher_from_logits
        self.student_output = student_output
        self.teacher_output = teacher_output
        self.label_mask_value = _checks.check_label_mask_value(label_mask_value)
        self.padding_mask_input = _checks.check_optional_name(
            "padding_mask_input", padding_mask_input
        )
        self.shared_classes = (
            None if shared_classes is None else _checks.check_int("shared_classes", shared_classes)
        )
        _checks.check_class_counts(
            _static_output_shape(student, student_output, "student"),
            self.teacher_source.output_shape(),
            self.shared_classes,
        )
        _checks.check_same_tokenizer(student, self.teacher)
        self._alpha = self.add_weight(
            name="alpha", shape=(), dtype="float32", initializer="zeros", trainable=False
        )
        self._temperature = self.add_weight(
            name="temperature", shape=(), dtype="float32", initializer="ones", trainable=False
        )
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
        self.distillation_loss_tracker = keras.metrics.Mean(name="distillation_loss")
        self.convention = HINTON
        self.distillation_loss = losses_lib.get("kl")
        self.student_loss_fn = None
        self.distillation_loss_fn = None
        self.matches = _check_matches(feature_matches, FeatureMatch, "feature_matches")
        self.matches += _check_matches(attention_matches, AttentionMatch, "attention_matches")
        _check_unique_names(self.matches)
        self._student_capture = LayerCapture(
            student, [(m.student_layer, m.kind) for m in self.matches], "student"
        )
        self._teacher_capture = LayerCapture(
            self.teacher, [(m.teacher_layer, m.kind) for m in self.matches], "teacher"
        )
        self.match_trackers = [keras.metrics.Mean(name=m.name) for m in self.matches]
        self.adapters = {}
        self._adapters_built = False
        self._build_adapters(self._static_feature_shapes())
        self._first_batch_checked = False
        self._step_checks = _data_checks.StepChecks(
            self.label_mask_value, self.padding_mask_input, self.teacher_from_logits
        )
        self.built = True  # Student and teacher are built; adapters are built from their shapes.

    def compile(
        self,
        optimizer="rmsprop",
        metrics=None,
        alpha=None,
        temperature=None,
        distillation_loss="kl",
        student_loss_fn=None,
        distillation_loss_fn=None,
        data_checks=True,
        **kwargs,
    ):
        """Configures training.

        Args:
            optimizer: As for `keras.Model.compile`.
            metrics: Metrics of the student, as for `keras.Model.compile`.
            alpha: Weight in `[0, 1]`. Without `student_loss_fn` and
                `distillation_loss_fn`: the weight of the distillation term,
                `(1 - alpha) * H + alpha * D`; defaults to `0.5`. With either
                of them (keras.io form): the weight of the student loss,
                `alpha * student_loss + (1 - alpha) * distillation_loss`;
                defaults to `0.1`.
            temperature: Softmax temperature `T > 0`. Defaults to `4.0`
                (`3.0` in the keras.io form).
            distillation_loss: Name or `losses.DistillationLoss` for `D`:
                `"kl"`, `"soft_ce"`, `"mse"` or `"dkd"`. Defaults to `"kl"`.
            student_loss_fn: keras.io form: `loss(y, student_logits)`.
                Defaults to sparse categorical cross-entropy from logits
                when only `distillation_loss_fn` is given.
            distillation_loss_fn: keras.io form: a loss on the tempered
                probabilities, `loss(softmax(t/T), softmax(s/T)) * T^2`.
                Defaults to `keras.losses.KLDivergence()` when only
                `student_loss_fn` is given.
            data_checks: Check every batch inside the compiled step: sparse
                labels are class indices in range, a teacher declared to
                return probabilities does, and `x`, the sample weights, the
                teacher's outputs, the loss and the gradients are finite
                (finiteness is left to a `StopOnNonFinite` callback when
                `fit` gets one). A failed check raises a `ValueError` naming
                the batch, and no weight changes from that batch on (under
                XLA the error comes at the end of the epoch; with several
                replicas under XLA the checks are skipped). See
                `docs/errors.md`. Defaults to `True`.
            **kwargs: Passed to `keras.Model.compile` (`jit_compile`,
                `steps_per_execution`, `weighted_metrics`, `run_eagerly`).
        """
        if kwargs.get("loss") is not None:
            raise ValueError(
                "The Distiller computes its own loss; choose it with `distillation_loss`, "
                f"`alpha` and `temperature`. Received: loss={kwargs['loss']!r}"
            )
        kwargs.pop("loss", None)
        keras_io_form = student_loss_fn is not None or distillation_loss_fn is not None
        self.convention = KERAS_IO if keras_io_form else HINTON
        default_alpha, default_temperature = _DEFAULTS[self.convention]
        alpha = _checks.check_alpha(default_alpha if alpha is None else alpha)
        temperature = _checks.check_temperature(
            default_temperature if temperature is None else temperature
        )
        self.distillation_loss = losses_lib.get(distillation_loss)
        if keras_io_form:
            self.student_loss_fn = student_loss_fn or keras.losses.SparseCategoricalCrossentropy(
                from_logits=True
            )
            self.distillation_loss_fn = distillation_loss_fn or keras.losses.KLDivergence()
        else:
            self.student_loss_fn = self.distillation_loss_fn = None
        data_checks = _checks.check_bool("data_checks", data_checks)
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)
        self._step_checks.enabled = data_checks
        self.alpha = alpha
        self.temperature = temperature

    @property
    def alpha(self):
        """Current `alpha` (a float; assign to change it between steps)."""
        return float(self._alpha.numpy())

    @alpha.setter
    def alpha(self, value):
        self._alpha.assign(_checks.check_alpha(value))

    @property
    def temperature(self):
        """Current temperature `T` (a float; assign to change it between steps)."""
        return float(self._temperature.numpy())

    @temperature.setter
    def temperature(self, value):
        self._temperature.assign(_checks.check_temperature(value))

    @property
    def data_checks(self):
        """Whether every batch is checked inside the compiled step (`compile(data_checks=)`)."""
        return self._step_checks.enabled

    @property
    def metrics(self):
        return [
            self.loss_tracker,
            self.student_loss_tracker,
            self.distillation_loss_tracker,
            *self.match_trackers,
        ] + _keras.compiled_metric_objects(self)

    @property
    def cache(self):
        """The `TeacherCache` the Distiller reads, or `None` for a live teacher."""
        return getattr(self.teacher_source, "cache", None)

    @property
    def teacher_outputs(self):
        """Deprecated: `"logits"` or `"probabilities"`; see `teacher_from_logits`."""
        return "logits" if self.teacher_from_logits else "probabilities"

    def call(self, inputs, training=False):
        return self.student(teacher_sources.student_inputs(inputs), training=training)

    def fit(self, x=None, y=None, *args, **kwargs):
        self._check_strategy()
        y = _checks.check_fit_arguments(self, x, y, kwargs.get("class_weight"))
        if not self._first_batch_checked:
            self._check_first_batch(x, y)
        self._ensure_adapters(x)
        callbacks, position, retrace = _data_checks.fit_callbacks(
            self._step_checks, kwargs.get("callbacks")
        )
        kwargs["callbacks"] = callbacks
        if retrace:
            _keras.forget_compiled_steps(self)
        self._build_optimizer()
        with self._step_checks.reporting(self, position):
            history = super().fit(x, y, *args, **kwargs)
        return history

    def evaluate(self, x=None, y=None, *args, **kwargs):
        y = _checks.labels_as_array(y)
        self._ensure_adapters(x)
        with self._step_checks.reporting(self):
            results = super().evaluate(x, y, *args, **kwargs)
        return results

    def train_step(self, data):
        guard = self._step_checks.guard(self, training=True)
        x, y, sample_weight = _keras.unpack_x_y_sample_weight(data)
        x, teacher_logits, teacher_features = self._teacher_forward(x)
        y = guard.labels(y, teacher_logits)
        variables = self._student_side_variables()
        with tf.GradientTape() as tape:
            with self._student_capture.recording() as student_features:
                student_outputs = self.student(x, training=True)
            components = self._loss_components(
                x,
                y,
                student_outputs,
                teacher_logits,
                sample_weight,
                student_features,
                teacher_features,
                training=True,
            )
            scaled = _keras.scale_loss(self.optimizer, components["loss"])
        gradients = tape.gradient(scaled, variables)
        gradients = guard.values(
            data, teacher_logits, components["loss"], values=gradients, gradients=gradients
        )
        guard.update(
            lambda values: _keras.apply_gradients(self.optimizer, values, variables), gradients
        )
        self._track(components, teacher_logits)
        return self.compute_metrics(x, y, student_outputs, sample_weight)

    def test_step(self, data):
        guard = self._step_checks.guard(self, training=False)
        x, y, sample_weight = _keras.unpack_x_y_sample_weight(data)
        x, teacher_logits, teacher_features = self._teacher_forward(x)
        y = guard.labels(y, teacher_logits)
        with self._student_capture.recording() as student_features:
            student_outputs = self.student(x, training=False)
        components = self._loss_components(
            x, y, student_outputs, teacher_logits, sample_weight, student_features, teacher_features
        )
        components = guard.values(data, teacher_logits, components["loss"], values=components)
        guard.finish()
        self._track(components, teacher_logits)
        return self.compute_metrics(x, y, student_outputs, sample_weight)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """Updates the student's compiled metrics; rows or positions without labels get weight 0.

        With one row per example, only `weighted_metrics` honour that weight
        (Keras passes no sample weight to `metrics`), so use
        `weighted_metrics` with partly labelled batches. With positions (a
        tagger, a causal LM), padding and positions without a label are left
        out of every metric. Batches without labels leave the metrics
        unchanged.
        """
        if y is None:
            return self.get_metrics_result()
        if not _is_nested(y) and not _is_nested(y_pred):
            logits = tf.convert_to_tensor(y_pred)
            labels = tf.convert_to_tensor(y)
            if self.shared_classes is not None:
                logits = logits[..., : self.shared_classes]
                if _positions.is_one_hot(labels, logits):
                    labels = labels[..., : self.shared_classes]
            mask = _positions.label_mask(labels, logits, self.label_mask_value)
            labels = _positions.fill_missing_labels(labels, mask, logits)
            y = _data_checks.flat_sparse_labels(labels, logits)
            sample_weight = self._position_weights(x, sample_weight, logits) * mask
            if _positions.has_positions(logits):
                return self._compute_position_metrics(x, y, logits, sample_weight)
            y_pred = logits
        return super().compute_metrics(x, y, y_pred, sample_weight)

    def _compute_position_metrics(self, x, y, logits, weights):
        """Metrics over the positions that count: every position is a row, weighted."""
        rows = tf.reshape(logits, [-1, tf.shape(logits)[-1]])
        if _positions.is_one_hot(y, logits):
            y = tf.reshape(y, tf.shape(rows))
        else:
            y = tf.reshape(y, [-1])
        weights = tf.reshape(weights, [-1])
        rows = _keras.with_metric_mask(rows, weights > 0)
        return super().compute_metrics(x, y, rows, weights)

    def get_config(self):
        return {
            "name": self.name,
            "student": _keras.serialize(self.student),
            "teacher": None if self.teacher is None else _keras.serialize(self.teacher),
            "teacher_from_logits": self.teacher_from_logits,
            "student_output": self.student_output,
            "teacher_output": self.teacher_output,
            "label_mask_value": self.label_mask_value,
            "padding_mask_input": self.padding_mask_input,
            "shared_classes": self.shared_classes,
            "feature_matches": [
                m.get_config() for m in self.matches if isinstance(m, FeatureMatch)
            ],
            "attention_matches": [
                m.get_config() for m in self.matches if isinstance(m, AttentionMatch)
            ],
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["student"] = _keras.deserialize(config["student"])
        config["teacher"] = _keras.deserialize(config["teacher"])
        config["feature_matches"] = [FeatureMatch(**c) for c in config.get("feature_matches") or []]
        config["attention_matches"] = [
            AttentionMatch(**c) for c in config.get("attention_matches") or []
        ]
        return cls(**config)

    def build_adapters(self, x):
        """Builds the matches' adapters from one forward pass on inputs `x`.

        `fit()` and `evaluate()` do this on the first batch of arrays or a
        `tf.data.Dataset`; call it yourself when a model cannot tell its
        layers' shapes (subclassed models) before a custom training loop or a
        `fit()` on a generator.
        """
        x, _, teacher_features = self._teacher_forward(x)
        with self._student_capture.recording() as student_features:
            self.student(x, training=False)
        shapes = {}
        for match in self.matches:
            student_value = student_features[(match.student_layer, match.kind)]
            teacher_value = teacher_features[(match.teacher_layer, match.kind)]
            shapes[match.name] = (captured_shape(student_value), captured_shape(teacher_value))
        self._build_adapters(shapes)

    def _ensure_adapters(self, x):
        """Builds the matches' adapters from `x`'s first batch if they still wait for one.

        Raises where `x` cannot give a batch before training (a generator):
        the step cannot shape them.
        """
        if not self.matches or self._adapters_built:
            return
        batch = _trace_once.first_batch(x)
        if batch is None:
            raise ValueError(
                "The matches' adapters take their shapes from a batch of inputs, and this data "
                "cannot be read before training (a subclassed student does not tell its layers' "
                "shapes). Call `distiller.build_adapters(x_batch)` with one batch of inputs "
                f"first, or pass arrays or a tf.data.Dataset. Received: x of type "
                f"{type(x).__name__}"
            )
        self.build_adapters(batch[0])

    def _build_optimizer(self):
        """Gives the optimizer its state before `fit()` traces the step (`_trace_once`).

        Only when every variable the step trains exists (a layer of the
        student not yet built leaves it to the step). Without `compile()`,
        `fit()` says so.
        """
        if self.optimizer is not None and _trace_once.is_built(self.student):
            _trace_once.build_optimizer(self, self._student_side_variables())

    def _student_side_variables(self):
        variables = list(self.student.trainable_variables)
        for adapter in self.adapters.values():
            variables.extend(adapter.trainable_variables)
        return variables

    def _static_feature_shapes(self):
        """`{match name: (student shape, teacher shape)}` where the graph tells them."""
        shapes = {}
        for match in self.matches:
            student_layer = self._student_capture.layers[(match.student_layer, match.kind)]
            teacher_layer = self._teacher_capture.layers[(match.teacher_layer, match.kind)]
            try:
                shapes[match.name] = (
                    tuple(student_layer.output.shape),
                    tuple(teacher_layer.output.shape),
                )
            except (AttributeError, ValueError, RuntimeError):
                return None
        return shapes

    def _build_adapters(self, shapes):
        if self._adapters_built or shapes is None:
            return
        for match in self.matches:
            if not isinstance(match.adapter, str):
                self.adapters[match.name] = match.adapter
                continue
            student_shape, teacher_shape = shapes[match.name]
            plan = match.adapter_plan(student_shape, teacher_shape)
            if plan is None:
                continue
            project, resize = plan
            adapter = FeatureAdapter(
                teacher_shape[1:], project=project, resize=resize, name=f"adapter_{match.name}"
            )
            adapter.build(student_shape)
            self.adapters[match.name] = adapter
        self._adapters_built = True

    def _teacher_forward(self, x):
        """`(student inputs, teacher logits (float32), captured teacher features)`.

        A batch of top-k teacher logits (`cache.dataset(..., expand_top_k=False)`)
        stays `TopKLogits` where the loss reads them directly
        (`_reads_top_k`); otherwise it is expanded to full rows here.
        """
        x, teacher_logits, features = self.teacher_source.forward(x, self._teacher_capture)
        if isinstance(teacher_logits, TopKLogits) and not self._reads_top_k(teacher_logits):
            teacher_logits = teacher_logits.dense()
        return x, teacher_logits, features

    def _reads_top_k(self, teacher_logits):
        """True when the loss is computed from the top-k logits without full rows: a
        renormalised cache, the forward KL in the Hinton form, and all of the teacher's
        classes compared."""
        return (
            teacher_logits.renormalized
            and self._distils_with_forward_kl()
            and (self.shared_classes is None or self.shared_classes >= teacher_logits.num_classes)
        )

    def _distils_with_forward_kl(self):
        """True for the Hinton form with the plain forward KL (`"kl"`)."""
        loss = self.distillation_loss
        return (
            self.convention == HINTON
            and type(loss).fn is losses_lib.distillation_kl
            and not loss.fn_kwargs
        )

    def _logits_pair(self, student_outputs, teacher_logits):
        """The distilled student logits (float32) and the teacher's, cut to the shared classes.

        Raises:
            ValueError: when their shapes differ (other than in the batch).
        """
        student_logits = tf.cast(
            _select(student_outputs, self.student_output, self.student, "student"), tf.float32
        )
        if self.shared_classes is not None:
            student_logits = student_logits[..., : self.shared_classes]
        if isinstance(teacher_logits, TopKLogits):  # All of its classes are compared.
            teacher_shape = (*teacher_logits.values.shape[:-1], teacher_logits.num_classes)
        else:
            if self.shared_classes is not None:
                teacher_logits = teacher_logits[..., : self.shared_classes]
            teacher_shape = tuple(teacher_logits.shape)
        _checks.check_class_counts(tuple(student_logits.shape), teacher_shape, self.shared_classes)
        return student_logits, teacher_logits

    def _position_weights(self, x, sample_weight, logits):
        """`sample_weight` times the padding mask, one weight per position `(batch, ...)`."""
        weights = _positions.position_weights(sample_weight, logits, "sample_weight")
        padding = _positions.padding_weights(
            teacher_sources.student_inputs(x), self.padding_mask_input, logits
        )
        return weights if padding is None else weights * padding

    def _loss_components(
        self,
        x,
        y,
        student_outputs,
        teacher_logits,
        sample_weight,
        student_features,
        teacher_features,
        training=False,
    ):
        """The batch's `student_loss`, `distillation_loss`, one value per match, and `loss`.

        `loss` includes the weighted matches and the student's regularization
        losses, as in Keras. Under `tf.distribute` each replica returns its
        share: the values summed over replicas are the global batch's values
        (weighted means use the global sum of weights).
        """
        student_logits, teacher_logits = self._logits_pair(student_outputs, teacher_logits)
        weights = self._position_weights(x, sample_weight, student_logits)
        components = self._distillation_components(
            y, student_logits, teacher_logits, weights, training
        )
        for match in self.matches:
            value = self._match_value(match, student_features, teacher_features, weights)
            components[match.name] = value
            components["loss"] = components["loss"] + match.weight * value
        if self.student.losses:
            regularization = tf.add_n([tf.cast(loss, tf.float32) for loss in self.student.losses])
            components["loss"] = components["loss"] + regularization / _keras.num_replicas_in_sync()
        return components

    def _labels_and_mask(self, y, logits):
        """`(labels with missing ones filled, label mask)`; `(None, zeros)` without labels."""
        if y is None:
            return None, tf.zeros(tf.shape(logits)[:-1], tf.float32)
        labels = _select(y, self.student_output, self.student, "y") if _is_nested(y) else y
        labels = tf.convert_to_tensor(labels)
        if self.shared_classes is not None and _positions.is_one_hot(labels, logits):
            labels = labels[..., : self.shared_classes]
        mask = _positions.label_mask(labels, logits, self.label_mask_value)
        return _positions.fill_missing_labels(labels, mask, logits), mask

    def _distillation_components(self, y, student_logits, teacher_logits, weights, training):
        """The logits terms; with positions, also the batch's counted weight under `_COUNTED`."""
        labels, mask = self._labels_and_mask(y, student_logits)
        positions = _positions.has_positions(student_logits)
        if labels is not None and positions:
            weights = weights * mask  # A position without a label does not count.
        if self.convention == KERAS_IO and not positions:
            return self._keras_io_components(labels, student_logits, teacher_logits, weights, mask)
        total_weight = _keras.global_sum(tf.reduce_sum(weights))
        if self.convention == KERAS_IO:
            components = self._keras_io_components(
                labels, student_logits, teacher_logits, weights, mask
            )
        else:
            components = self._hinton_components(
                labels, mask, student_logits, teacher_logits, weights, total_weight, training
            )
        if positions:
            components[_COUNTED] = total_weight
        return components

    def _hinton_components(
        self, labels, mask, student_logits, teacher_logits, weights, total_weight, training
    ):
        """`(1 - alpha) * H + alpha * D` where labelled, `D` alone where not."""
        if labels is None:
            zero = tf.zeros_like(total_weight)
            distillation = self._soft(labels, mask, student_logits, teacher_logits)
            mean_distillation = _positions.weighted_mean(distillation, weights, total_weight)
            return {
                "student_loss": zero,
                "distillation_loss": mean_distillation,
                "loss": mean_distillation,
            }
        if training and self._distils_with_forward_kl():
            hard, distillation = self._hard_and_soft(labels, student_logits, teacher_logits)
        else:
            hard = losses_lib.hard_label_cross_entropy(labels, student_logits)
            distillation = self._soft(labels, mask, student_logits, teacher_logits)
        per_position = distillation + mask * self._hard_label_share() * (hard - distillation)
        return {
            "student_loss": _positions.weighted_mean(hard, weights * mask),
            "distillation_loss": _positions.weighted_mean(distillation, weights, total_weight),
            "loss": _positions.weighted_mean(per_position, weights, total_weight),
        }

    def _soft(self, labels, mask, student_logits, teacher_logits):
        """The distillation term per example or position."""
        target = None
        if labels is not None and self.distillation_loss.needs_target:
            teacher_top1 = tf.argmax(teacher_logits, axis=-1, output_type=tf.int32)
            indices = _positions.class_indices(labels, student_logits)
            target = tf.where(mask > 0, indices, teacher_top1)
        if isinstance(teacher_logits, TopKLogits):
            return losses_lib.top_k_distillation_kl(
                teacher_logits.values, teacher_logits.indices, student_logits, self._temperature
            )
        return self.distillation_loss.per_example(
            teacher_logits, student_logits, self._temperature, target
        )

    def _hard_and_soft(self, labels, student_logits, teacher_logits):
        """Both terms of a training step with the forward KL, the student's gradient made
        alongside (`_hinton_terms`)."""
        if isinstance(teacher_logits, TopKLogits):
            return _hinton_terms.hard_and_top_k_soft(
                labels,
                teacher_logits.values,
                teacher_logits.indices,
                student_logits,
                self._temperature,
            )
        return _hinton_terms.hard_and_soft(
            labels, teacher_logits, student_logits, self._temperature
        )

    def _hard_label_share(self):
        """`1 - alpha`: the hard-label term's share of the loss where a position has a label."""
        return 1.0 - self._alpha

    def _match_value(self, match, student_features, teacher_features, weights):
        student = student_features[(match.student_layer, match.kind)]
        teacher = teacher_features[(match.teacher_layer, match.kind)]
        adapter = self.adapters.get(match.name)
        if _per_position_feature(match, student, teacher, weights):
            # Each position is a row of the loss, so padded positions weigh nothing.
            if adapter is not None:
                student = adapter(student)
            value = match.compute(_rows(student), _rows(teacher))
            return _positions.weighted_mean(tf.reshape(value, tf.shape(weights)), weights)
        if isinstance(match, AttentionMatch) and weights.shape.rank == 2:
            # Queries at positions that do not count (padding) are left out.
            student = _queries_weighted(student, weights)
        value = match.compute(student, teacher, adapter)
        if value.shape.rank == 1:
            example_weights = weights
            if weights.shape.rank > 1:
                example_weights = tf.reduce_max(tf.reshape(weights, [tf.shape(weights)[0], -1]), 1)
            return _positions.weighted_mean(value, example_weights)
        return value / _keras.num_replicas_in_sync()

    def _keras_io_components(self, labels, student_logits, teacher_logits, weights, mask):
        """keras.io form: `alpha * student_loss + (1 - alpha) * T^2 * loss(p_t, p_s)`."""
        temperature = self._temperature
        distillation = (
            self.distillation_loss_fn(
                tf.nn.softmax(teacher_logits / temperature, axis=-1),
                tf.nn.softmax(student_logits / temperature, axis=-1),
                sample_weight=weights,
            )
            * (temperature**2)
            / _keras.num_replicas_in_sync()
        )
        if labels is None:
            zero = tf.zeros_like(distillation)
            return {"student_loss": zero, "distillation_loss": distillation, "loss": distillation}
        student = self.student_loss_fn(labels, student_logits, sample_weight=weights * mask)
        student = student / _keras.num_replicas_in_sync()
        loss = self._alpha * student + (1.0 - self._alpha) * distillation
        return {"student_loss": student, "distillation_loss": distillation, "loss": loss}

    def _track(self, components, teacher_logits):
        """Logs the global batch's values (replica shares times the replica count).

        The epoch's value is the mean of the batches' values weighted by
        their size, as Keras logs its loss; for logits with positions,
        weighted by the batch's counted positions (their weight), so that it
        is the mean over every counted position of the epoch.
        """
        batch_size = components.get(_COUNTED, _first_dimension(teacher_logits))
        replicas = _keras.num_replicas_in_sync()
        trackers = [
            ("loss", self.loss_tracker),
            ("student_loss", self.student_loss_tracker),
            ("distillation_loss", self.distillation_loss_tracker),
        ] + [(match.name, tracker) for match, tracker in zip(self.matches, self.match_trackers)]
        for name, tracker in trackers:
            value = components[name] if replicas == 1 else components[name] * replicas
            tracker.update_state(value, sample_weight=batch_size)

    def _run(self, role, model, x):
        """Calls `model` on `x`, turning a failure into an error that says what was fed."""
        try:
            return model(x, training=False)
        except Exception as error:  # Keras and TensorFlow raise many types here.
            expected = [tuple(t.shape) for t in getattr(model, "inputs", None) or []]
            received = [tuple(np.shape(leaf)) for leaf in tf.nest.flatten(x)]
            reason = _checks.first_line(error)
            raise ValueError(
                f"The {role} cannot run on `x` ({reason}). Expected inputs of shape "
                f"{expected or 'unknown'}. Received: x with shape {received}"
            ) from None

    def _check_strategy(self):
        strategy = self.distribute_strategy
        if not _keras.IS_LEGACY and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            raise ValueError(
                "MultiWorkerMirroredStrategy does not work with Keras 3's fit() "
                "(keras-team/keras#20585). Set TF_USE_LEGACY_KERAS=1 before importing "
                "keras_distill to train on several workers with tf_keras. "
                "Received: strategy=MultiWorkerMirroredStrategy"
            )

    def _check_first_batch(self, x, y=None):
        """Checks the data and both models on the first batch of the first `fit()`.

        Arrays are checked whole (lengths, finiteness, label range); datasets
        on their first batch. Generators and `PyDataset`s are not checked.
        """
        batch = _trace_once.first_batch(x, y)
        if batch is None or self.teacher_source.is_cached:
            return
        x_batch, y_batch = batch
        if isinstance(x, (np.ndarray, dict, list, tuple)):
            _checks.check_data_arrays(x, y)  # lengths, and finiteness of all of x
        else:
            _checks.check_finite("x", x_batch)
        if self.matches and not self._adapters_built:
            self.build_adapters(x_batch)
        teacher = _select(
            self._run("teacher", self.teacher, x_batch),
            self.teacher_output,
            self.teacher,
            "teacher",
        )
        student_outputs = self._run("student", self.student, x_batch)
        student = _select(student_outputs, self.student_output, self.student, "student")
        _checks.check_class_counts(tuple(student.shape), tuple(teacher.shape), self.shared_classes)
        _checks.check_finite("teacher outputs", teacher)
        _checks.check_output_kinds(self.teacher_from_logits, teacher, student)
        labels = y if isinstance(y, np.ndarray) else y_batch
        if labels is not None and not _is_nested(labels):
            _checks.check_labels(
                np.asarray(labels),
                self.shared_classes or student.shape[-1],
                self.label_mask_value,
                logits_rank=len(student.shape),
            )
        if y_batch is not None:
            _trace_once.build_metrics(self, x_batch, y_batch, student_outputs)
        self._first_batch_checked = True


def _check_matches(matches, cls, argument):
    matches = list(matches or [])
    for match in matches:
        if not isinstance(match, cls):
            raise ValueError(
                f"`{argument}` must be a list of {cls.__name__}. "
                f"Received: an element of type {type(match).__name__}: {match!r}"
            )
    return matches


def _check_unique_names(matches):
    names = [match.name for match in matches]
    reserved = {"loss", "student_loss", "distillation_loss"}
    clashes = sorted({n for n in names if names.count(n) > 1 or n in reserved})
    if clashes:
        raise ValueError(
            "Each match needs its own name for the fit() history (pass `name=`). "
            f"Received: duplicate or reserved names {clashes}"
        )


def _per_position_feature(match, student, teacher, weights):
    """True for a row-wise feature loss on features `(batch, ..., channels)` whose positions
    are the logits' positions (hidden states of a sequence model)."""
    if not isinstance(match, FeatureMatch) or match.loss not in ("mse", "cosine", "hint"):
        return False
    if weights.shape.rank < 2 or student.shape.rank != weights.shape.rank + 1:
        return False
    return teacher.shape.rank == student.shape.rank


def _queries_weighted(captured, weights):
    """An attention capture `(probabilities, mask)` whose mask leaves out the query rows of
    positions of weight 0 (`weights` is `(batch, queries)`)."""
    probabilities, mask = captured
    queries = tf.cast(weights > 0, tf.float32)[:, None, :, None]
    if mask is None:
        mask = tf.ones_like(probabilities[:, :1], tf.float32)
    mask = tf.cast(mask, tf.float32)
    while mask.shape.rank < 4:
        mask = mask[:, None]
    return probabilities, mask * queries


def _rows(features):
    """Features `(batch, ..., channels)` as rows `(positions, channels)`."""
    return tf.reshape(features, [-1, tf.shape(features)[-1]])
