"""The API's services, built from the merger and the evaluator (composition root)."""

from __future__ import annotations

import os
from pathlib import Path

from api.services import InputError, Services
from contracts import PoolSpec, SearchSpec, TrialResult
from evaluator.data import TaskDataError
from evaluator.tasks import make_task
from merger import CheckpointPool, ExportExistsError, PoolError, WeightsError, export_trial, make_method, within_roots


def usable_path(what: str, path: str) -> None:
    """Refuse a path the server cannot take from a client: relative ones (resolved against
    the server's working directory, or "~user" against a home it may not have) and ones no
    file system call accepts (NUL, unpaired surrogates: the call would raise, a 500)."""
    if not os.path.isabs(path):
        raise InputError(f"{what}: the path must be absolute (it is read on the server), got {path[:100]!r}")
    if "\x00" in path:
        raise InputError(f"{what}: the path contains a NUL character")
    try:
        os.fsencode(path)
    except UnicodeEncodeError:
        raise InputError(f"{what}: the path is not a valid file name (unpaired surrogate)") from None


def make_services(settings) -> Services:
    roots = list(settings.allowed_roots)

    def inspect_pool(pool: PoolSpec) -> dict:
        for checkpoint in pool.checkpoints:
            usable_path(f"checkpoint {checkpoint.name!r}", checkpoint.path)
        try:
            opened = CheckpointPool.open(pool, allowed_roots=roots)
        except (PoolError, OSError) as error:  # OSError: e.g. a file we may not read
            raise InputError(str(error)) from None
        try:
            return {"tensors": len(opened.tensor_names), "bytes_per_checkpoint": opened.nbytes,
                    "dtypes": sorted({str(opened.dtype(n)).removeprefix("torch.") for n in opened.tensor_names})}
        finally:
            opened.close()

    def check_search(spec: SearchSpec) -> None:
        inspect_pool(spec.pool)
        from transformers import AutoTokenizer

        tasks = [*spec.tasks, *spec.left_out_tasks]  # left-out tasks are scored held out: checked alike
        for task in tasks:
            usable_path(f"task {task.name!r}", task.path)
            if not within_roots(task.path, roots):
                raise InputError(f"task {task.name!r}: {task.path} is outside the allowed roots")
        pool = CheckpointPool.open(spec.pool, allowed_roots=roots)
        try:
            make_method(pool, spec.merge)  # the merge is possible on this pool (e.g. no more layer groups than layers)
            tokenizer = AutoTokenizer.from_pretrained(pool.config_dir)
            for task in tasks:
                for path in make_task(task, tokenizer, max_positions=task.seq_len).files():
                    if not within_roots(path, roots):  # e.g. the data files an lm-eval YAML names
                        raise InputError(f"task {task.name!r}: {path} is outside the allowed roots")
        except (TaskDataError, OSError, ValueError) as error:  # ValueError: the merger's errors too
            raise InputError(str(error)) from None
        finally:
            pool.close()

    def export_for_api(search_id: str, spec: SearchSpec, result: TrialResult) -> Path:
        out = Path(settings.data_dir) / "exports" / search_id / result.trial_id
        if out.exists():
            return out  # exports are deterministic: the same trial gives the same files
        try:
            return export_trial(search_id, spec, result, out, allowed_roots=roots)
        except ExportExistsError:
            return out  # the same trial exported by a request that finished first
        except (PoolError, WeightsError) as error:
            raise InputError(str(error)) from None

    return Services(inspect_pool=inspect_pool, check_search=check_search, export_trial=export_for_api)
