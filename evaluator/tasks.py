"""Evaluation tasks: each turns a model into one score on a split.

A task is one objective of the search. It reads its file and tokenizes both
splits once, at construction; scoring then only runs forwards. Every task scores
item by item (a window, a question) as a numerator and a denominator (summed NLL
and predicted tokens; correct and 1), and its score is the ratio of the sums: the
verdict resamples those items' groups for its intervals. New kinds register in
TASK_KINDS.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from contracts import TaskSpec
from evaluator.data import SPLITS, TaskDataError, lm_windows, padded, read_jsonl, split_rows

log = logging.getLogger(__name__)
# Warnings already given: every evaluator of a search builds its tasks, each would repeat them.
_warned: set[tuple] = set()


def warn_once(message: str, *args) -> None:
    if (message, *args) not in _warned:
        _warned.add((message, *args))
        log.warning(message, *args)


@dataclass(frozen=True)
class ItemScores:
    """One model on one split of one task, item by item (same items, same order for every model)."""

    numerator: np.ndarray  # float64 per item: summed NLL of a window, 1.0 for a right answer
    denominator: np.ndarray  # float64 per item: predicted tokens of a window, 1.0 per question
    groups: np.ndarray  # int per item: index of the item's group (its source) in this split

    @property
    def score(self) -> float:
        return float(self.numerator.sum() / self.denominator.sum())


class Task(ABC):
    def __init__(self, spec: TaskSpec, tokenizer, max_positions: int):
        self.spec = spec
        self.tokenizer = tokenizer
        self.seq_len = min(spec.seq_len, max_positions)
        self.groups: dict[str, np.ndarray] = {}  # per split: each item's group index
        if spec.seq_len > max_positions:
            warn_once("task %s: seq_len %d is longer than the model's %d positions; its windows are cut to %d tokens",
                      spec.name, spec.seq_len, max_positions, max_positions)

    @property
    def name(self) -> str:
        return self.spec.name

    def _set_groups(self, split: str, labels: list[str]) -> None:
        if len(labels) < self.spec.items(split):  # a small file or short documents: fewer items than asked for
            warn_once("task %s: its %s split has %d items, fewer than the %d asked for (max_items); it is scored on those",
                      self.spec.name, split, len(labels), self.spec.items(split))
        index = {label: i for i, label in enumerate(dict.fromkeys(labels))}
        self.groups[split] = np.array([index[label] for label in labels], dtype=np.int64)

    def files(self) -> list[str]:
        """Every file the task read (the API checks each lies within the allowed roots)."""
        return [self.spec.path]

    def group_count(self, split: str) -> int:
        """Independent units (sources) among the items this split evaluates."""
        return int(self.groups[split].max()) + 1 if len(self.groups[split]) else 0

    def score(self, model, split: str) -> float:
        return self.item_scores(model, split).score

    def item_scores(self, model, split: str) -> ItemScores:
        numerator, denominator = self._per_item(model, split)
        return ItemScores(numerator, denominator, self.groups[split])

    @abstractmethod
    def _per_item(self, model, split: str) -> tuple[np.ndarray, np.ndarray]: ...


class LanguageModelLoss(Task):
    """Token-weighted mean negative log-likelihood (nats/token) on held-out text."""

    def __init__(self, spec: TaskSpec, tokenizer, max_positions: int):
        super().__init__(spec, tokenizer, max_positions)
        rows = read_jsonl(spec.path)
        for number, row in enumerate(rows, 1):
            if not isinstance(row.get("text"), str):
                raise TaskDataError(f"{spec.path}: document {number} has no \"text\" string")
        splits = split_rows(rows, spec, key=lambda row: row["text"])
        self.windows = {}
        for split in SPLITS:
            *self.windows[split], labels = lm_windows(
                [(group, row["text"]) for group, row in splits[split]], tokenizer, self.seq_len, spec.items(split))
            self._set_groups(split, labels)

    def _per_item(self, model, split: str) -> tuple[np.ndarray, np.ndarray]:
        nll, tokens = self.window_losses(model, split)
        return nll.numpy(), tokens.double().numpy()

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
        self.items = {}
        for split in SPLITS:
            kept = splits[split][: spec.items(split)]
            self.items[split] = [self._encode(row) for _, row in kept]
            self._set_groups(split, [group for group, _ in kept])

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
        """Token ids of context+choice per choice, and where each choice starts. A context too long
        for the window is cut from the left once per question, to fit the longest choice: every
        choice is judged on the same context (and scoring runs that context once)."""
        context = self.tokenizer(row["context"], add_special_tokens=False)["input_ids"]
        continuations = [self.tokenizer(choice, add_special_tokens=False)["input_ids"][-self.seq_len + 1:]
                         for choice in row["choices"]]
        keep = self.seq_len - max(len(c) for c in continuations)  # at least 1
        context = context[max(0, len(context) - keep):]
        # No context: a choice's first token has nothing to be predicted from, and is not scored.
        return [context + c for c in continuations], [max(1, len(context))] * len(continuations), row["answer"]

    @torch.inference_mode()
    def _per_item(self, model, split: str) -> tuple[np.ndarray, np.ndarray]:
        items = self.items[split]
        # Whole questions are packed into forwards of up to batch_size choices (a question's
        # choices kept together): few wide forwards instead of one narrow forward per question.
        totals, first = [], 0
        while first < len(items):
            last, rows = first, 0
            while last < len(items) and rows < max(self.spec.batch_size, 1):
                rows += len(items[last][0])
                last += 1
            totals += self._choice_logprobs(model, [(sequences, starts) for sequences, starts, _ in items[first:last]])
            first = last
        correct, row = [], 0
        for sequences, _, answer in items:
            scores = totals[row : row + len(sequences)]
            correct.append(float(int(np.argmax(scores)) == answer))  # ties: the first choice, as max() did
            row += len(sequences)
        return np.array(correct), np.ones(len(correct))

    def _choice_logprobs(self, model, questions) -> list[float]:
        """Summed log-probability of each choice's continuation, question by question. A question's
        choices share its context: that prefix runs once, and each choice runs only its own tokens
        on the prefix's keys and values (with 2 choices, about half the work of running each whole).
        The prefix ends where the first continuation starts or the choices first differ."""
        shared = [min(min(starts), common_prefix(sequences)) for sequences, starts in questions]
        if min(shared) == 0:  # a question with no context may share nothing: run every choice whole
            return self._continuation_logprobs(model, [(q, sequence, start) for q, (sequences, starts) in enumerate(questions)
                                                       for sequence, start in zip(sequences, starts)])
        device = model.device
        # 1. The prefixes, right-padded (padding follows every real token: under the causal mask it
        #    changes none of theirs); their keys and values, and the logits at each one's last token.
        ids, mask = padded([sequences[0][:n] for (sequences, _), n in zip(questions, shared)])
        ends = torch.tensor(shared) - 1
        kept = torch.unique(ends)  # the positions whose logits are needed (few: contexts are mostly full)
        out = model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=True, logits_to_keep=kept.to(device))
        at_end = out.logits[torch.arange(len(questions), device=device), torch.searchsorted(kept, ends).to(device)]
        at_end = at_end.float().log_softmax(-1)
        # 2. Each choice's own tokens, after its question's prefix, on that prefix's keys and values.
        owners = [q for q, (sequences, _) in enumerate(questions) for _ in sequences]
        cache = out.cache
        cache.batch_select_indices(torch.tensor(owners, device=device))
        rows = [(q, sequence[shared[q]:], start - shared[q]) for q, (sequences, starts) in enumerate(questions)
                for sequence, start in zip(sequences, starts)]
        own, own_mask = padded([tokens for _, tokens, _ in rows])
        positions = torch.zeros_like(own)  # padding's positions: any valid one (nothing attends to it)
        for r, (q, tokens, _) in enumerate(rows):
            positions[r, : len(tokens)] = torch.arange(shared[q], shared[q] + len(tokens))
        attention = torch.cat([mask[owners], own_mask], dim=1)  # prefix (with its padding) then own tokens
        logprobs = model(input_ids=own.to(device), attention_mask=attention.to(device), position_ids=positions.to(device),
                         cache=cache).logits.float().log_softmax(-1)
        totals = []
        for r, (q, tokens, first) in enumerate(rows):
            # Own token j is predicted by own position j - 1, the first by the prefix's last logits.
            total = at_end[q, tokens[0]].item() if first == 0 else 0.0
            j = torch.arange(max(first, 1), len(tokens), device=logprobs.device)
            totals.append(total + logprobs[r, j - 1, own[r, j].to(logprobs.device)].sum().item())
        return totals

    def _continuation_logprobs(self, model, rows) -> list[float]:
        """Summed log-probability of each row's continuation, each row run whole (right-padded batch)."""
        ids, attention = padded([sequence for _, sequence, _ in rows])
        ids, attention = ids.to(model.device), attention.to(model.device)
        logprobs = model(input_ids=ids, attention_mask=attention).logits.float().log_softmax(-1)
        totals = []
        for i, (_, sequence, start) in enumerate(rows):
            positions = torch.arange(start, len(sequence), device=ids.device)
            totals.append(logprobs[i, positions - 1, ids[i, positions]].sum().item())
        return totals


def common_prefix(sequences: list[list[int]]) -> int:
    """How many leading tokens every sequence shares."""
    n = min(len(sequence) for sequence in sequences)
    for i in range(n):
        if any(sequence[i] != sequences[0][i] for sequence in sequences[1:]):
            return i
    return n


def lm_eval_task(spec: TaskSpec, tokenizer, max_positions: int) -> Task:
    """Kind lm_eval (evaluator.lm_eval_task), imported only when a search uses it: it needs
    lm-evaluation-harness, an optional extra."""
    try:
        from evaluator.lm_eval_task import LmEvalTask
    except ImportError as error:
        raise TaskDataError(f"task {spec.name!r} is of kind lm_eval, which needs lm-evaluation-harness "
                            f"(pip install 'recycle[lm-eval]'); importing it failed: {error}") from None
    return LmEvalTask(spec, tokenizer, max_positions)


TASK_KINDS: dict[str, Callable[[TaskSpec, object, int], Task]] = {
    "lm_loss": LanguageModelLoss, "multiple_choice": MultipleChoice, "lm_eval": lm_eval_task}


def make_task(spec: TaskSpec, tokenizer, max_positions: int) -> Task:
    return TASK_KINDS[spec.kind](spec, tokenizer, max_positions)
