"""A program for testing transports: each node contributes a given value."""

import numpy as np


class ValueProgram:
    """Node ``r`` contributes ``value(r, epoch)`` with weight ``weights[r]``.

    The value is ``base[r] + epoch`` (arrays of ``size`` floats), so each round
    moves ``size`` floats per pair. ``open`` ignores the shard.
    """

    def __init__(self, weights, size):
        self.weights = list(weights)
        self.size = size

    def value(self, rank, epoch):
        return {"w": np.full(self.size, float(rank) + epoch), "b": np.array([rank * 2.0])}

    def open(self, X, y, rank):
        return {"rank": rank}

    def step(self, state, params, epoch):
        rank = state["rank"]
        return (self.value(rank, epoch), self.weights[rank],
                {"n": float(self.weights[rank]), "seen": 0.0 if params is None else 1.0})
