"""Exponential backoff with jitter: the n-th wait is uniform in [c/2, c], c = min(max, initial*2^n)."""
from __future__ import annotations

import random


class Backoff:
    def __init__(self, initial: float = 0.1, maximum: float = 5.0):
        self.initial = initial
        self.maximum = maximum
        self.attempt = 0

    def next(self) -> float:
        ceiling = min(self.maximum, self.initial * (2 ** self.attempt))
        self.attempt = min(self.attempt + 1, 30)
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0
