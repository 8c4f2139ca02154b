"""The Hydra Sweeper class: a thin shell; the work (and the Optuna import) is in ``_impl`` and
the modules it imports (Hydra skips modules whose name starts with ``_`` when it scans plugins)."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class RnncapOptunaSweeper(Sweeper):
    """Asks Optuna for trials, launches them as Hydra jobs and tells Optuna the results."""

    def __init__(
        self,
        sampler: Any,
        direction: str | None,
        storage: str | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        max_failure_rate: float,
        params: DictConfig | None,
        heartbeat_interval: int,
        grace_period: int,
        population: int,
        pruner: str | None,
        pruner_args: DictConfig | None,
        grid: list[str] | None,
        timeout: float | None,
    ) -> None:
        from ._impl import OptunaSweeperImpl  # lazy: plugins are imported at every Hydra start

        self.sweeper = OptunaSweeperImpl(
            sampler,
            direction,
            storage,
            study_name,
            n_trials,
            n_jobs,
            max_failure_rate,
            params,
            heartbeat_interval,
            grace_period,
            population,
            pruner,
            pruner_args,
            grid,
            timeout,
        )

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self.sweeper.sweep(arguments)
