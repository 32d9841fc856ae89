"""Proposes merge weights and keeps the score: proposal sources, strategies, the
Pareto archive, search stores and the runtime-agnostic search driver."""

from proposer.normalize import REFERENCE, Normalization, normalization_of
from proposer.pareto import ParetoArchive, dominates, hypervolume
from proposer.scalarize import loss_vector
from proposer.search import SearchDriver, best_by_macro, summarize_search
from proposer.store import MemoryStore, SearchExists, SearchStore, UnknownSearch
from proposer.strategies import STRATEGIES, Strategy, make_strategy

__all__ = [
    "MemoryStore",
    "Normalization",
    "REFERENCE",
    "ParetoArchive",
    "STRATEGIES",
    "SearchDriver",
    "SearchExists",
    "SearchStore",
    "Strategy",
    "UnknownSearch",
    "best_by_macro",
    "dominates",
    "hypervolume",
    "loss_vector",
    "make_strategy",
    "normalization_of",
    "summarize_search",
]
