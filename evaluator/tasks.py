"""Evaluation tasks: each turns a model into one score on a split.

A task is one objective of the search. It reads its file and tokenizes both
splits once, at construction; `score(model, split)` then only runs forwards.
New kinds register in TASK_KINDS.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F

from contracts import TaskSpec
from evaluator.data import SPLITS, TaskDataError, lm_windows, read_jsonl, split_rows


class Task(ABC):
    def __init__(self, spec: TaskSpec, tokenizer, max_positions: int):
        self.spec = spec
        self.tokenizer = tokenizer
        self.seq_len = min(spec.seq_len, max_positions)

    @property
    def name(self) -> str:
        return self.spec.name

    @abstractmethod
    def score(self, model, split: str) -> float: ...


class LanguageModelLoss(Task):
    """Token-weighted mean negative log-likelihood (nats/token) on held-out text."""

    def __init__(self, spec: TaskSpec, tokenizer, max_positions: int):
        super().__init__(spec, tokenizer, max_positions)
        rows = read_jsonl(spec.path)
        for number, row in enumerate(rows, 1):
            if not isinstance(row.get("text"), str):
                raise TaskDataError(f"{spec.path}: document {number} has no \"text\" string")
        splits = split_rows(rows, spec, key=lambda row: row["text"])
        self.windows = {
            split: lm_windows([r["text"] for r in splits[split]], tokenizer, self.seq_len, spec.items(split))
            for split in SPLITS
        }

    def score(self, model, split: str) -> float:
        nll, tokens = self.window_losses(model, split)
        return float(nll.sum() / tokens.sum())

    @torch.inference_mode()
    def window_losses(self, model, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Per window: summed NLL (float64) and predicted-token count, for paired statistics."""
        input_ids, mask = self.windows[split]
        device = model.device
        nll, tokens = [], []
        for start in range(0, len(input_ids), self.spec.batch_size):
            ids = input_ids[start : start + self.spec.batch_size].to(device)
            attention = mask[start : start + self.spec.batch_size].to(device)
            logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1].float()
            targets = ids[:, 1:].masked_fill(attention[:, 1:] == 0, -100)
            losses = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100, reduction="none")
            nll.append(losses.sum(dim=1).double().cpu())
            tokens.append((targets != -100).sum(dim=1).cpu())
        return torch.cat(nll), torch.cat(tokens)


class MultipleChoice(Task):
    """Accuracy of picking the choice with the highest log-likelihood given the context."""

    def __init__(self, spec: TaskSpec, tokenizer, max_positions: int):
        super().__init__(spec, tokenizer, max_positions)
        rows = read_jsonl(spec.path)
        for number, row in enumerate(rows, 1):
            self._check_row(row, number)
        splits = split_rows(rows, spec, key=lambda row: row["context"] + "\0" + "\0".join(row["choices"]))
        self.items = {split: [self._encode(row) for row in splits[split][: spec.items(split)]] for split in SPLITS}

    def _check_row(self, row: dict, number: int) -> None:
        where = f"{self.spec.path}: question {number}"
        choices = row.get("choices")
        if not isinstance(row.get("context"), str):
            raise TaskDataError(f"{where} has no \"context\" string")
        if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c for c in choices):
            raise TaskDataError(f"{where}: \"choices\" must be a list of 2+ non-empty strings")
        answer = row.get("answer")
        if not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer < len(choices):
            raise TaskDataError(f"{where}: \"answer\" must be an index into choices")

    def _encode(self, row: dict) -> tuple[list[list[int]], list[int], int]:
        """Token ids of context+choice per choice, and where each choice starts."""
        context = self.tokenizer(row["context"], add_special_tokens=False)["input_ids"]
        sequences, starts = [], []
        for choice in row["choices"]:
            continuation = self.tokenizer(choice, add_special_tokens=False)["input_ids"]
            # Keep the end: the continuation must fit, the context is cut from the left.
            sequence = (context + continuation)[-self.seq_len :]
            sequences.append(sequence)
            starts.append(max(1, len(sequence) - len(continuation)))
        return sequences, starts, row["answer"]

    @torch.inference_mode()
    def score(self, model, split: str) -> float:
        correct = 0
        for sequences, starts, answer in self.items[split]:
            width = max(len(s) for s in sequences)
            ids = torch.zeros(len(sequences), width, dtype=torch.long)
            attention = torch.zeros_like(ids)
            for row, sequence in enumerate(sequences):
                ids[row, : len(sequence)] = torch.tensor(sequence)
                attention[row, : len(sequence)] = 1
            ids, attention = ids.to(model.device), attention.to(model.device)
            logprobs = model(input_ids=ids, attention_mask=attention).logits.float().log_softmax(-1)
            totals = []
            for row, (sequence, start) in enumerate(zip(sequences, starts)):
                positions = torch.arange(start, len(sequence), device=ids.device)
                totals.append(logprobs[row, positions - 1, ids[row, positions]].sum().item())
            correct += int(max(range(len(totals)), key=totals.__getitem__) == answer)
        return correct / len(self.items[split])


TASK_KINDS: dict[str, type[Task]] = {"lm_loss": LanguageModelLoss, "multiple_choice": MultipleChoice}


def make_task(spec: TaskSpec, tokenizer, max_positions: int) -> Task:
    return TASK_KINDS[spec.kind](spec, tokenizer, max_positions)
