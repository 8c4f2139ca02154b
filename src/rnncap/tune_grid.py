"""The study groups of a trainability grid as ``python train.py -m`` runs: each group
(``studies.<name>``) is one run whose sweeper opens one Optuna study per cell, depth and
optimiser (``hydra.sweeper.grid``), asks its trials a round at a time and trains each round of a
study as populations (``hydra.sweeper.population``), one worker process per core.

* ``curves`` (the paper's Figure 4): a tuner study per cell and depth (``sweep=members``,
  ``sampler: tpe``); ``rnncap trainability`` draws its median and best-so-far objective.
* ``random`` (the paper's Table 1): random settings (``sampler: random``) per cell, depth and
  optimiser, pooled per cell and depth into the percent of settings that diverge;
  ``random_relu`` the same for the cells whose nonlinearity the paper tuned, with ReLU.

A group may name its own ``cells`` (an empty list skips it) and ``overrides``. Studies are named
``<group>-cell<c>-depth<d>-optimizer<o>`` (``optimizers: null``: the optimiser is searched) in
one storage (a journal file). Rerunning resumes every study to its ``n_trials``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rnncap.train_grid import RUN, hydra_list, parallel, split_overrides


def study_commands(tune: Mapping[str, Any], jobs: int) -> list[tuple[str, list[str]]]:
    """(study group, ``train.py`` arguments) per group of the grid, in params order."""
    commands = []
    for group, study in tune["studies"].items():
        cells = study.get("cells", tune["cells"])  # a group may take a subset; [] skips it
        if not cells:
            continue
        optimizers = study.get("optimizers")  # None: searched, where the sweep's space has it
        grid = ["cell", "depth"] if optimizers is None else ["cell", "depth", "optimizer"]
        args = [
            "-m",
            f"sweep={study['sweep']}",
            f"hydra/sweeper/sampler={study['sampler']}",
            f"task={tune['task']}",
            f"cell={hydra_list(cells)}",
            f"depth={hydra_list(tune['depths'])}",
            *([] if optimizers is None else [f"optimizer={hydra_list(optimizers)}"]),
            f"model.budget={tune['budget']}",
            f"hydra.sweeper.grid=[{','.join(grid)}]",
            f"hydra.sweeper.study_name={group}",
            f"hydra.sweeper.n_trials={study['n_trials']}",
            f"hydra.sweeper.population={study['population']}",
            f"hydra.sweeper.pruner={study.get('pruner') or 'null'}",
            *split_overrides(study.get("pruner_args")),
            *parallel(jobs),
            f"hydra.sweeper.n_jobs={jobs}",
            f"hydra.sweeper.storage=journal:///{tune['storage']}",
            f"hydra.sweep.dir={tune['runs']}/{group}",
            *RUN,
            "save_weights=false",  # a study keeps its trials' results, not their models
            *split_overrides(tune.get("overrides")),
            *split_overrides(study.get("overrides")),
        ]
        commands.append((group, args))
    return commands
