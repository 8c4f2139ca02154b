"""W&B logging of the analysis stages, grouped by experiment so the UI compares cells side by side.

Offline unless ``mode="online"`` and an API key is set; never prompts; every run is finished.
The fit logs one W&B run per cell (job type ``fit``: its tables, its fit as the run summary);
the plot logs one run (job type ``plot``) with the figures and the full tables; the
trainability report logs one run per study (job type ``trainability``: its tuner curves as
history against ``trial``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rnncap.analysis.tables import CAPACITY_COLUMNS, FIT_COLUMNS, MEMORY_COLUMNS, Row

log = logging.getLogger(__name__)
PROJECT = "rnncap"
WANDB_DIR = Path("results/wandb")


def start_run(experiment: str, job_type: str, name: str, mode: str, config: dict | None = None):
    """A W&B run in group ``experiment``; online only when asked for and a key is set."""
    import wandb

    from rnncap.core.loggers import wandb_has_key  # imports Lightning: only when logging

    if mode == "online" and not wandb_has_key():
        log.warning("W&B online was asked for but no API key is set: logging offline instead")
        mode = "offline"
    WANDB_DIR.mkdir(parents=True, exist_ok=True)
    return wandb.init(
        project=PROJECT,
        group=experiment,
        job_type=job_type,
        name=name,
        config=config or {},
        dir=str(WANDB_DIR),
        mode=mode,
        settings=wandb.Settings(silent=True, console="off"),
    )


def table(rows: Sequence[Row], columns: Sequence[str]):
    """A W&B table; a column mixing text and numbers (a fit's depth: 1, 2, "all") is text."""
    import wandb

    data = [[r.get(c) for c in columns] for r in rows]
    for j in range(len(columns)):
        if len({type(row[j]) for row in data if row[j] is not None} - {int, float}) > 0:
            for row in data:
                row[j] = None if row[j] is None else str(row[j])
    return wandb.Table(columns=list(columns), data=data)


def _of_cell(rows: Sequence[Row], cell: str) -> list[Row]:
    return [r for r in rows if r["cell"] == cell]


def log_analysis(result: dict[str, Any], experiment: str, mode: str) -> None:
    """One ``fit`` run per cell: its capacity, fit and memory tables; its fit as summary."""
    if mode == "disabled":
        return
    import wandb

    cells = dict.fromkeys(r["cell"] for r in [*result["table"], *result["memory"]])  # in order
    for cell in cells:
        run = start_run(experiment, "fit", cell, mode, {"cell": cell, "experiment": experiment})
        try:
            run.log(
                {
                    "capacity": table(_of_cell(result["table"], cell), CAPACITY_COLUMNS),
                    "fits": table(_of_cell(result["fits"], cell), FIT_COLUMNS),
                    "memory": table(_of_cell(result["memory"], cell), MEMORY_COLUMNS),
                }
            )
            headline = result["summary"]["capacity"].get(cell, {})
            run.summary.update(
                {
                    f"{depth}/{key}": value  # depth1/mean_bits_per_param, depth1/slope, ...
                    for depth, entry in headline.items()
                    for key, value in entry.items()
                    if key != "points"
                }
            )
            run.summary.update(result["summary"]["memory"].get(cell, {}))
        finally:
            wandb.finish()


def log_figures(
    figures: Sequence[Path], tables: dict[str, Sequence[Row]], experiment: str, mode: str
) -> None:
    """One ``plot`` run with every figure as an image and the full tables."""
    if mode == "disabled":
        return
    import wandb

    columns = {"capacity": CAPACITY_COLUMNS, "fits": FIT_COLUMNS, "memory": MEMORY_COLUMNS}
    run = start_run(experiment, "plot", "figures", mode, {"experiment": experiment})
    try:
        images = {f"figures/{p.stem}": wandb.Image(str(p)) for p in figures}
        run.log(images | {k: table(rows, columns[k]) for k, rows in tables.items()})
    finally:
        wandb.finish()


def log_studies(runs: Sequence[dict], experiment: str, mode: str) -> None:
    """One ``trainability`` run per study of ``trainability.study_runs``: its config, a history
    row per trial (``trial`` is the row's own key, not W&B's step) and its summary."""
    if mode == "disabled":
        return
    import wandb

    for spec in runs:
        config = spec["config"] | {"experiment": experiment}
        run = start_run(experiment, "trainability", spec["name"], mode, config)
        try:
            for row in spec["history"]:
                run.log(row)
            run.summary.update({k: v for k, v in spec["summary"].items() if v is not None})
        finally:
            wandb.finish()


def can_publish(mode: str) -> bool:
    """Whether views are saved to W&B: ``mode`` online and an API key set (never a prompt)."""
    from rnncap.core.loggers import wandb_has_key

    return mode == "online" and wandb_has_key()


def save_view(view) -> str:
    """Save ``view`` (a workspace or report of ``dashboard``) to W&B; return its URL line. A
    report's run sets name no project in the spec: they get the report's before saving."""
    import wandb_workspaces.reports.v2 as wr

    if not view.entity:  # the key's default entity
        import wandb

        view.entity = wandb.Api().default_entity
    if isinstance(view, wr.Report):
        for block in view.blocks:
            for runs in getattr(block, "runsets", []):
                runs.entity, runs.project = view.entity, view.project
        view.save()
        return f"saved report {view.title!r}: {view.url}"
    view.save()
    return f"saved workspace {view.name!r}: {view.url}"


def how_to_publish(spec_files: Sequence[Path], mode: str) -> str:
    """What to run to save the spec files later, once an API key is set."""
    files = " ".join(map(str, spec_files))
    return (
        f"wrote {files} (no W&B upload: --wandb {mode}"
        + ("" if mode != "online" else ", no API key")
        + "); publish them later with WANDB_API_KEY set: "
        + f"rnncap dashboard --spec {files} --wandb online"
    )
