"""Plotly figures: pure functions from plain data (what ``annotator.dashboards`` returns)
to ``go.Figure``. Pages embed them with :func:`embed` (no plotly.js in the HTML: the
page loads ``static/vendor/plotly/plotly.min.js`` once).

One colour scale everywhere (``COLOURS``: correct steps and runs' first lines in blue,
errors in red), sized for a 1280x800 screen: axis titles on every axis, the legend
above the plot area so it never covers data, and automatic tick spacing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

# Colour-blind-safe (Okabe-Ito): correct / first error / after it, then runs in order.
COLOURS = ("#0072B2", "#D55E00", "#999999", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")
CLASS_COLOURS = {"correct": COLOURS[0], "first error": COLOURS[1], "after first error": COLOURS[2]}
HEIGHT = 320
# Every figure gets plotly's default template as it is made, unvalidated; one given to
# ``update_layout`` is validated again on each figure (over half a run's chart time).
# Stepwise is the only plotly user in its processes, so the default is ours to set.
pio.templates.default = "plotly_white"


def _layout(fig: go.Figure, title: str, x_title: str, y_title: str) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0, "font": {"size": 14}},
        height=HEIGHT,
        margin={"l": 60, "r": 20, "t": 70, "b": 50},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        xaxis={"title": {"text": x_title}, "automargin": True},
        yaxis={"title": {"text": y_title}, "automargin": True},
    )
    return fig


def _finite(values: Sequence[float]) -> list[float | None]:
    """NaN is not JSON: plotly gets None (a gap)."""
    return [None if v is None or math.isnan(v) else v for v in values]


def score_histogram(histogram: Mapping[str, Sequence[int]], title: str = "") -> go.Figure:
    """Step scores in equal bins over [0, 1]: one small panel per human class, stacked on
    one shared score axis, each with its own count axis and an opaque colour. Overlaid
    translucent bars mixed into an unreadable brown, and on one count axis the first-error
    class (far fewer steps than the correct ones) was a sliver."""
    names = list(histogram)
    fig = make_subplots(
        rows=max(len(names), 1),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.12,
        subplot_titles=names,
    )
    for row, name in enumerate(names, start=1):
        counts = histogram[name]
        n = len(counts)
        fig.add_bar(
            x=[(i + 0.5) / n for i in range(n)],
            y=list(counts),
            name=name,
            marker_color=CLASS_COLOURS.get(name, COLOURS[3]),
            width=1 / n,
            row=row,
            col=1,
        )
        fig.update_yaxes(title_text="steps", rangemode="tozero", row=row, col=1)
    _layout(fig, title or "Step scores by human class", "", "steps")
    # Each panel is titled by its class, so the legend would only repeat the titles.
    fig.update_layout(height=90 + 110 * max(len(names), 1), showlegend=False)
    fig.update_xaxes(range=[0, 1])
    fig.update_xaxes(title_text="step score", row=max(len(names), 1), col=1)
    return fig


def threshold_sweep(
    taus: Sequence[float],
    acc_err: Sequence[float],
    acc_cor: Sequence[float],
    f1: Sequence[float],
    best_tau: float,
    title: str = "",
) -> go.Figure:
    """Accuracy on erroneous and on correct traces and F1 against the threshold, with the
    best threshold marked."""
    fig = go.Figure()
    for name, values, colour in (
        ("accuracy on erroneous", acc_err, COLOURS[1]),
        ("accuracy on correct", acc_cor, COLOURS[0]),
        ("F1", f1, COLOURS[3]),
    ):
        fig.add_scatter(x=list(taus), y=_finite(values), name=name, mode="lines", line_color=colour)
    if not math.isnan(best_tau):
        fig.add_vline(
            x=best_tau,
            line_dash="dash",
            line_color="#333",
            annotation_text=f"best τ {best_tau:.2f}",
            annotation_position="top left",
        )
    fig.update_yaxes(range=[0, 100])
    return _layout(fig, title or "Threshold sweep", "threshold τ", "percent")


def roc_curve(
    fpr: Sequence[float],
    tpr: Sequence[float],
    auroc: float,
    title: str = "",
    auroc_name: str = "AUROC",
) -> go.Figure:
    """Step-level ROC ("correct" = positive), the diagonal for reference."""
    fig = go.Figure()
    fig.add_scatter(
        x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dot", "color": COLOURS[2]}
    )
    label = "ROC" if math.isnan(auroc) else f"ROC ({auroc_name} {auroc:.3f})"
    fig.add_scatter(x=list(fpr), y=list(tpr), mode="lines", name=label, line_color=COLOURS[0])
    fig.update_xaxes(range=[0, 1])
    fig.update_yaxes(range=[0, 1])
    return _layout(fig, title or "Step ROC", "false positive rate", "true positive rate")


def calibration_curve(points: Sequence[tuple[float, float, int]], title: str = "") -> go.Figure:
    """Share of judged steps that are correct per score bin, against the diagonal."""
    fig = go.Figure()
    fig.add_scatter(
        x=[0, 1],
        y=[0, 1],
        mode="lines",
        name="calibrated",
        line={"dash": "dot", "color": COLOURS[2]},
    )
    fig.add_scatter(
        x=[p[0] for p in points],
        y=[p[1] for p in points],
        mode="lines+markers",
        name="observed",
        line_color=COLOURS[0],
        customdata=[p[2] for p in points],
        hovertemplate="score %{x:.2f}: %{y:.2f} correct of %{customdata} steps<extra></extra>",
    )
    fig.update_xaxes(range=[0, 1])
    fig.update_yaxes(range=[0, 1])
    return _layout(fig, title or "Calibration", "step score", "share correct")


def first_error_confusion(counts: Mapping[str, int], title: str = "") -> go.Figure:
    """Where the predicted first error falls against the human one."""
    colours = {
        "earlier": COLOURS[5],
        "exact": COLOURS[3],
        "later": COLOURS[4],
        "missed": COLOURS[1],
        "false alarm": COLOURS[1],
        "all correct": COLOURS[0],
    }
    fig = go.Figure(
        go.Bar(
            x=list(counts),
            y=list(counts.values()),
            marker_color=[colours.get(k, COLOURS[2]) for k in counts],
            name="traces",
        )
    )
    return _layout(fig, title or "Predicted vs human first error", "outcome", "traces")


def labels_over_time(days: Sequence[tuple[str, int]], title: str = "") -> go.Figure:
    """Labels submitted per day."""
    fig = go.Figure(
        go.Bar(
            x=[d for d, _ in days], y=[n for _, n in days], name="labels", marker_color=COLOURS[0]
        )
    )
    # Whole days on the axis, never the hours plotly picks for a short range.
    fig.update_xaxes(type="date", tickformat="%Y-%m-%d", dtick=86_400_000)
    return _layout(fig, title or "Labels per day", "day", "labels")


def score_range(scores: Iterable[float]) -> list[float]:
    """[0, 1], widened to the finite scores that fall outside it.

    >>> score_range([0.2, 0.9]), score_range([-0.35, 1.4, float("nan")])
    ([0, 1], [-0.35, 1.4])
    """
    finite = [s for s in scores if math.isfinite(s)]
    return [min([0, *finite]), max([1, *finite])]


def trace_scores(
    runs: Mapping[str, Sequence[float]], human_first_error: int | None, title: str = ""
) -> go.Figure:
    """One line of step scores per run, the human first error as a vertical line."""
    fig = go.Figure()
    for i, (name, scores) in enumerate(runs.items()):
        fig.add_scatter(
            x=list(range(len(scores))),
            y=_finite(scores),
            mode="lines+markers",
            name=name,
            line_color=COLOURS[(3 + i) % len(COLOURS)] if i else COLOURS[0],
            cliponaxis=False,  # markers at 0 or 1 sit on the axis edge, drawn whole
        )
    if human_first_error is not None and human_first_error >= 0:
        fig.add_vline(
            x=human_first_error,
            line_dash="dash",
            line_color=COLOURS[1],
            annotation_text="human first error",
            annotation_position="top right",
        )
    fig.update_xaxes(dtick=1)
    # Most scores are probabilities: a fixed [0, 1] axis, or plotly autoscales all-1 scores
    # to 0–2; widened to take in a score outside it (LaSeR's r_s may be below 0 or above 1).
    fig.update_yaxes(range=score_range([s for scores in runs.values() for s in scores]))
    _layout(fig, title or "Step scores", "step (0-based)", "score")
    fig.update_layout(height=260)
    return fig


def training_curve(series: Mapping[str, Sequence[tuple[int, float | None]]]) -> go.Figure:
    """A training run's loss (left axis) and held-out F1 (right axis, percent, fixed to
    [0, 100]: autoscaled, an F1 of 0 throughout drew an axis from -0.89 to 0.91)."""
    fig = go.Figure()
    for name, axis, label, mode in (
        ("loss", "y", "training loss", "lines"),
        ("eval_f1", "y2", "held-out F1", "lines+markers"),
    ):
        points = series.get(name, [])
        if points:
            fig.add_scatter(
                x=[step for step, _ in points],
                y=_finite([math.nan if value is None else value for _, value in points]),
                name=label,
                mode=mode,
                yaxis=axis,
                cliponaxis=False,  # an F1 of 0 or 100 sits on the axis edge, drawn whole
            )
    fig.update_layout(
        xaxis={"title": {"text": "step"}},
        yaxis={"title": {"text": "loss"}, "rangemode": "tozero"},
        yaxis2={
            "title": {"text": "held-out F1 (%)"},
            "overlaying": "y",
            "side": "right",
            "range": [0, 100],
        },
        margin={"l": 50, "r": 50, "t": 20, "b": 40},
        height=HEIGHT,
        legend={"orientation": "h"},
    )
    return fig


def embed(fig: go.Figure, div_id: str) -> str:
    """The figure as a ``<div>`` plus the script that draws it (plotly.js not included)."""
    return fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        config={"displaylogo": False, "responsive": True},
    )


# -- the Rewards page: logged rollouts, one line per reward transform ---------------------------

RolloutSeries = Mapping[str, Sequence[tuple[float, float, int]]]


def _per_transform(
    series: RolloutSeries, title: str, x_title: str, y_title: str, value_format: str
) -> go.Figure:
    """One line per transform of ``(x, value, rollouts)`` points, the count in the hover."""
    fig = go.Figure()
    for i, (label, points) in enumerate(series.items()):
        fig.add_scatter(
            x=[p[0] for p in points],
            y=_finite([p[1] for p in points]),
            customdata=[p[2] for p in points],
            mode="lines+markers",
            name=label,
            line_color=COLOURS[(3 + i) % len(COLOURS)] if i else COLOURS[0],
            hovertemplate=f"%{{x:.3g}}: %{{y:{value_format}}} over %{{customdata}} rollouts"
            "<extra>%{fullData.name}</extra>",
        )
    return _layout(fig, title, x_title, y_title)


def return_by_steps(series: RolloutSeries) -> go.Figure:
    """Mean PRM return against the number of steps: a line that climbs with length under
    a transform is the step farming the refinements exist to stop."""
    fig = _per_transform(series, "PRM return by number of steps", "steps", "mean PRM return", ".3f")
    fig.update_xaxes(rangemode="tozero")
    return fig


def return_by_length(series: RolloutSeries) -> go.Figure:
    """Mean PRM return against the response length (bin centres, in characters)."""
    return _per_transform(
        series,
        "PRM return by response length",
        "response length (characters)",
        "mean PRM return",
        ".3f",
    )


def success_by_return(series: RolloutSeries) -> go.Figure:
    """The share of right answers per PRM return bin: a PRM worth its reward rises from
    left to right; a flat line means the return says nothing about the answer."""
    fig = _per_transform(
        series, "Right answers by PRM return", "PRM return (bin centre)", "share right", ".2f"
    )
    fig.update_yaxes(range=[0, 1])
    return fig


def compute_curves(curves: Sequence, crossover: float | None = None) -> go.Figure:
    """Success rate (percent) against compute on a log2 axis: one line per method (its
    ``label``, ``compute``, ``success`` and 95 % interval ``low``/``high``), and a dashed
    line at the compute where a verifier first matches self-consistency's best."""
    fig = go.Figure()
    for i, curve in enumerate(curves):
        fig.add_scatter(
            x=list(curve.compute),
            y=_finite(curve.success),
            name=curve.label,
            mode="lines+markers",
            line={"color": COLOURS[i % len(COLOURS)], "dash": "solid" if i == 0 else "dot"},
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [h - y for h, y in zip(curve.high, curve.success, strict=True)],
                "arrayminus": [y - lo for lo, y in zip(curve.low, curve.success, strict=True)],
                "thickness": 1,
            },
            customdata=list(curve.solutions),
            hovertemplate="%{fullData.name}<br>S = %{customdata}, C = %{x:.3g}<br>"
            "%{y:.1f}%<extra></extra>",
        )
    if crossover is not None:
        fig.add_vline(x=crossover, line_dash="dash", line_color=COLOURS[2])
    _layout(
        fig,
        "Success rate against compute",
        "compute C = S (1 + λV), in solutions (log2)",
        "problems solved (%)",
    )
    fig.update_xaxes(type="log", dtick=math.log10(2))
    fig.update_layout(height=420)
    return fig
