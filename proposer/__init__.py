"""Proposes merge weights and keeps the score: strategies, scalarization, the
Pareto archive, search stores and the runtime-agnostic search driver."""

from proposer.pareto import ParetoArchive, dominates, hypervolume, reference_point
from proposer.scalarize import Scalarizer, loss_vector, macro_average
from proposer.search import SearchDriver, best_by_macro, summarize_search
from proposer.store import MemoryStore, SearchExists, SearchStore, UnknownSearch
from proposer.strategies import STRATEGIES, Strategy, make_strategy

__all__ = [
    "MemoryStore",
    "ParetoArchive",
    "STRATEGIES",
    "Scalarizer",
    "SearchDriver",
    "SearchExists",
    "SearchStore",
    "Strategy",
    "UnknownSearch",
    "best_by_macro",
    "dominates",
    "hypervolume",
    "loss_vector",
    "macro_average",
    "make_strategy",
    "reference_point",
    "summarize_search",
]
