"""Tasks, the resident model and Evaluator.evaluate on the real (tiny, trained) demo pool."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from contracts import Proposal, SearchSpec, TaskSpec
from evaluator import Evaluator
from evaluator.data import TaskDataError, group_of, split_of
from evaluator.tasks import LanguageModelLoss, MultipleChoice


def proposal(weights, number=0) -> Proposal:
    return Proposal(search_id="s", trial_id=Proposal.make_trial_id("s", number), number=number,
                    weights=tuple(weights), source="tpe")


@pytest.fixture(scope="module")
def spec(demo_pool) -> SearchSpec:
    return SearchSpec(pool=demo_pool.pool, tasks=demo_pool.tasks, budget=4)


@pytest.fixture(scope="module")
def evaluator(spec) -> Evaluator:
    return Evaluator(spec)


def reference_loss(model, task: LanguageModelLoss, split: str) -> float:
    """Plain per-window loop with transformers' own loss, token-weighted."""
    input_ids, mask = task.windows[split]
    nll, tokens = 0.0, 0
    with torch.no_grad():
        for ids, m in zip(input_ids, mask):
            n = int(m.sum())
            out = model(input_ids=ids[None, :n], labels=ids[None, :n])
            nll += out.loss.item() * (n - 1)
            tokens += n - 1
    return nll / tokens


def test_single_checkpoint_scores_match_a_model_loaded_from_disk(evaluator, demo_pool):
    index = 1
    result = evaluator.evaluate(proposal([1.0 if i == index else 0.0 for i in range(len(demo_pool.pool.names))]))
    assert result.status.value == "ok", result.error
    model = AutoModelForCausalLM.from_pretrained(demo_pool.pool.checkpoints[index].path).eval()
    task = evaluator.tasks[0]
    assert result.scores[task.name] == pytest.approx(reference_loss(model, task, "search"), rel=1e-4)
    assert result.report[task.name] == pytest.approx(reference_loss(model, task, "report"), rel=1e-4)
    assert result.merge_seconds > 0 and result.total_seconds >= result.eval_seconds


def test_merging_writes_into_the_same_model_every_trial(evaluator):
    pointers = {name: t.data_ptr() for name, t in evaluator.resident.targets.items()}
    model = evaluator.resident.model
    n = len(evaluator.pool.names)
    first = evaluator.evaluate(proposal([1.0 / n] * n))
    second = evaluator.evaluate(proposal([1.0] + [0.0] * (n - 1), number=1))
    assert evaluator.resident.model is model
    assert {name: t.data_ptr() for name, t in evaluator.resident.targets.items()} == pointers
    assert first.scores != second.scores


def test_a_bad_trial_fails_with_its_reason(evaluator):
    result = evaluator.evaluate(proposal([1.0, 2.0]))  # wrong count
    assert result.status.value == "failed" and "weights" in result.error
    zeros = evaluator.evaluate(proposal([0.0] * len(evaluator.pool.names)))
    assert zeros.status.value == "failed"


def test_splits_never_share_a_group(demo_pool):
    task = demo_pool.tasks[0]
    rows = [json.loads(line) for line in open(task.path)]
    groups = [group_of(row, row["text"], "") for row in rows]
    assert {split_of(g, task) for g in groups} == {"search", "report"}
    by_group = {}
    for group in groups:
        by_group.setdefault(group, set()).add(split_of(group, task))
    assert all(len(splits) == 1 for splits in by_group.values())
    other_seed = task.model_copy(update={"split_seed": 1})
    assert [split_of(g, task) for g in groups] != [split_of(g, other_seed) for g in groups]


def test_rows_without_a_group_are_their_own_and_a_bad_group_is_refused(tmp_path, demo_pool):
    from evaluator.tasks import LanguageModelLoss

    tokenizer = AutoTokenizer.from_pretrained(demo_pool.pool.checkpoints[0].path)
    path = tmp_path / "docs.jsonl"
    rows = [{"text": f"document {i} " * 20, **({"group": "one-source"} if i < 6 else {})} for i in range(30)]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    spec = TaskSpec(name="t", kind="lm_loss", path=str(path), report_fraction=0.5, max_items=100, seq_len=32)
    task = LanguageModelLoss(spec, tokenizer, max_positions=64)
    counts = {split: task.group_count(split) for split in ("search", "report")}
    assert sum(counts.values()) == 24 + 1  # 24 ungrouped rows, one group of six
    path.write_text(json.dumps({"text": "x", "group": ["not", "a", "name"]}))
    with pytest.raises(TaskDataError, match="group"):
        LanguageModelLoss(spec, tokenizer, max_positions=64)


def continuation_logprob(model, tokenizer, context: str, choice: str) -> float:
    """Straightforward reference: one unbatched forward per choice."""
    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    choice_ids = tokenizer(choice, add_special_tokens=False)["input_ids"]
    sequence = (context_ids + choice_ids)[-model.config.n_positions :]  # the context is cut from the left
    start = len(sequence) - len(choice_ids)
    with torch.no_grad():
        logprobs = model(input_ids=torch.tensor([sequence])).logits.log_softmax(-1)[0]
    return sum(logprobs[start + i - 1, t].item() for i, t in enumerate(choice_ids))


# Questions are packed into forwards of batch_size rows, a question's choices kept together
# (3: every forward overruns the limit to finish a question).
@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_multiple_choice_accuracy(demo_pool, tmp_path, batch_size):
    tokenizer = AutoTokenizer.from_pretrained(demo_pool.pool.checkpoints[0].path)
    model = AutoModelForCausalLM.from_pretrained(demo_pool.pool.checkpoints[0].path).eval()
    texts = [json.loads(line)["text"] for line in open(demo_pool.tasks[0].path)]
    # The real continuation vs. letter soup of the same shape: a trained model must prefer the real text.
    soup = random.Random(0)
    rows = []
    for i, text in enumerate(texts[:60]):
        words = text.split()
        if len(words) < 12:
            continue
        context, true = " ".join(words[:8]), " " + " ".join(words[8:12])
        fake = "".join(c if c == " " else soup.choice("qxzjkvwy") for c in true)
        choices = [true, fake] if i % 2 else [fake, true]
        rows.append({"context": context, "choices": choices, "answer": choices.index(true)})
    path = tmp_path / "mc.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    spec = TaskSpec(name="mc", kind="multiple_choice", path=str(path), report_fraction=0.5, max_items=60, batch_size=batch_size)
    task = MultipleChoice(spec, tokenizer, max_positions=model.config.n_positions)
    search_rows = [r for r in rows if split_of(group_of(r, r["context"] + "\0" + "\0".join(r["choices"]), ""), spec) == "search"]
    expected = sum(
        max(range(2), key=lambda c: continuation_logprob(model, tokenizer, r["context"], r["choices"][c])) == r["answer"]
        for r in search_rows
    ) / len(search_rows)
    assert task.score(model, "search") == pytest.approx(expected)
    assert task.score(model, "search") > 0.8 and task.score(model, "report") > 0.8
    assert spec.direction.value == "maximize"


@pytest.mark.parametrize("architecture", ["gpt2", "llama"])
def test_choices_scored_on_their_shared_context_match_each_choice_run_whole(demo_pool, tmp_path, architecture):
    """The context runs once per question and each choice on its keys and values: the same
    log-probabilities as running every choice whole, for absolute (GPT-2) and rotary (Llama)
    positions, ragged contexts and choices, choices sharing first tokens, 2-4 choices; a batch
    holding a question with no context (nothing shared) runs whole."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if architecture == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=97, n_positions=64))
    else:
        model = LlamaForCausalLM(LlamaConfig(num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=4,
                                             num_key_value_heads=2, vocab_size=97, max_position_embeddings=64))
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(demo_pool.pool.checkpoints[0].path)
    path = tmp_path / "mc.jsonl"
    path.write_text("".join(json.dumps({"context": f"a{i}", "choices": ["b", "c"], "answer": 0}) + "\n" for i in range(20)))
    task = MultipleChoice(TaskSpec(name="mc", kind="multiple_choice", path=str(path)), tokenizer, 64)
    draw = random.Random(1)
    questions = []
    for _ in range(12):
        context = [draw.randrange(97) for _ in range(draw.randint(1, 30))]
        shared_start = [draw.randrange(97) for _ in range(draw.randint(0, 2))]  # choices may begin alike
        choices = [shared_start + [draw.randrange(97) for _ in range(draw.randint(1, 6))] for _ in range(draw.randint(2, 4))]
        questions.append(([context + c for c in choices], [len(context)] * len(choices)))
    whole = lambda qs: task._continuation_logprobs(  # noqa: E731
        model, [(q, s, st) for q, (ss, sts) in enumerate(qs) for s, st in zip(ss, sts)])
    with torch.inference_mode():
        assert task._choice_logprobs(model, questions) == pytest.approx(whole(questions), rel=1e-5, abs=1e-4)
        no_context = [([[5, 6, 7], [8, 9]], [1, 1])] + questions[:3]
        assert task._choice_logprobs(model, no_context) == whole(no_context)


@pytest.mark.parametrize(
    "content, words",
    [
        ("", "empty"),
        ("{not json}\n", "not valid JSON"),
        ('{"context": "a", "choices": ["x"], "answer": 0}\n', "2+"),
        ('{"context": "a", "choices": ["x", "y"], "answer": 5}\n', "answer"),
    ],
)
def test_bad_multiple_choice_files_are_refused(demo_pool, tmp_path, content, words):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    tokenizer = AutoTokenizer.from_pretrained(demo_pool.pool.checkpoints[0].path)
    with pytest.raises(TaskDataError, match=words):
        MultipleChoice(TaskSpec(name="mc", kind="multiple_choice", path=str(path)), tokenizer, 128)


def test_losses_are_finite_and_specialists_differ(evaluator, demo_pool):
    n = len(demo_pool.pool.names)
    results = [evaluator.evaluate(proposal([1.0 if i == j else 0.0 for i in range(n)], number=j)) for j in range(n)]
    for result in results:
        assert all(math.isfinite(v) for v in result.scores.values())
    # Each task's best single checkpoint is not the same checkpoint for every task.
    best = {task: min(range(n), key=lambda j: results[j].scores[task]) for task in results[0].scores}
    assert len(set(best.values())) > 1
