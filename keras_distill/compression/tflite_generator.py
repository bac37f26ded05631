"""`TFLiteGenerator`: greedy generation over the `prefill` and `decode` signatures of a file."""

import numpy as np

from keras_distill._checks import check_int
from keras_distill._checks import check_prompt
from keras_distill.compression.generation_export import DECODE_KEY
from keras_distill.compression.generation_export import PREFILL_KEY
from keras_distill.compression.litert import load_interpreter


class TFLiteGenerator:
    """Greedy decoding over a file written by `export_generation_tflite`, with LiteRT.

    `prefill` runs once on the prompt (padded on the right to the file's
    prefill length); each new token is the argmax of the last logits, and
    `decode` runs once per token with the cache the previous call returned:

        logits, cache = prefill(prompt, n)
        for position in n, n + 1, ...:
            token = argmax(logits)
            logits, cache = decode(token, position, cache)

    This is the loop a phone app runs with `Interpreter.runSignature`.

    Args:
        model: Path of the `.tflite` file, or its bytes.
        num_threads: Interpreter threads. Defaults to `None` (LiteRT's
            choice).

    Attributes:
        max_sequence_length: Tokens a sequence (prompt and generated) holds.
        prefill_length: The longest prompt.
        vocabulary_size: Length of the logits.

    Example:
        ```python
        generator = TFLiteGenerator("student_lm.tflite", num_threads=2)
        result = generator.generate([2, 17, 40], max_new_tokens=32)
        result["tokens"]  # 32 token ids
        ```
    """

    def __init__(self, model, num_threads=None):
        self.interpreter = load_interpreter(model, num_threads=num_threads)
        signatures = self.interpreter.get_signature_list()
        if PREFILL_KEY not in signatures or DECODE_KEY not in signatures:
            raise ValueError(
                "`model` must be a .tflite file with the signatures 'prefill' and 'decode' "
                "(written by `export_generation_tflite`). "
                f"Received: model with signatures {sorted(signatures)}"
            )
        self._prefill = self.interpreter.get_signature_runner(PREFILL_KEY)
        self._decode = self.interpreter.get_signature_runner(DECODE_KEY)
        prefill_inputs = self._prefill.get_input_details()
        self.prefill_length = int(prefill_inputs["token_ids"]["shape"][1])
        self.max_sequence_length = int(self._decode.get_input_details()["cache"]["shape"][3])
        self.vocabulary_size = int(self._prefill.get_output_details()["logits"]["shape"][-1])

    def prefill(self, prompt):
        """`{"logits": (vocabulary,), "cache": array}` after the prompt."""
        prompt = check_prompt("prompt", prompt, self.vocabulary_size, self.prefill_length)
        token_ids = np.zeros((1, self.prefill_length), np.int32)
        token_ids[0, : len(prompt)] = prompt
        outputs = self._prefill(token_ids=token_ids, length=np.array([len(prompt)], np.int32))
        return {"logits": outputs["logits"][0], "cache": outputs["cache"]}

    def decode(self, token, position, cache):
        """`{"logits": (vocabulary,), "cache": array}` after `token` at `position`."""
        outputs = self._decode(
            token_id=np.array([[token]], np.int32),
            position=np.array([position], np.int32),
            cache=cache,
        )
        return {"logits": outputs["logits"][0], "cache": outputs["cache"]}

    def generate(self, prompt, max_new_tokens, stop_token_ids=None, return_logits=False):
        """Greedily generates up to `max_new_tokens` tokens after `prompt`.

        Args:
            prompt: 1-D sequence of token ids, at most `prefill_length` long.
            max_new_tokens: Tokens to generate; the prompt and they must fit
                in `max_sequence_length`.
            stop_token_ids: Token ids that end the generation (the stop token
                is included in the result). Defaults to `None`.
            return_logits: Also return the logits each token was chosen from.
                Defaults to `False`.

        Returns:
            `{"tokens": int32 (steps,)}`, with `"logits": float32
            (steps, vocabulary)` when `return_logits`.
        """
        prompt = check_prompt("prompt", prompt, self.vocabulary_size, self.prefill_length)
        max_new_tokens = check_int("max_new_tokens", max_new_tokens)
        if len(prompt) + max_new_tokens > self.max_sequence_length:
            raise ValueError(
                f"The prompt ({len(prompt)} tokens) and `max_new_tokens` must fit in the "
                f"file's {self.max_sequence_length} positions; ask for at most "
                f"{self.max_sequence_length - len(prompt)} tokens, or export with a larger "
                f"`max_sequence_length`. Received: max_new_tokens={max_new_tokens}"
            )
        stop = set() if stop_token_ids is None else {int(t) for t in stop_token_ids}
        outputs = self.prefill(prompt)
        tokens, logits = [], []
        for position in range(len(prompt), len(prompt) + max_new_tokens):
            token = int(np.argmax(outputs["logits"]))
            tokens.append(token)
            logits.append(outputs["logits"])
            if token in stop or len(tokens) == max_new_tokens:
                break
            outputs = self.decode(token, position, outputs["cache"])
        result = {"tokens": np.array(tokens, np.int32)}
        if return_logits:
            result["logits"] = np.stack(logits).astype(np.float32)
        return result
