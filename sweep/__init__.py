"""edgeship.sweep: pick the model for the device, a search under a latency, size and accuracy budget.

The top layer beside the CLI: it composes train, export and bench (siblings that never import each other).
`run_sweep` is what `edgeship sweep` calls. Imports Optuna and TensorFlow only when a sweep runs.
"""

from .budget import Budget, parse_latency, parse_size
from .search import SweepImpossible, SweepOptions, SweepResult, run_sweep
from .space import Architecture, Space, load_space
from .training import TrainingPlan

__all__ = ["Budget", "parse_latency", "parse_size", "SweepImpossible", "SweepOptions", "SweepResult", "run_sweep",
           "Architecture", "Space", "load_space", "TrainingPlan"]
