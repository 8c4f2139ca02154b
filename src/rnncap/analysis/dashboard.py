"""A W&B workspace that compares the runs of one experiment group, built from code
(``wandb-workspaces``). Its sections mirror the paper's figures and rnncap's outputs:

- **Capacity**: stored bits against parameters (log axes, runs grouped by cell and depth) and
  bits per parameter per cell and per depth (Figure 1);
- **Per-unit memory**: normalised error against units per layer, with the theory line
  ``max(0, (d - N) / d)`` (Figure 2c);
- **Trainability**: the objective against the trial number, as best-so-far and running mean,
  and the share of diverged (infeasible) settings per cell (Figure 4, Table 1);
- **Tuning**: parallel coordinates of the tuned settings against the objective;
- **Runs**: a runs table of the ``metrics.json`` keys.

Every panel reads only keys a training run logs (``core.loggers``): the resolved config plus
``params``, ``hidden``, ``input_dim`` and ``trial`` as config, and each ``metrics.json`` key as
summary ``final/<key>`` (``final/diverged`` is 1 for a diverged run). ``PANEL_KEYS`` lists
them; the tests check it against real offline runs. No W&B calls here: ``tracking`` publishes.
"""

from __future__ import annotations

from typing import Any

import wandb_workspaces.reports.v2 as wr
import wandb_workspaces.workspaces as ws
from wandb_workspaces import expr

CELL, TASK = "cell.name", "task.name"  # "cell" and "task" hold the composed group configs
# the numeric keys of conf/sweep/space/common.yaml, as the run config holds them
TUNED = (
    "optimizer.lr",
    "optimizer.weight_decay",
    "scheduler.gamma",
    "cell.recurrent_scale",
    "cell.bias_init",
    "cell.input_scale",
)
# the metrics.json keys of the runs table (README, "The metrics.json contract")
TABLE = ("cell", "task", "depth", "hidden", "params", "seed", "status", "bits", "bits_per_param")
TABLE += ("accuracy", "mse", "theory_mse")


def final(key: str) -> wr.SummaryMetric:
    return wr.SummaryMetric(f"final/{key}")


def capacity_section() -> ws.Section:
    return ws.Section(
        name="Capacity",
        is_open=True,
        panels=[
            wr.ScatterPlot(
                title="stored bits against parameters",
                x=wr.Config("params"),
                y=final("bits"),
                log_x=True,
                log_y=True,
            ),
            wr.BarPlot(
                title="bits per parameter per cell (max over runs)",
                metrics=[final("bits_per_param")],
                groupby=wr.Config(CELL),
                groupby_aggfunc="max",
            ),
            wr.BarPlot(
                title="bits per parameter per depth (max over runs)",
                metrics=[final("bits_per_param")],
                groupby=wr.Config("depth"),
                groupby_aggfunc="max",
            ),
        ],
    )


def memory_section() -> ws.Section:
    panels = [
        wr.ScatterPlot(title=f"{title} against units per layer", x=wr.Config("hidden"), y=final(y))
        for title, y in (("error (mse)", "mse"), ("theory max(0, (d - N) / d)", "theory_mse"))
    ]
    return ws.Section(name="Per-unit memory", is_open=True, panels=panels)


def trainability_section(objective: str, maximize: bool) -> ws.Section:
    best = {"running_ymax": True} if maximize else {"running_ymin": True}
    trial, y = wr.Config("trial"), final(objective)
    return ws.Section(
        name="Trainability",
        is_open=True,
        panels=[
            wr.ScatterPlot(title=f"best {objective} so far against trial", x=trial, y=y, **best),
            wr.ScatterPlot(
                title=f"running mean {objective} against trial", x=trial, y=y, running_ymean=True
            ),
            wr.BarPlot(
                title="share of diverged settings per cell",
                metrics=[final("diverged")],
                groupby=wr.Config(CELL),
                groupby_aggfunc="mean",
            ),
        ],
    )


def tuning_section(objective: str) -> ws.Section:
    columns = [wr.ParallelCoordinatesPlotColumn(metric=wr.Config(k), log=True) for k in TUNED]
    columns.append(wr.ParallelCoordinatesPlotColumn(metric=final(objective)))
    plot = wr.ParallelCoordinatesPlot(title=f"tuned settings against {objective}", columns=columns)
    return ws.Section(name="Tuning", is_open=True, panels=[plot])


def build_workspace(
    entity: str, project: str, group: str, objective: str = "bits", maximize: bool = True
) -> ws.Workspace:
    """The workspace of experiment group ``group`` (W&B runs of ``experiment_name=group``)."""
    sections = [
        capacity_section(),
        memory_section(),
        trainability_section(objective, maximize),
        tuning_section(objective),
        ws.Section(name="Runs", is_open=True, panels=[wr.RunComparer(diff_only="split")]),
    ]
    runs = ws.RunsetSettings(
        filters=[expr.Metric("Group") == group],
        groupby=[expr.Config(CELL), expr.Config("depth")],
        pinned_columns=[f"config:{k}" for k in ("cell.name", "depth", "params", "hidden")]
        + [f"summary:final/{k}" for k in TABLE],
    )
    return ws.Workspace(
        entity=entity, project=project, name=f"rnncap {group}", sections=sections,
        runset_settings=runs,
    )  # fmt: skip


def panel_keys(workspace: ws.Workspace) -> dict[str, list[str]]:
    """Each panel's title -> the config (``config:``) and summary (``summary:``) keys it reads."""
    out: dict[str, list[str]] = {}
    for section in workspace.sections:
        for panel in section.panels:
            metrics: list[Any] = [getattr(panel, a, None) for a in ("x", "y", "z")]
            metrics += list(getattr(panel, "metrics", None) or [])
            metrics += [c.metric for c in getattr(panel, "columns", None) or []]
            metrics.append(getattr(panel, "groupby", None))
            title = f"{section.name}: {getattr(panel, 'title', None) or type(panel).__name__}"
            out[title] = [key_name(m) for m in metrics if m is not None]
    runs = workspace.runset_settings
    table = [c for c in runs.pinned_columns if not c.startswith("run:")]
    out["Runs table"] = table + [f"config:{g.name}" for g in runs.groupby]
    return out


def key_name(metric: Any) -> str:
    kind = "config" if isinstance(metric, wr.Config) else "summary"
    return f"{kind}:{metric.name}"


def to_spec(workspace: ws.Workspace) -> str:
    """The workspace as the library's own saved model (``internal.View``), in JSON."""
    return workspace._to_model().model_dump_json(by_alias=True, exclude_none=True, indent=1)


def from_spec(text: str) -> ws.Workspace:
    """The inverse of ``to_spec``: a workspace ready to ``save()``."""
    return ws.Workspace._from_model(ws.internal.View.model_validate_json(text))
