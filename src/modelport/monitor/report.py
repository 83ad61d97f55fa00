"""Reports for people: drift, performance and replay as terminal tables, drift as one HTML file.

The HTML report is self-contained (inline CSS and SVG plots: no script, no CDN, opens offline).
Every text from a log or a manifest is escaped.
"""

from __future__ import annotations

import html
import os
from typing import TYPE_CHECKING, Any

from modelport.monitor._time import iso

if TYPE_CHECKING:
    from modelport.monitor.drift import ColumnDrift, DriftReport
    from modelport.monitor.feedback import PerfReport
    from modelport.monitor.replay import ReplayReport


def _f(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if abs(v) >= 10 ** -digits or v == 0 else f"{v:.2g}"
    return str(v)


def render(report: DriftReport) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from modelport.inspect._text import clean

    head = Text()
    window = f"{iso(report.since) or 'the beginning'} to {iso(report.until) or 'now'}"
    head.append(f"{clean(report.model)}: {report.rows:,} logged rows ({window}), versions "
                f"{', '.join(map(clean, report.versions)) or '-'}\n")
    head.append(f"against {clean(report.reference)}\n")
    state = "DRIFT" if report.drifted else "no drift"
    head.append(f"{state}: {sum(c.drifted for c in report.columns)} of {len(report.columns)} columns drifted "
                f"(share {report.share:.0%})", style="bold red" if report.drifted else "bold green")
    parts: list[Any] = [head]
    for title, cols in (("inputs", report.columns), ("predictions", report.predictions)):
        if not cols:
            continue
        t = Table(title=title, title_justify="left")
        for h in ("column", "kind", "rows", "PSI", "KS", "KS p", "chi2 p", "JS", "missing", "unseen", "drift"):
            t.add_column(h, justify="left" if h in ("column", "kind", "drift") else "right")
        for c in cols:
            t.add_row(clean(c.name), c.kind, f"{c.rows:,}", _f(c.psi), _f(c.ks), _f(c.ks_p_value), _f(c.chi2_p_value),
                      _f(c.js), f"{c.reference_missing_rate:.1%}->{c.missing_rate:.1%}", _pct(c.unseen_rate),
                      Text("yes" if c.drifted else "-", style="red" if c.drifted else ""))
        parts.append(t)
        # why, below the table: a reason in a cell would squeeze every column
        for c in cols:
            if c.drifted:
                parts.append(Text(f"  {clean(c.name)}: {'; '.join(c.reasons)}", style="red"))
    if report.skipped:
        parts.append(Text(f"not in the log: {', '.join(map(clean, report.skipped))}", style="yellow"))
    return Group(*parts)


def text_console() -> Any:
    """The console the CLI prints reports with: the terminal's width, or wide enough for the
    tables when the output goes to a file or a pipe (rich would wrap them at 80 columns)."""
    import sys

    from modelport.inspect._text import console

    return console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def render_perf(report: PerfReport) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from modelport.inspect._text import clean

    metrics = report.metrics
    t = Table(title=f"{clean(report.model)} ({report.task}): realised / estimated per window", title_justify="left")
    for h in ("version", "window start", "predictions", "labelled", *metrics,
              *([f"est. {m}" for m in ("accuracy", "roc_auc")] if report.task == "classification" else [])):
        t.add_column(h, justify="left" if h in ("version", "window start") else "right")
    for w in report.windows:
        est = [] if report.task != "classification" else [_f(w.estimated.get("accuracy")), _f(w.estimated.get("roc_auc"))]
        t.add_row(clean(w.version), iso(w.start) or "", f"{w.predictions:,}", f"{w.labelled:,}",
                  *[_f(w.realised.get(m)) for m in metrics], *est)
    notes = Text(f"{report.labels:,} labels; {report.unmatched:,} matched no logged row; "
                 f"{report.unknown_labels:,} not a class of the model"
                 + ("; probabilities calibrated on the labelled rows" if report.calibrated else ""))
    if report.baseline:
        notes.append(f"\nbaseline (estimate on the bundle's reference rows): accuracy {_f(report.baseline.get('accuracy'))}, "
                     f"ROC AUC {_f(report.baseline.get('roc_auc'))}")
    return Group(t, notes)


def render_replay(report: ReplayReport, limit: float | None = None) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from modelport.inspect._text import clean

    w = report.replayed_with
    t = Table(title=f"replay of {clean(report.model)} with {clean(str(w.get('source')))} (version {w.get('version')}, "
                    f"{str(w.get('digest'))[:19]})", title_justify="left")
    for h in ("logged version", "rows", "scored", "refused", "labels differ", "rows differ", "max |diff|"):
        t.add_column(h, justify="left" if h == "logged version" else "right")
    for v in report.versions:
        t.add_row(clean(v.version), f"{v.rows:,}", f"{v.scored:,}", f"{v.refused:,}",
                  f"{v.labels_differ:,} ({v.label_disagreement:.2%})", f"{v.rows_differ:,}", _f(v.max_abs_diff, 6))
    line = Text(f"label disagreement {report.label_disagreement:.2%}"
                + (" (identical answers)" if report.identical else ""))
    if limit is not None:
        bad = report.label_disagreement > limit
        line.append(f"; limit {limit:.2%}: {'FAIL' if bad else 'ok'}", style="bold red" if bad else "bold green")
    for v in report.versions:
        for why, n in list(v.reasons.items())[:5]:
            line.append(f"\n  refused {n}x: {clean(why)}")
    if report.output:
        line.append(f"\nrows written to {clean(report.output)}")
    return Group(t, line)


# ============================================================================ HTML
_CSS = """body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}h1{font-size:1.4em}
table{border-collapse:collapse;margin:1em 0}td,th{padding:.25em .6em;border-bottom:1px solid #ddd;text-align:right}
td:first-child,th:first-child{text-align:left}.drift{color:#b00;font-weight:600}.ok{color:#070}
.plots{display:flex;flex-wrap:wrap;gap:1em}.plot{border:1px solid #ddd;padding:.5em}.legend span{margin-right:1em}
.ref{fill:#8aa4c8}.cur{fill:#e08a3c}"""


def svg_bars(plot: dict[str, Any], width: int = 320, height: int = 140) -> str:
    """Reference (blue) and current (orange) shares per bin or category, as inline SVG."""
    ref, cur = plot.get("reference") or [], plot.get("current") or []
    n = max(len(ref), len(cur))
    if n == 0:
        return ""
    top = max([*ref, *cur, 1e-12])
    bw = (width - 20) / n
    out = [f'<svg width="{width}" height="{height + 30}" role="img">']
    for i in range(n):
        x = 10 + i * bw
        for j, (vals, cls) in enumerate(((ref, "ref"), (cur, "cur"))):
            v = vals[i] if i < len(vals) else 0.0
            h = (height - 10) * v / top
            out.append(f'<rect class="{cls}" x="{x + j * bw / 2:.1f}" y="{height - h:.1f}" width="{max(bw / 2 - 1, 1):.1f}" '
                       f'height="{h:.1f}"><title>{html.escape(_label(plot, i))}: {v:.3f}</title></rect>')
    first, last = html.escape(_label(plot, 0)[:18]), html.escape(_label(plot, n - 1)[:18])
    out.append(f'<text x="10" y="{height + 15}" font-size="11">{first}</text>')
    out.append(f'<text x="{width - 10}" y="{height + 15}" font-size="11" text-anchor="end">{last}</text></svg>')
    return "".join(out)


def _label(plot: dict[str, Any], i: int) -> str:
    if "categories" in plot:
        cats = plot["categories"]
        return str(cats[i]) if i < len(cats) else ""
    edges = plot.get("edges") or []
    return f"[{edges[i]:.4g}, {edges[i + 1]:.4g})" if i + 1 < len(edges) else ""


def html_report(report: DriftReport) -> str:
    e = html.escape
    rows = []
    plots = []
    for title, cols in (("inputs", report.columns), ("predictions", report.predictions)):
        for c in cols:
            rows.append(_row(c, title))
            plots.append(f'<div class="plot"><b>{e(c.name)}</b> ({title})<br>{svg_bars(c.plot)}</div>')
    state = '<span class="drift">DRIFT</span>' if report.drifted else '<span class="ok">no drift</span>'
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>drift: {e(report.model)}</title>"
        f"<style>{_CSS}</style></head><body><h1>Drift of {e(report.model)}</h1>"
        f"<p>{report.rows:,} logged rows from {e(iso(report.since) or 'the beginning')} to {e(iso(report.until) or 'now')}, "
        f"versions {e(', '.join(report.versions) or '-')}; against {e(report.reference)}.</p>"
        f"<p>{state}: {sum(c.drifted for c in report.columns)} of {len(report.columns)} columns "
        f"(share {report.share:.0%}).</p>"
        "<table><tr><th>column</th><th>of</th><th>kind</th><th>rows</th><th>PSI</th><th>KS</th><th>KS p</th>"
        "<th>chi2 p</th><th>JS</th><th>missing</th><th>unseen</th><th>drift</th></tr>"
        + "".join(rows) + "</table>"
        '<p class="legend"><svg width="10" height="10"><rect class="ref" width="10" height="10"/></svg> reference '
        '<svg width="10" height="10"><rect class="cur" width="10" height="10"/></svg> current</p>'
        f'<div class="plots">{"".join(plots)}</div></body></html>'
    )


def _row(c: ColumnDrift, where: str) -> str:
    e = html.escape
    drift = f'<span class="drift">{e("; ".join(c.reasons))}</span>' if c.drifted else "-"
    return (f"<tr><td>{e(c.name)}</td><td>{where}</td><td>{c.kind}</td><td>{c.rows:,}</td><td>{_f(c.psi)}</td>"
            f"<td>{_f(c.ks)}</td><td>{_f(c.ks_p_value)}</td><td>{_f(c.chi2_p_value)}</td><td>{_f(c.js)}</td>"
            f"<td>{c.reference_missing_rate:.1%} &rarr; {c.missing_rate:.1%}</td><td>{_pct(c.unseen_rate)}</td>"
            f"<td>{drift}</td></tr>")


def write_html(report: DriftReport, path: str | os.PathLike[str]) -> None:
    from modelport._fs import atomic_file

    with atomic_file(path) as fh:
        fh.write(html_report(report).encode("utf-8"))
