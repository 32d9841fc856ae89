"""Kind lm_eval on the real test-scale demo pool: the same per-document scores as lm-eval's own
HF model, the search / report split by group, and bad task specs refused with the reason."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

pytest.importorskip("lm_eval", reason="lm-evaluation-harness is not installed: pip install 'recycle[lm-eval]'")

import lm_eval  # noqa: E402
from lm_eval.models.huggingface import HFLM  # noqa: E402
from pydantic import ValidationError  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from contracts import SearchSpec, TaskSpec  # noqa: E402
from evaluator import Evaluator  # noqa: E402
from evaluator.data import TaskDataError, group_of, split_of  # noqa: E402
from evaluator.lm_eval_task import LmEvalTask, load_lm_eval_task  # noqa: E402

TASKS_DIR = Path(__file__).resolve().parents[2] / "evaluator" / "lm_eval_tasks"
NEXT_LINE = str(TASKS_DIR / "next_line.yaml")
SEQ_LEN = 64  # the test pool's positions: most questions are cut from the left


def next_line(**fields) -> TaskSpec:
    return TaskSpec(**{"name": "next_line", "kind": "lm_eval", "path": NEXT_LINE, "max_items": 16, "seq_len": SEQ_LEN,
                       "batch_size": 5, **fields})


def text_task(tmp_path: Path, demo_pool, **fields) -> TaskSpec:
    """A loglikelihood_rolling task over the demo pool's python documents (longer than the model's window)."""
    (tmp_path / "text.yaml").write_text(
        "task: tiny_text\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: text.jsonl\ntest_split: test\n"
        "output_type: loglikelihood_rolling\ndoc_to_text: ''\ndoc_to_target: text\nmetric_list:\n"
        "  - metric: word_perplexity\n  - metric: byte_perplexity\n  - metric: bits_per_byte\n")
    (tmp_path / "text.jsonl").write_text(Path(demo_pool.tasks[0].path).read_text())  # {"text", "group"} rows
    return TaskSpec(**{"name": "text", "kind": "lm_eval", "path": str(tmp_path / "text.yaml"), "max_items": 6,
                       "seq_len": SEQ_LEN, "batch_size": 4, **fields})


def evaluator_on(demo_pool, task: TaskSpec, checkpoint: int) -> Evaluator:
    evaluator = Evaluator(SearchSpec(pool=demo_pool.pool, tasks=[task], budget=1))
    evaluator.merge([1.0 if i == checkpoint else 0.0 for i in range(len(demo_pool.pool.names))])
    return evaluator


def lm_eval_reference(demo_pool, spec: TaskSpec, checkpoint: int, doc_indices: list[int]) -> list[dict]:
    """lm-eval's own evaluation (its HF model, loaded from disk) of the same documents, per document."""
    path = demo_pool.pool.checkpoints[checkpoint].path
    model = HFLM(pretrained=AutoModelForCausalLM.from_pretrained(path), tokenizer=AutoTokenizer.from_pretrained(path),
                 batch_size=3, max_length=SEQ_LEN, device="cpu")
    task = load_lm_eval_task(spec)
    name = task.config.task
    out = lm_eval.simple_evaluate(model=model, tasks=[task], samples={name: doc_indices}, log_samples=True)
    samples = sorted(out["samples"][name], key=lambda sample: sample["doc_id"])
    assert [sample["doc_id"] for sample in samples] == doc_indices
    return samples


def test_multiple_choice_scores_match_lm_evals_own_model_document_by_document(demo_pool):
    checkpoint = 1
    evaluator = evaluator_on(demo_pool, next_line(metric="acc_norm"), checkpoint)
    task = evaluator.tasks[0]
    ours = task.item_scores(evaluator.resident.model, "search")
    reference = lm_eval_reference(demo_pool, task.spec, checkpoint, task.doc_indices["search"])
    assert list(ours.numerator) == [sample["acc_norm"] for sample in reference]
    assert list(ours.denominator) == [1.0] * len(reference)
    # The log-likelihood of every choice, not only the verdicts built from them.
    ours_ll = [instance.resps[0][0] for instance in task.instances["search"]]
    reference_ll = [resp[0][0] for sample in reference for resp in sample["resps"]]
    assert ours_ll == pytest.approx(reference_ll, rel=1e-4, abs=1e-3)
    assert 0.0 <= ours.score <= 1.0
    with pytest.raises(NotImplementedError, match="generate_until tasks are not supported"):
        task.lm.generate_until(task.instances["search"][:1])


def test_rolling_log_likelihood_matches_lm_evals_own_model(demo_pool, tmp_path):
    checkpoint = 2
    spec = text_task(tmp_path, demo_pool, metric="word_perplexity")
    evaluator = evaluator_on(demo_pool, spec, checkpoint)
    task = evaluator.tasks[0]
    assert spec.direction.value == "minimize"
    reference = lm_eval_reference(demo_pool, spec, checkpoint, task.doc_indices["search"])
    ours = task.item_scores(evaluator.resident.model, "search")
    # Per document: -log-likelihood and words, so the score is the log of lm-eval's word perplexity.
    assert list(ours.numerator) == pytest.approx([-sample["word_perplexity"][0] for sample in reference], rel=1e-4)
    assert list(ours.denominator) == [sample["word_perplexity"][1] for sample in reference]
    nll = sum(-sample["word_perplexity"][0] for sample in reference)
    assert ours.score == pytest.approx(nll / sum(sample["word_perplexity"][1] for sample in reference), rel=1e-4)
    bits = LmEvalTask(text_task(tmp_path, demo_pool, metric="bits_per_byte"), evaluator.tokenizer, SEQ_LEN)
    byte_count = sum(sample["bits_per_byte"][1] for sample in reference)
    assert bits.score(evaluator.resident.model, "search") == pytest.approx(nll / byte_count / math.log(2), rel=1e-4)


def test_documents_split_by_group_and_the_folder_form_names_the_same_task(demo_pool):
    tokenizer = AutoTokenizer.from_pretrained(demo_pool.pool.checkpoints[0].path)
    spec = next_line(max_items=1000, report_max_items=7)
    task = LmEvalTask(spec, tokenizer, SEQ_LEN)
    rows = [json.loads(line) for line in (TASKS_DIR / "next_line.jsonl").read_text().splitlines()]
    groups = {split: {rows[i]["group"] for i in task.doc_indices[split]} for split in ("search", "report")}
    assert groups["search"] and groups["report"] and not groups["search"] & groups["report"]
    for split, names in groups.items():
        assert {split_of(group_of({"group": g}, "", ""), spec) for g in names} == {split}
    assert len(task.doc_indices["report"]) == 7 and task.group_count("report") <= 7
    searched = [i for i in range(len(rows)) if split_of(group_of(rows[i], "", ""), spec) == "search"]
    assert task.doc_indices["search"] == searched  # every search document, in file order
    folder = LmEvalTask(next_line(path=str(TASKS_DIR), lm_eval_task="recycle_next_line", max_items=1000,
                                  report_max_items=7), tokenizer, SEQ_LEN)
    assert folder.doc_indices == task.doc_indices
    assert [i.args for i in folder.instances["report"]] == [i.args for i in task.instances["report"]]


@pytest.mark.parametrize("fields, words", [
    ({"kind": "lm_loss", "metric": "acc"}, "only for tasks of kind lm_eval, not lm_loss"),
    ({"kind": "multiple_choice", "lm_eval_task": "x"}, "only for tasks of kind lm_eval, not multiple_choice"),
    ({"path": "/data/tasks.jsonl"}, "path must be a task YAML"),
    ({"metric": "acc;rm -rf"}, "metric"),
])
def test_bad_combinations_are_refused_by_the_spec(fields, words):
    with pytest.raises(ValidationError, match=words):
        next_line(**fields)


def write_yaml(tmp_path: Path, body: str) -> str:
    (tmp_path / "rows.jsonl").write_text('{"q": "a b", "choices": ["c", "d"], "answer": 0, "text": "x"}\n' * 4)
    (tmp_path / "task.yaml").write_text("task: bad\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
                                        "    test: rows.jsonl\ntest_split: test\n" + body)
    return str(tmp_path / "task.yaml")


MC = "output_type: multiple_choice\ndoc_to_text: q\ndoc_to_choice: choices\ndoc_to_target: answer\n"


@pytest.mark.parametrize("fields, body, words", [
    ({"metric": "f1"}, MC + "metric_list:\n  - metric: acc\n", "has no metric 'f1'"),
    ({"metric": "mcc"}, MC + "metric_list:\n  - metric: mcc\n", "aggregates over all documents"),
    ({"metric": "acc,strict"}, MC + "metric_list:\n  - metric: acc\n", "has no filter 'strict'"),
    ({}, "output_type: generate_until\ndoc_to_text: q\ndoc_to_target: text\nmetric_list:\n  - metric: exact_match\n",
     "generate_until"),
    ({"lm_eval_task": "other"}, MC, "defines lm-eval task 'bad', not 'other'"),
    ({"path": "{dir}", "lm_eval_task": "nope"}, MC, "no lm-eval task 'nope'"),
    ({"path": "{dir}/missing.yaml"}, MC, "task file not found"),
])
def test_bad_lm_eval_tasks_are_refused_with_the_reason(demo_pool, tmp_path, fields, body, words):
    path = write_yaml(tmp_path, body)
    fields = {key: value.replace("{dir}", str(tmp_path)) for key, value in fields.items()}
    tokenizer = AutoTokenizer.from_pretrained(demo_pool.pool.checkpoints[0].path)
    with pytest.raises(TaskDataError, match=words):
        LmEvalTask(next_line(**{"path": path, **fields}), tokenizer, SEQ_LEN)


def test_data_that_is_not_on_this_machine_is_not_downloaded(demo_pool, tmp_path):
    (tmp_path / "hub.yaml").write_text("task: hub\ndataset_path: recycle-no-such-user/no-such-dataset\ntest_split: test\n"
                                       + MC + "metric_list:\n  - metric: acc\n")
    tokenizer = AutoTokenizer.from_pretrained(demo_pool.pool.checkpoints[0].path)
    with pytest.raises(TaskDataError, match="could not load 'hub' offline"):
        LmEvalTask(next_line(path=str(tmp_path / "hub.yaml")), tokenizer, SEQ_LEN)


def test_a_loglikelihood_task_scores_the_right_answers_log_likelihood(demo_pool, tmp_path):
    """Output type loglikelihood, metric perplexity: per document -log p(answer | context), the
    same number the multiple-choice task computes for that choice."""
    (tmp_path / "answer.yaml").write_text(
        f"task: answer\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {TASKS_DIR / 'next_line.jsonl'}\n"
        "test_split: test\noutput_type: loglikelihood\ndoc_to_text: context\ndoc_to_target: '{{choices[answer]}}'\n"
        "target_delimiter: ''\nmetric_list:\n  - metric: perplexity\n  - metric: acc\n")
    evaluator = evaluator_on(demo_pool, next_line(), checkpoint=3)
    answer = LmEvalTask(next_line(path=str(tmp_path / "answer.yaml"), metric="perplexity"), evaluator.tokenizer, SEQ_LEN)
    assert answer.spec.direction.value == "minimize" and answer.doc_indices == evaluator.tasks[0].doc_indices
    scores = answer.item_scores(evaluator.resident.model, "search")
    choice = evaluator.tasks[0]
    choice.item_scores(evaluator.resident.model, "search")
    right = [i.resps[0][0] for i in choice.instances["search"] if i.idx == i.doc["answer"]]
    assert list(scores.numerator) == pytest.approx([-ll for ll in right], rel=1e-5)
    assert scores.score == pytest.approx(-sum(right) / len(right), rel=1e-5)
