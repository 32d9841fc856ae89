"""The API's services, built from the merger and the evaluator (composition root)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from api.services import InputError, Services
from contracts import PoolSpec, SearchSpec, TrialResult
from evaluator.data import TaskDataError
from evaluator.tasks import make_task
from merger import CheckpointPool, PoolError, WeightsError, export_merge, within_roots


def make_services(settings) -> Services:
    roots = list(settings.allowed_roots)

    def inspect_pool(pool: PoolSpec) -> dict:
        try:
            opened = CheckpointPool.open(pool, allowed_roots=roots)
        except PoolError as error:
            raise InputError(str(error)) from None
        try:
            return {"tensors": len(opened.tensor_names), "bytes_per_checkpoint": opened.nbytes,
                    "dtypes": sorted({str(opened.dtype(n)).removeprefix("torch.") for n in opened.tensor_names})}
        finally:
            opened.close()

    def check_search(spec: SearchSpec) -> None:
        inspect_pool(spec.pool)
        from transformers import AutoTokenizer

        for task in spec.tasks:
            if not within_roots(task.path, roots):
                raise InputError(f"task {task.name!r}: {task.path} is outside the allowed roots")
        pool = CheckpointPool.open(spec.pool, allowed_roots=roots)
        try:
            tokenizer = AutoTokenizer.from_pretrained(pool.config_dir)
            for task in spec.tasks:
                make_task(task, tokenizer, max_positions=task.seq_len)
        except (TaskDataError, OSError, ValueError) as error:
            raise InputError(str(error)) from None
        finally:
            pool.close()

    def export_trial(search_id: str, spec: SearchSpec, result: TrialResult) -> Path:
        out = Path(settings.data_dir) / "exports" / search_id / result.trial_id
        if out.exists():
            return out  # exports are deterministic: the same trial gives the same files
        pool = CheckpointPool.open(spec.pool, allowed_roots=roots)
        try:
            metadata = {"search_id": search_id, "trial_id": result.trial_id, "source": result.proposal.source,
                        "weights": dict(zip(spec.pool.names, result.proposal.weights)),
                        "scores": result.scores, "report": result.report, "exported_at": time.time()}
            export_merge(pool, spec.merge, list(result.proposal.weights), out, metadata=metadata)
            (out / "recycle.json").write_text(json.dumps(metadata, indent=2))
        except (PoolError, WeightsError) as error:
            raise InputError(str(error)) from None
        finally:
            pool.close()
        return out

    return Services(inspect_pool=inspect_pool, check_search=check_search, export_trial=export_trial)
