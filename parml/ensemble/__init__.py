"""Ensembles whose members are fitted as scheduler tasks."""

from ._forest import BaggedForest

__all__ = ["BaggedForest"]
