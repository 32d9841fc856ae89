"""lm-eval's `LM` over the evaluator's resident model: no model is loaded, none is reloaded.

The worker merges into one model per process (evaluator.model); this wrapper lets an
lm-evaluation-harness task score that model in process. Requests are tokenized once, when
the task is built (`prepare`), the way lm-eval's HFLM tokenizes them (trailing context
spaces move to the continuation; an empty context becomes the prefix token; rolling
windows of `max_length` tokens); each trial then only runs batched forwards.
Importing this module imports lm_eval (an optional extra).
"""

from __future__ import annotations

import torch
from lm_eval import utils as lm_eval_utils
from lm_eval.api.model import LM

from evaluator.data import padded

Row = tuple[tuple[int, ...], int]  # tokens (context then continuation), continuation length


class ResidentLM(LM):
    def __init__(self, tokenizer, max_length: int, batch_size: int):
        super().__init__()
        self.tokenizer, self.max_length, self.batch_size = tokenizer, max_length, batch_size
        self.model = None  # the resident model, set by the task before each scoring
        bos = tokenizer.bos_token_id
        self.prefix_token = bos if bos is not None else tokenizer.eos_token_id
        if self.prefix_token is None:
            raise ValueError("the tokenizer has neither a BOS nor an EOS token to start an empty context with")
        self._rows: dict[tuple, list[Row]] = {}  # request arguments -> their rows, tokenized once

    def prepare(self, requests) -> None:
        """Tokenize requests now, so that scoring them later runs forwards only."""
        for request in requests:
            self._rows_of(request)

    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        return self._score([self._rows_of(r)[0] for r in requests])

    def loglikelihood_rolling(self, requests) -> list[float]:
        rows = [self._rows_of(r) for r in requests]
        scores = iter(self._score([row for windows in rows for row in windows]))
        return [sum(next(scores)[0] for _ in windows) for windows in rows]

    def generate_until(self, requests):
        raise NotImplementedError(
            "recycle scores lm-eval tasks by log-likelihood only (output_type multiple_choice, loglikelihood or "
            "loglikelihood_rolling); generate_until tasks are not supported"
        )

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _rows_of(self, request) -> list[Row]:
        key = (request.request_type, request.args)
        if key not in self._rows:
            if request.request_type == "loglikelihood":
                self._rows[key] = [self._pair(*request.args[:2])]
            elif request.request_type == "loglikelihood_rolling":
                self._rows[key] = self._rolling(request.args[0])
            else:
                self.generate_until([request])
        return self._rows[key]

    def _pair(self, context: str, continuation: str) -> Row:
        if not context:
            context_ids, continuation_ids = [self.prefix_token], self._encode(continuation)
        else:
            # As lm-eval's HFLM: spaces that end the context begin the continuation, and the
            # pair is tokenized whole, so the split falls where the whole text's tokens do.
            spaces = len(context) - len(context.rstrip())
            if spaces:
                context, continuation = context[:-spaces], context[-spaces:] + continuation
            whole = self._encode(context + continuation)
            context_ids = self._encode(context)
            continuation_ids = whole[len(context_ids):]
        tokens = (context_ids + continuation_ids)[-(self.max_length + 1):]  # the context is cut from the left
        return tuple(tokens), min(len(continuation_ids), len(tokens) - 1)

    def _rolling(self, text: str) -> list[Row]:
        windows = lm_eval_utils.get_rolling_token_windows(
            token_list=self._encode(text), prefix_token=self.prefix_token, max_seq_len=self.max_length, context_len=1)
        return [(tuple(context + continuation), len(continuation))
                for context, continuation in map(lm_eval_utils.make_disjoint_window, windows)]

    @torch.inference_mode()
    def _score(self, rows: list[Row]) -> list[tuple[float, bool]]:
        """(summed log-probability of the continuation, whether greedy decoding gives it) per row."""
        results: list[tuple[float, bool]] = [(0.0, True)] * len(rows)
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))  # similar lengths share a batch
        device = self.model.device
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            ids, attention = padded([rows[i][0][:-1] for i in batch])
            logprobs = self.model(input_ids=ids.to(device), attention_mask=attention.to(device)).logits.float().log_softmax(-1)
            for slot, i in enumerate(batch):
                tokens, count = rows[i]
                end = len(tokens) - 1
                targets = torch.tensor(tokens[end - count + 1 :], device=device)
                scored = logprobs[slot, end - count : end]
                results[i] = (scored.gather(1, targets[:, None]).sum().item(), bool((scored.argmax(-1) == targets).all()))
        return results
