"""`OnPolicyDistiller`: distillation on the student's own samples (GKD) and the teacher's
generations (sequence-level KD), with plain `fit()`."""

import numpy as np
import tensorflow as tf

from keras_distill import _checks
from keras_distill import _generation
from keras_distill import _keras
from keras_distill import _positions
from keras_distill.distiller import Distiller

_DRAW, _STUDENT, _TEACHER = 0, 1, 2
"""Random streams of a training step: the on-policy draw, the student's and the teacher's
sampling."""


@_keras.register_serializable
class OnPolicyDistiller(Distiller):
    """A `Distiller` whose batches are, with probability `lmbda`, the student's own samples.

    Generalized knowledge distillation (GKD, Agarwal et al. 2024) trains a
    causal LM on a mix of fixed sequences and sequences it samples itself:

    `L = (1 - lmbda) E_{y ~ data}[D(t, s)(y | x)] + lmbda E_{y ~ student(. | x)}[D(t, s)(y | x)]`

    where `x` is a prompt, `y` its continuation and `D(t, s)(y | x)` the
    divergence between the teacher's and the student's next-token
    distributions, averaged over the tokens of `y`. Each training step draws
    once: with probability `lmbda` it keeps each row's prompt, samples the
    rest of the row from the student at `generation_temperature` (`softmax(z
    / T)`, the key/value cache of keras_hub's `call_with_cache`), and trains
    on that; otherwise it trains on the batch as given, or, with
    `seq_kd=True`, on the teacher's samples after the same prompts
    (sequence-level KD, Kim & Rush 2016). The teacher scores whatever
    sequence the step trains on, in the same forward pass as the `Distiller`.

    The per-token loss is the `Distiller`'s (`compile(distillation_loss=...,
    alpha=..., temperature=...)`; GKD's generalized JSD is
    `distillation_loss=losses.GeneralizedJSD(beta=0.5)` or `"jsd"`), with two
    differences on generated batches:

    - Only generated tokens count, up to and including each row's first end
      token (`end_token_id`); tokens after it are padding, with weight 0 and
      padding mask 0. A row's weight is the largest weight of its positions
      in the batch (a row that counted nowhere stays out).
    - The labels are the generated tokens. On the teacher's samples the
      hard-label term `(1 - alpha) H` trains on them (Kim & Rush's
      sequence-level KD mixed with per-token KD); on the student's own
      samples it is left out (`D` alone): its own samples are no target.
      `student_loss` still logs `H` on them. `alpha=1.0` gives the paper's
      objective (the divergence alone) on every batch.

    `fit()`, callbacks, the progress bar, `evaluate()` (on the data, never
    generated) and saving work as for the `Distiller`. Batches must be
    keras_hub's: `x = {"token_ids", "padding_mask"}`, `(batch, length)`,
    with sparse labels `y` of the next tokens and `sample_weight` as
    `CausalLMPreprocessor` yields them. Sampling fills the positions after
    each prompt up to the batch's `length` (or `max_new_tokens`); it is
    reproducible: step `n` draws from `seed` and `n`.

    Args:
        student: A keras_hub causal LM (`GPT2CausalLM`, `LlamaCausalLM`,
            `GemmaCausalLM`, ...) when `lmbda > 0`.
        teacher: A causal LM. With `seq_kd=True` it generates too. A
            `TeacherCache` cannot score generated tokens.
        lmbda: Probability in `[0, 1]` that a step trains on the student's
            samples (TRL's `lmbda`). `0` with `seq_kd=False` is the
            `Distiller`. Defaults to `0.5`.
        seq_kd: Whether the other steps train on the teacher's samples
            instead of the batch's continuations. Defaults to `False`.
        prompt_length: Tokens of each row kept as its prompt (at most the
            row's length by its padding mask). Defaults to `None`: the tokens
            before the first position whose label counts, plus that position
            (the prompt of keras_hub's `{"prompts", "responses"}` data; the
            first token of plain text).
        max_new_tokens: Most tokens sampled after a prompt. Defaults to
            `None`: up to the end of the batch's sequences.
        generation_temperature: Sampling temperature, `> 0`. Defaults to
            `1.0`.
        end_token_id: The token that ends a sequence. Defaults to `None`:
            the end token of the student's preprocessor's tokenizer when it
            has one, otherwise none (every row runs to its end).
        seed: Integer seed of the draws and the sampling. Defaults to
            `None` (a random one).
        **kwargs: The `Distiller`'s arguments (`label_mask_value`,
            `padding_mask_input`, `shared_classes`: sampling then keeps to the
            shared classes, ...).

    Example:
        ```python
        from keras_distill import OnPolicyDistiller, losses

        distiller = OnPolicyDistiller(student, teacher, lmbda=0.5, prompt_length=8)
        distiller.compile(optimizer="adam", alpha=1.0, temperature=1.0,
                          distillation_loss=losses.GeneralizedJSD(beta=0.5))
        distiller.fit(train_ds, epochs=3)  # x = {"token_ids", "padding_mask"}
        ```

    References:
        Agarwal et al., "On-Policy Distillation of Language Models: Learning
        from Self-Generated Mistakes" (GKD), ICLR 2024.
        https://arxiv.org/abs/2306.13649
        Kim & Rush, "Sequence-Level Knowledge Distillation", EMNLP 2016.
        https://arxiv.org/abs/1606.07947
    """

    def __init__(
        self,
        student,
        teacher,
        lmbda=0.5,
        seq_kd=False,
        prompt_length=None,
        max_new_tokens=None,
        generation_temperature=1.0,
        end_token_id=None,
        seed=None,
        **kwargs,
    ):
        lmbda = _checks.check_lmbda(lmbda)
        seq_kd = _checks.check_bool("seq_kd", seq_kd)
        prompt_length = _optional_int("prompt_length", prompt_length)
        max_new_tokens = _optional_int("max_new_tokens", max_new_tokens)
        generation_temperature = _checks.check_positive_number(
            "generation_temperature", generation_temperature
        )
        end_token_id = _optional_int("end_token_id", end_token_id, minimum=0)
        seed = None if seed is None else _checks.check_int("seed", seed, minimum=0)
        super().__init__(student, teacher, **kwargs)
        self.lmbda = lmbda
        self.seq_kd = seq_kd
        self.prompt_length = prompt_length
        self.max_new_tokens = max_new_tokens
        self.generation_temperature = generation_temperature
        self.end_token_id = _default_end_token(student) if end_token_id is None else end_token_id
        self.seed = seed
        self._sampling_seed = int(np.random.default_rng(seed).integers(2**31 - 1))
        self._student_samples = None  # During a step's trace: whether it trains on them.
        self._check_generators()

    def _check_generators(self):
        generators = []
        if self.lmbda > 0:
            generators.append(("student", self.student, f"lmbda={self.lmbda}"))
        if self.seq_kd:
            generators.append(("teacher", self.teacher, "seq_kd=True"))
        if generators and self.teacher_source.is_cached:
            raise ValueError(
                "On-policy and sequence-level distillation need the live teacher to score the "
                "generated tokens; a TeacherCache holds the logits of fixed sequences only. "
                f"Pass the teacher model. Received: teacher=TeacherCache with lmbda={self.lmbda}"
                f", seq_kd={self.seq_kd}"
            )
        for name, model, purpose in generators:
            _checks.check_generator(name, model, purpose)
            if self.prompt_length is not None and self.max_new_tokens is not None:
                _checks.check_sequence_fits(
                    name,
                    model,
                    self.prompt_length + self.max_new_tokens,
                    received=f"prompt_length={self.prompt_length}, "
                    f"max_new_tokens={self.max_new_tokens}",
                )

    @property
    def generates(self):
        """Whether any step samples sequences (`lmbda > 0` or `seq_kd`)."""
        return self.lmbda > 0 or self.seq_kd

    def compile(self, *args, student_loss_fn=None, distillation_loss_fn=None, **kwargs):
        """As `Distiller.compile`, in its default form (`distillation_loss`, `alpha`, `T`)."""
        if student_loss_fn is not None or distillation_loss_fn is not None:
            raise ValueError(
                "The OnPolicyDistiller takes its loss as `distillation_loss`, `alpha` and "
                "`temperature`, not the keras.io form. Received: "
                f"student_loss_fn={student_loss_fn!r}, "
                f"distillation_loss_fn={distillation_loss_fn!r}"
            )
        super().compile(*args, **kwargs)

    def train_step(self, data):
        if not self.generates:
            return super().train_step(data)
        x, y, sample_weight = _keras.unpack_x_y_sample_weight(data)
        batch, student_samples = self._step_batch(x, y, sample_weight)
        self._student_samples = student_samples
        try:
            return super().train_step(batch)
        finally:
            self._student_samples = None

    def _hard_label_share(self):
        share = Distiller._hard_label_share(self)
        if self._student_samples is None:
            return share
        return tf.where(self._student_samples, tf.zeros_like(share), share)

    def _step_batch(self, x, y, sample_weight):
        """`((x, y, sample_weight) to train on, whether they are the student's samples)`."""
        tokens = _token_ids(x)
        if tokens.shape[1] is not None:
            for name, model in self._generator_models():
                _checks.check_sequence_fits(
                    name, model, tokens.shape[1], received=f"token_ids of length {tokens.shape[1]}"
                )
        weights = _positions.position_weights(sample_weight, tokens[..., None], "sample_weight")
        prompts = self._prompt_lengths(x, y, tokens, weights)
        row_weights = tf.reduce_max(weights, axis=1)
        step = self.optimizer.iterations

        def generated(model, stream):
            seed = _generation.step_seed(self._sampling_seed, step, stream)
            return self._generated_batch(model, seed, x, y, prompts, row_weights)

        def student():
            return generated(self.student, _STUDENT)

        if self.seq_kd:

            def other():
                return generated(self.teacher, _TEACHER)
        else:

            def other():
                return _pack(x, y, weights)

        if self.lmbda == 1.0:
            return _unpack(student()), tf.constant(True)
        if self.lmbda == 0.0:
            return _unpack(other()), tf.constant(False)
        draw = _generation.uniform(_generation.step_seed(self._sampling_seed, step, _DRAW))
        on_policy = draw < self.lmbda
        return _unpack(tf.cond(on_policy, student, other)), on_policy

    def _generator_models(self):
        models = [("student", self.student)] if self.lmbda > 0 else []
        return models + ([("teacher", self.teacher)] if self.seq_kd else [])

    def _prompt_lengths(self, x, y, tokens, weights):
        """Int32 `(batch,)`: the tokens of each row kept as its prompt, in `[1, length]`."""
        length = tf.shape(tokens)[1]
        if self.prompt_length is not None:
            real = tf.reduce_sum(tf.cast(x["padding_mask"], tf.int32), axis=1)
            return tf.clip_by_value(tf.minimum(real, self.prompt_length), 1, length)
        counted = weights > 0
        if y is not None:
            labels = tf.reshape(y, tf.shape(tokens))
            counted &= tf.not_equal(labels, tf.cast(self.label_mask_value, labels.dtype))
        first = tf.argmax(tf.cast(counted, tf.int32), axis=1, output_type=tf.int32)
        return tf.where(tf.reduce_any(counted, axis=1), first + 1, length)

    def _generated_batch(self, model, seed, x, y, prompts, row_weights):
        """The batch with each row's continuation sampled from `model`, packed for `tf.cond`."""
        stop_at = None if self.max_new_tokens is None else prompts + self.max_new_tokens
        tokens = _generation.sample_continuations(
            model,
            x["token_ids"],
            prompts,
            seed,
            temperature=self.generation_temperature,
            end_token_id=self.end_token_id,
            num_classes=self.shared_classes,
            stop_at=stop_at,
        )
        padding, weights = _generation.continuation_masks(
            tokens, prompts, self.end_token_id, stop_at
        )
        generated_x = dict(x)
        generated_x["token_ids"] = tokens
        generated_x["padding_mask"] = tf.cast(padding, x["padding_mask"].dtype)
        labels = None
        if y is not None:
            labels = tf.pad(tokens[:, 1:], [[0, 0], [0, 1]])
            labels = tf.reshape(tf.cast(labels, y.dtype), tf.shape(y))
        return _pack(generated_x, labels, weights * row_weights[:, None])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "lmbda": self.lmbda,
                "seq_kd": self.seq_kd,
                "prompt_length": self.prompt_length,
                "max_new_tokens": self.max_new_tokens,
                "generation_temperature": self.generation_temperature,
                "end_token_id": self.end_token_id,
                "seed": self.seed,
            }
        )
        return config


def _token_ids(x):
    """`x["token_ids"]`, after checking that `x` is a keras_hub causal LM's input dict."""
    if not isinstance(x, dict) or not {"token_ids", "padding_mask"} <= set(x):
        keys = sorted(x) if isinstance(x, dict) else f"a {type(x).__name__}, not a dict"
        raise ValueError(
            "On-policy distillation generates from `x = {'token_ids', 'padding_mask'}`, as "
            f"keras_hub's CausalLMPreprocessor yields it. Received: x with inputs {keys}"
        )
    tokens = tf.convert_to_tensor(x["token_ids"])
    if tokens.shape.rank != 2:
        raise ValueError(
            "`token_ids` must be `(batch, length)`. "
            f"Received: token_ids with shape {tuple(tokens.shape)}"
        )
    return tokens


def _pack(x, y, weights):
    """A batch as a dict `tf.cond` can return (no `None` leaves)."""
    batch = {"x": x, "sample_weight": weights}
    if y is not None:
        batch["y"] = y
    return batch


def _unpack(batch):
    return batch["x"], batch.get("y"), batch["sample_weight"]


def _optional_int(name, value, minimum=1):
    return None if value is None else _checks.check_int(name, value, minimum=minimum)


def _default_end_token(model):
    tokenizer = getattr(getattr(model, "preprocessor", None), "tokenizer", None)
    end = getattr(tokenizer, "end_token_id", None)
    return None if end is None else int(end)
