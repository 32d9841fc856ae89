"""Evaluation: tasks, the resident model, and `Evaluator.evaluate(proposal)`."""

from evaluator.evaluate import Evaluator
from evaluator.tasks import TASK_KINDS, Task, make_task

__all__ = ["Evaluator", "TASK_KINDS", "Task", "make_task"]
