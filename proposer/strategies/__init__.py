"""Search strategies behind one ask/tell interface, looked up by name."""

from __future__ import annotations

from proposer.strategies.base import Strategy
from proposer.strategies.cma_es import CMAESStrategy
from proposer.strategies.random_search import RandomStrategy
from proposer.strategies.tpe import TPEStrategy

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (TPEStrategy, CMAESStrategy, RandomStrategy)
}


def make_strategy(name: str, n_weights: int, seed: int, normalize: bool, high: float = 1.0,
                  candidates: int | None = None, surrogate: bool = False, blocks: int = 1) -> Strategy:
    """`candidates`: draws per pre-screened ask (None: the strategy's default_candidates);
    `surrogate`: the search's algorithm.surrogate, for strategies that use it themselves;
    `blocks`: layer groups, each a block of n_weights / blocks weights (WeightSpace)."""
    try:
        cls = STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; known: {', '.join(sorted(STRATEGIES))}") from None
    return cls(n_weights, seed, normalize, high, candidates, surrogate, blocks)


__all__ = ["STRATEGIES", "CMAESStrategy", "RandomStrategy", "Strategy", "TPEStrategy", "make_strategy"]
