"""Model selection on parml's scheduler: searches and cross-validation."""

from ._halving import ParallelHalvingGridSearchCV, ParallelHalvingRandomSearchCV
from ._search import ParallelGridSearchCV, ParallelRandomizedSearchCV
from ._validation import cross_val_parallel

__all__ = [
    "ParallelGridSearchCV",
    "ParallelHalvingGridSearchCV",
    "ParallelHalvingRandomSearchCV",
    "ParallelRandomizedSearchCV",
    "cross_val_parallel",
]
