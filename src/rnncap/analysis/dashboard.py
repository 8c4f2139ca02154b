"""W&B views that compare the runs of one experiment group, built from code
(``wandb-workspaces``): a **workspace** (all runs of the group, grouped by cell and depth, one
run filter for every panel: the library gives a workspace no per-panel filters) and a saved
**report** whose panel grids each have their own filtered run set, one per depth. Their
sections mirror the paper's figures and rnncap's outputs:

- **Capacity**: stored bits against parameters (log axes) and bits per parameter per cell;
  the workspace also per depth, the report one panel grid per depth (Figure 1);
- **Per-unit memory**: normalised error against units per layer, with the theory line
  ``max(0, (d - N) / d)`` (Figure 2c);
- **Trainability**: best-so-far and running median of the objective against the tuner trial,
  one line per cell (the report: a grid per depth; the workspace: one line per cell and
  depth), and the share of diverged (infeasible) settings per cell (Figure 4, Table 1);
- **Tuning**: parallel coordinates of the tuned settings against the objective;
- **Runs** (workspace): a runs table of the ``metrics.json`` keys.

Every panel reads only keys the runs log: a training run (``core.loggers``) logs the resolved
config plus ``params``, ``hidden``, ``input_dim`` and ``trial`` as config, and each
``metrics.json`` key as summary ``final/<key>`` (``final/diverged`` is 1 for a diverged run);
``rnncap trainability`` logs one run per study (job type ``trainability``; config
``cell.name``, ``depth``, ``task.name``, ``sampler``; history ``trial``, ``best_so_far``,
``running_median``, ``objective``; summary ``diverged_share``: ``trainability.study_runs``).
``panel_keys`` lists each panel's keys; the tests check them against real offline runs. No W&B
calls here: ``tracking`` publishes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
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


def capacity_panels() -> list[Any]:
    return [
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
    ]


def capacity_section() -> ws.Section:
    per_depth = wr.BarPlot(
        title="bits per parameter per depth (max over runs)",
        metrics=[final("bits_per_param")],
        groupby=wr.Config("depth"),
        groupby_aggfunc="max",
    )
    return ws.Section(name="Capacity", is_open=True, panels=[*capacity_panels(), per_depth])


def memory_panels() -> list[wr.ScatterPlot]:
    return [
        wr.ScatterPlot(title=f"{title} against units per layer", x=wr.Config("hidden"), y=final(y))
        for title, y in (("error (mse)", "mse"), ("theory max(0, (d - N) / d)", "theory_mse"))
    ]


def memory_section() -> ws.Section:
    return ws.Section(name="Per-unit memory", is_open=True, panels=memory_panels())


def curve_panels() -> list[wr.LinePlot]:
    """Best so far and running median of the objective against trial (trainability runs; the
    objective, per study, is their config ``objective``: a minimised loss or maximised bits)."""
    trial = wr.Metric("trial")
    return [
        wr.LinePlot(title=title, x=trial, y=[wr.Metric(key)])
        for title, key in (
            ("best objective so far against trial", "best_so_far"),
            ("running median objective against trial", "running_median"),
        )
    ]


def diverged_panel() -> wr.BarPlot:
    return wr.BarPlot(
        title="share of diverged settings per cell (tuner trials)",
        metrics=[final("diverged")],
        groupby=wr.Config(CELL),
        groupby_aggfunc="mean",
    )


def trainability_section(objective: str) -> ws.Section:
    return ws.Section(name="Trainability", is_open=True, panels=[*curve_panels(), diverged_panel()])


def tuning_panel(objective: str) -> wr.ParallelCoordinatesPlot:
    columns = [wr.ParallelCoordinatesPlotColumn(metric=wr.Config(k), log=True) for k in TUNED]
    columns.append(wr.ParallelCoordinatesPlotColumn(metric=final(objective)))
    return wr.ParallelCoordinatesPlot(title=f"tuned settings against {objective}", columns=columns)


def tuning_section(objective: str) -> ws.Section:
    return ws.Section(name="Tuning", is_open=True, panels=[tuning_panel(objective)])


def build_workspace(entity: str, project: str, group: str, objective: str = "bits") -> ws.Workspace:
    """The workspace of experiment group ``group`` (W&B runs of ``experiment_name=group``)."""
    sections = [
        capacity_section(),
        memory_section(),
        trainability_section(objective),
        tuning_section(objective),
        ws.Section(name="Runs", is_open=True, panels=[wr.RunComparer(diff_only="split")]),
    ]
    runs = ws.RunsetSettings(
        filters=expr.And(expr.Metric("Group") == group),
        groupby=[expr.Config(CELL), expr.Config("depth")],
        pinned_columns=[f"config:{k}" for k in ("cell.name", "depth", "params", "hidden")]
        + [f"summary:final/{k}" for k in TABLE],
    )
    return ws.Workspace(
        entity=entity, project=project, name=f"rnncap {group}", sections=sections,
        runset_settings=runs,
    )  # fmt: skip


# ---- the report: a panel grid per depth, each with its own filtered run set -------------------
def grid(name: str, filters: list[expr.FilterExpr], panels: list[Any]) -> wr.PanelGrid:
    """A panel grid over its own run set: the runs matching every filter, grouped by cell."""
    runs = wr.Runset(name=name, filters=expr.And(*filters), groupby=[f"config.{CELL}"])
    return wr.PanelGrid(runsets=[runs], panels=panels)


def build_report(
    entity: str,
    project: str,
    group: str,
    depths: Sequence[int] = (1, 2, 4, 8),
    objective: str = "bits",
    table_sampler: str = "RandomSampler",
) -> wr.Report:
    """The report of experiment group ``group``: Capacity and Trainability with a panel grid
    per depth in ``depths``, Per-unit memory and Tuning with one grid each. Trainability's
    curves read the tuner studies (sampler other than ``table_sampler``), its diverged share
    the random-settings studies (``table_sampler``), both as ``rnncap trainability`` logs them.
    Each run set names no project: the report's own (``publish`` sets it when saving)."""
    in_group = expr.Metric("Group") == group
    studies = [in_group, expr.Metric("JobType") == "trainability"]
    blocks: list[Any] = [wr.H1("Capacity")]
    for d in depths:
        capacity = [in_group, expr.Config(TASK) == "capacity", expr.Config("depth") == d]
        blocks += [wr.H2(f"depth {d}"), grid(f"capacity, depth {d}", capacity, capacity_panels())]
    memory = [in_group, expr.Config(TASK) == "memory"]
    blocks += [wr.H1("Per-unit memory"), grid("memory", memory, memory_panels())]
    blocks.append(wr.H1("Trainability"))
    for d in depths:
        at = expr.Config("depth") == d
        tuned = [*studies, at, expr.Config("sampler") != table_sampler]
        drawn = [*studies, at, expr.Config("sampler") == table_sampler]
        share = wr.BarPlot(
            title=f"mean share of diverged settings per cell ({table_sampler} studies)",
            metrics=[wr.SummaryMetric("diverged_share")],
            groupby=wr.Config(CELL),
            groupby_aggfunc="mean",
        )
        blocks += [wr.H2(f"depth {d}"), grid(f"tuner studies, depth {d}", tuned, curve_panels())]
        blocks.append(grid(f"random settings, depth {d}", drawn, [share]))
    blocks += [wr.H1("Tuning"), grid("tuned runs", [in_group], [tuning_panel(objective)])]
    return wr.Report(
        project=project, entity=entity, title=f"rnncap {group}", blocks=blocks,
        description=f"experiment group {group}: a panel grid per depth",
    )  # fmt: skip


# ---- the keys each panel reads ---------------------------------------------------------------
def panel_keys(view: ws.Workspace | wr.Report) -> dict[str, list[str]]:
    """Each panel's title -> the keys it reads: ``config:<key>``, ``summary:<key>``,
    ``history:<key>`` (a line plot's axes) and ``run:<attribute>`` (a run filter's Group or
    JobType); a run set's filter and grouping keys under ``<title>: run set``."""
    if isinstance(view, wr.Report):
        return report_keys(view)
    out: dict[str, list[str]] = {}
    for section in view.sections:
        for panel in section.panels:
            out[f"{section.name}: {panel_title(panel)}"] = keys_of(panel)
    runs = view.runset_settings
    table = [c for c in runs.pinned_columns if not c.startswith("run:")]
    out["Runs table"] = table + [f"config:{g.name}" for g in runs.groupby]
    out["run set"] = filter_keys(runs.filters)
    return out


def report_keys(report: wr.Report) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    section = where = ""
    for block in report.blocks:
        if isinstance(block, wr.H1):
            section = where = str(block.text)
        elif isinstance(block, wr.H2):
            where = f"{section} / {block.text}"
        if not isinstance(block, wr.PanelGrid):
            continue
        for panel in block.panels:
            out[f"{where}: {panel_title(panel)}"] = keys_of(panel)
        for runs in block.runsets:
            groups = [f"config:{config_name(g.split('.', 1)[1])}" for g in runs.groupby]
            out[f"{where}: run set {runs.name}"] = filter_keys(runs.filters) + groups
    return out


def panel_title(panel: Any) -> str:
    return getattr(panel, "title", None) or type(panel).__name__


def keys_of(panel: Any) -> list[str]:
    metrics: list[Any] = [getattr(panel, a, None) for a in ("x", "y", "z")]
    if isinstance(panel, wr.LinePlot):
        metrics = [panel.x, *panel.y]
    metrics += list(getattr(panel, "metrics", None) or [])
    metrics += [c.metric for c in getattr(panel, "columns", None) or []]
    metrics.append(getattr(panel, "groupby", None))
    history = isinstance(panel, wr.LinePlot)
    return [key_name(m, history) for m in metrics if m is not None]


def key_name(metric: Any, history: bool = False) -> str:
    """A panel's metric as ``section:name``: a line plot's plain metrics are history keys."""
    if isinstance(metric, wr.Config):
        return f"config:{metric.name}"
    if isinstance(metric, wr.SummaryMetric):
        return f"summary:{metric.name}"
    name = metric.name if isinstance(metric, wr.Metric) else str(metric)
    return f"history:{name}" if history else f"run:{name}"


def config_name(name: str) -> str:
    """``cell.value.name`` (the saved form of a nested config key) -> ``cell.name``."""
    parts = name.split(".")
    return ".".join(p for i, p in enumerate(parts) if not (i == 1 and p == "value"))


def filter_keys(filters: Any) -> list[str]:
    """The keys of a run filter (the library's filter string), as ``section:name``."""
    text = filters if isinstance(filters, str) else ""
    return [f"{f.key.section}:{f.key.name}" for f in expr.string_to_filterexpr_list(text)]


# ---- specs: the library's own saved models, as JSON -----------------------------------------
def to_spec(view: ws.Workspace | wr.Report) -> str:
    """A workspace (``internal.View``) or report (``internal.ReportViewspec``) as the library's
    own saved model, in JSON."""
    return view._to_model().model_dump_json(by_alias=True, exclude_none=True, indent=1)


def from_spec(text: str) -> ws.Workspace | wr.Report:
    """The inverse of ``to_spec``: a workspace or report (a spec with blocks) ready to save."""
    data = json.loads(text)
    if isinstance(data, dict) and "blocks" in (data.get("spec") or {}):
        return wr.Report._from_model(wr.internal.ReportViewspec.model_validate(data))
    return ws.Workspace._from_model(ws.internal.View.model_validate(data))
