"""``GET /dashboard``: one self-contained page (inline CSS and server-rendered SVG, no script, no
request leaving the origin) drawn from the log's aggregates, so it stays fast whatever the log
holds. Every text on it is escaped: labels and reasons come from users and models."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

from litestar import MediaType, Response, get
from litestar.params import Parameter

from core.monitoring.dashboard import WINDOWS, DashboardData, dashboard_data
from core.predlog import PredictionLog
from core.records import LOW_CONFIDENCE, PromotionRecord
from core.release.manifest import Manifest
from core.settings import Settings
from serving.errors import bad_request
from serving.lane import lane_log
from serving.state import ServiceState

WIDTH, HEIGHT, PAD = 640, 170, 36


COLORS = ("#2563eb", "#f59e0b", "#10b981", "#8b5cf6")
STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
background:#f8fafc;color:#0f172a}header{background:#0f172a;color:#f8fafc;padding:12px 24px}
header h1{font-size:18px;margin:0 0 4px}header a{color:#93c5fd;margin-right:12px}
header a.on{color:#fff;font-weight:600;text-decoration:none}main{display:grid;
grid-template-columns:repeat(auto-fill,minmax(660px,1fr));gap:16px;padding:16px 24px}
section{background:#fff;border:1px solid #e2e8f0;border-radius:8px;padding:12px 16px}
h2{font-size:15px;margin:0 0 8px}table{border-collapse:collapse;width:100%;font-size:13px}
td,th{border-bottom:1px solid #e2e8f0;padding:4px 6px;text-align:left;vertical-align:top}
.fired{color:#dc2626;font-weight:600}.muted{color:#64748b}svg text{font-size:11px;fill:#475569}
.legend span{display:inline-block;margin-right:12px}.legend i{display:inline-block;width:10px;
height:10px;margin-right:4px;border-radius:2px}
"""


@get("/dashboard", media_type=MediaType.HTML, summary="Monitoring dashboard (HTML)")
async def dashboard(
    state: ServiceState,
    window: str = Parameter(default="24h", description="24h, 7d or 31d."),
) -> Response[str]:
    if window not in WINDOWS:
        raise bad_request(f"window must be one of {', '.join(WINDOWS)}")
    served = state.holder.current
    manifest = served.manifest if served is not None else None
    longest = state.settings.monitoring_max_window
    key = ("dashboard", window, manifest.bundle_id if manifest is not None else None)
    lane = state.monitoring_lane
    log = None if lane.processes else state.log
    settings = state.settings
    # Queries and drawing in monitoring's lane: predictions keep flowing.
    drawn = await lane.run(key, page, log, settings, window, manifest, longest, isolate=True)
    return Response(drawn, media_type=MediaType.HTML)


def page(
    log: PredictionLog | None,
    settings: Settings,
    window: str,
    manifest: Manifest | None,
    longest: str,
) -> str:
    """The drawn page (in the lane's process when ``log`` is None)."""
    return render(dashboard_data(log or lane_log(settings), window, manifest, longest, settings))


def render(data: DashboardData) -> str:
    sections = [
        _served(data),
        _traffic(data),
        _confidence(data),
        _class_mix(data),
        _feedback(data),
        _labels(data),
        *_drift_charts(data),
        _latest_report(data),
        _shadow(data),
        _top_terms(data),
        _promotions(data),
    ]
    links = " ".join(
        f'<a href="?window={w}" class="{"on" if w == data.window else ""}">{w}</a>' for w in WINDOWS
    )
    return (
        '<!doctype html><html lang="es"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>Tickets: monitoring ({escape(data.window)})</title><style>{STYLE}</style>"
        f"</head><body><header><h1>Ticket classifier: monitoring</h1>Window: {links}"
        f'<a href="/label">Etiquetar tickets (labelling page)</a>'
        f'<span class="muted">since {escape(data.since[:16])} UTC, '
        f"generated {escape(data.generated_at[:16])}</span></header>"
        f"<main>{''.join(sections)}</main></body></html>"
    )


def _section(title: str, body: str, chart: str = "") -> str:
    attribute = f' data-chart="{chart}"' if chart else ""
    return f"<section{attribute}><h2>{escape(title)}</h2>{body}</section>"


def _served(data: DashboardData) -> str:
    if data.served is None:
        return _section("Served model", "<p>No model loaded yet.</p>")
    rows = "".join(
        f"<tr><th>{escape(key.replace('_', ' '))}</th><td>{escape(str(value))}</td></tr>"
        for key, value in data.served.items()
    )
    return _section("Served model", f"<table>{rows}</table>")


def _time_x(stamp: str, since: str, until: str) -> float:
    start, end = _parse(since), _parse(until)
    span = max((end - start).total_seconds(), 1.0)
    fraction = (_parse(stamp) - start).total_seconds() / span
    return PAD + max(0.0, min(1.0, fraction)) * (WIDTH - 2 * PAD)


def _parse(stamp: str) -> datetime:
    """An ISO time, an hour bucket (``2026-11-30T15``) or a day (``2026-11-30``), in UTC."""
    if len(stamp) == 10:
        stamp += "T00:00:00"
    elif len(stamp) == 13:
        stamp += ":00:00"
    parsed = datetime.fromisoformat(stamp)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _y(value: float, top: float) -> float:
    return HEIGHT - PAD / 2 - (value / top if top else 0.0) * (HEIGHT - PAD)


def line_chart(
    data: DashboardData,
    series: Sequence[tuple[str, Sequence[tuple[str, float | None]]]],
    top: float | None = None,
    threshold: float | None = None,
    fired: set[str] | None = None,
) -> str:
    """An SVG time chart: one polyline per series over the window, an optional dashed
    threshold, red circles at fired points; every point carries ``data-point``."""
    values = [v for _, points in series for _, v in points if v is not None]
    top = top or max([*values, threshold or 0.0, 1e-9]) * 1.1
    parts = [
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img">',
        f'<line x1="{PAD}" y1="{_y(0, top):.1f}" x2="{WIDTH - PAD}" y2="{_y(0, top):.1f}" '
        'stroke="#cbd5e1"/>',
        f'<text x="2" y="{_y(top, top) + 10:.1f}">{_tick(top)}</text>',
        f'<text x="2" y="{_y(0, top):.1f}">0</text>',
        f'<text x="{PAD}" y="{HEIGHT - 2}">{escape(data.since[:10])}</text>',
        f'<text x="{WIDTH - PAD - 60}" y="{HEIGHT - 2}">{escape(data.generated_at[:10])}</text>',
    ]
    if threshold is not None:
        y = _y(threshold, top)
        parts.append(
            f'<line x1="{PAD}" y1="{y:.1f}" x2="{WIDTH - PAD}" y2="{y:.1f}" stroke="#dc2626" '
            f'stroke-dasharray="4 3"/><text x="{WIDTH - PAD + 2}" y="{y:.1f}">limit</text>'
        )
    legend = []
    for index, (name, points) in enumerate(series):
        color = COLORS[index % len(COLORS)]
        xy = [
            (_time_x(t, data.since, data.generated_at), _y(v, top), t)
            for t, v in points
            if v is not None
        ]
        if len(xy) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in xy)
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.5"/>'
            )
        for x, y, stamp in xy:
            hot = fired is not None and stamp in fired
            parts.append(
                f'<circle data-point="{escape(name)}" cx="{x:.1f}" cy="{y:.1f}" '
                f'r="{4 if hot else 2}" fill="{"#dc2626" if hot else color}">'
                f"<title>{escape(stamp)}: {_tick(y_value(y, top))}</title></circle>"
            )
        legend.append(f'<span><i style="background:{color}"></i>{escape(name)}</span>')
    parts.append("</svg>")
    return f'<div class="legend">{"".join(legend)}</div>{"".join(parts)}'


def y_value(y: float, top: float) -> float:
    return (HEIGHT - PAD / 2 - y) / (HEIGHT - PAD) * top


def _tick(value: float) -> str:
    return f"{value:.3g}"


def _empty(text: str) -> str:
    return f'<p class="muted">{escape(text)}</p>'


def _traffic(data: DashboardData) -> str:
    if not data.hours:
        return _section("Predictions per hour", _empty("No predictions in this window."))
    points = [(h.hour, float(h.predictions)) for h in data.hours]
    return _section("Predictions per hour", line_chart(data, [("predictions", points)]), "traffic")


def _confidence(data: DashboardData) -> str:
    if not data.hours:
        return _section("Confidence", _empty("No predictions in this window."))
    mean = [(h.hour, h.mean_confidence) for h in data.hours]
    low = [(h.hour, h.low_share) for h in data.hours]
    chart = line_chart(
        data, [("mean confidence", mean), (f"share under {LOW_CONFIDENCE}", low)], top=1.0
    )
    return _section("Confidence and low-confidence share", chart, "confidence")


def _class_mix(data: DashboardData) -> str:
    if not data.class_mix:
        return _section("Predicted classes", _empty("No predictions in this window."))
    bar_height, gap, label_width = 10, 6, 190
    height = len(data.class_mix) * (2 * bar_height + gap) + 10
    scale = (WIDTH - label_width - 60) / max(
        [share for _, share, _ in data.class_mix]
        + [ref or 0.0 for _, _, ref in data.class_mix]
        + [1e-9]
    )
    parts = [f'<svg viewBox="0 0 {WIDTH} {height}" width="100%" role="img">']
    for index, (label, share, reference) in enumerate(data.class_mix):
        y = 5 + index * (2 * bar_height + gap)
        parts.append(f'<text x="0" y="{y + bar_height + 3}">{escape(label[:30])}</text>')
        parts.append(
            f'<rect data-point="window" x="{label_width}" y="{y}" width="{share * scale:.1f}" '
            f'height="{bar_height}" fill="{COLORS[0]}"><title>{share:.1%}</title></rect>'
        )
        if reference is not None:
            parts.append(
                f'<rect data-point="reference" x="{label_width}" y="{y + bar_height}" '
                f'width="{reference * scale:.1f}" height="{bar_height}" fill="{COLORS[1]}">'
                f"<title>reference {reference:.1%}</title></rect>"
            )
        parts.append(
            f'<text x="{label_width + share * scale + 4:.1f}" y="{y + bar_height - 1}">'
            f"{share:.1%}</text>"
        )
    parts.append("</svg>")
    legend = (
        f'<div class="legend"><span><i style="background:{COLORS[0]}"></i>this window</span>'
        f'<span><i style="background:{COLORS[1]}"></i>reference (test set)</span></div>'
    )
    return _section("Predicted-class mix against the reference", legend + "".join(parts), "mix")


def _feedback(data: DashboardData) -> str:
    """Measured scores on feedback per day beside the macro-F1 estimated without labels at
    each monitor run (labels come late: the estimate is there first)."""
    title = "Macro-F1 measured on feedback and estimated without labels"
    if not data.feedback and not data.estimated:
        return _section(title, _empty("No feedback labels and no estimate in this window."))
    accuracy = [(d.day, d.accuracy) for d in data.feedback]
    macro = [(d.day, d.macro_f1) for d in data.feedback]
    series = [("accuracy on feedback", accuracy), ("macro-F1 on feedback", macro)]
    series.append(("macro-F1 estimated (no labels)", list(data.estimated)))
    return _section(title, line_chart(data, series, top=1.0), "feedback")


def _labels(data: DashboardData) -> str:
    """What the desk sends back: labels received per day (by the day they arrived), and where
    agents label (the page's link)."""
    title = "Labels received per day"
    link = '<p><a href="/label">Label tickets</a> (the desk\'s labelling page; label key)</p>'
    if not data.labels_per_day:
        return _section(title, link + _empty("No labels received in this window."))
    total = sum(n for _, n in data.labels_per_day)
    points = [(day, float(n)) for day, n in data.labels_per_day]
    summary = f"<p>{total} labels in this window.</p>"
    return _section(title, link + summary + line_chart(data, [("labels", points)]), "labels")


def _drift_charts(data: DashboardData) -> list[str]:
    if not data.drift_tests:
        return [_section("Drift tests", _empty("No monitor run in this window."))]
    charts = []
    for name, points in sorted(data.drift_tests.items()):
        threshold = points[-1].threshold
        fired = {p.checked_at for p in points if p.fired}
        series = [(name, [(p.checked_at, p.statistic) for p in points])]
        chart = line_chart(data, series, threshold=threshold, fired=fired)
        charts.append(_section(f"Drift test: {name}", chart, f"drift-{name}"))
    return charts


def _latest_report(data: DashboardData) -> str:
    report = data.latest_report
    if report is None:
        return _section("Latest drift report", _empty("No monitor run in this window."))
    rows = "".join(
        f'<tr class="{"fired" if t.fired else ""}"><td>{escape(t.name)}</td>'
        f"<td>{_fmt(t.statistic)}</td><td>{_fmt(t.threshold)}</td>"
        f"<td>{_fmt(t.p_value)}</td><td>{escape(t.verdict)}</td></tr>"
        for t in report.report.tests
    )
    reasons = "".join(f"<li>{escape(r)}</li>" for r in report.report.reasons)
    head = (
        f"<p>Model {escape(report.model_version)}, checked {escape(report.checked_at[:16])}; "
        f"retrain: {escape(str(report.retrain_action or 'not needed'))}</p>"
    )
    table = (
        "<table><tr><th>test</th><th>statistic</th><th>threshold</th><th>p-value</th>"
        f"<th>verdict</th></tr>{rows}</table>"
    )
    return _section(
        "Latest drift report", head + table + (f"<ul>{reasons}</ul>" if reasons else "")
    )


def _promotions(data: DashboardData) -> str:
    if not data.promotions:
        return _section("Champions and promotion decisions", _empty("No promotion yet."))
    rows = "".join(
        f'<tr class="{"" if p.promoted else "muted"}"><td>{escape(p.decided_at[:16])}</td>'
        f"<td>{escape(str(p.challenger_version or p.challenger))}</td>"
        f"<td>{escape(str(p.champion_version or p.champion or '-'))}</td>"
        f"<td>{_fmt(p.gain)}</td><td>{_interval(p.gain_ci)}</td>"
        f"<td>{_verdict(p)}</td>"
        f"<td>{escape(p.reason[:160])}</td></tr>"
        for p in reversed(data.promotions[-20:])
    )
    return _section(
        "Champions and promotion decisions",
        "<table><tr><th>when</th><th>challenger</th><th>champion</th><th>gain</th>"
        f"<th>95% interval</th><th>decision</th><th>reason</th></tr>{rows}</table>",
    )


def _verdict(record: PromotionRecord) -> str:
    if record.kind == "rollback":
        return "rolled back to the challenger"
    if record.kind == "canary-rollback":
        return "canary rolled back"
    verdict = "promoted" if record.promoted else "kept the champion"
    return f"{verdict} (live evidence)" if record.kind == "shadow" else verdict


def _shadow(data: DashboardData) -> str:
    title = "Shadow challenger against the champion"
    shadow = data.shadow
    if shadow is None:
        return _section(title, _empty("No ticket scored by a shadow in this window."))
    figures = [
        ("shadow version", ", ".join(shadow.shadow_versions)),
        ("champion version", ", ".join(shadow.champion_versions)),
        ("tickets scored by both", shadow.scored),
        ("agreement", _fmt(shadow.agreement)),
        ("labelled", shadow.labelled),
        (
            "macro-F1 champion / shadow",
            f"{_fmt(shadow.champion_macro_f1)} / {_fmt(shadow.shadow_macro_f1)}",
        ),
        ("gain (95% interval)", f"{_fmt(shadow.gain)} ({_interval(shadow.gain_ci)})"),
        ("verdict", ("would be promoted: " if shadow.promote else "") + shadow.reason),
    ]
    table = "".join(
        f"<tr><th>{escape(name)}</th><td>{escape(str(value))}</td></tr>" for name, value in figures
    )
    pairs = "".join(
        f"<tr><td>{escape(d.champion_label)}</td><td>{escape(d.shadow_label)}</td>"
        f'<td>{d.count}</td><td class="muted">{escape(", ".join(d.examples))}</td></tr>'
        for d in shadow.disagreements[:8]
    )
    disagreements = (
        "<p>Where they disagree most:</p><table><tr><th>champion says</th><th>shadow says</th>"
        f"<th>tickets</th><th>examples (request ids)</th></tr>{pairs}</table>"
        if pairs
        else _empty("They agree on every ticket.")
    )
    return _section(title, f"<table>{table}</table>{disagreements}", "shadow")


def _top_terms(data: DashboardData) -> str:
    title = "What the served model looks at, per class"
    if not data.top_terms:
        return _section(title, _empty("This model's bundle has no global view."))
    rows = "".join(
        f"<tr><th>{escape(label)}</th><td>"
        + ", ".join(escape(str(term)) for term, _ in terms[:10])
        + "</td></tr>"
        for label, terms in sorted(data.top_terms.items())
    )
    return _section(title, f"<table>{rows}</table>", "top-terms")


def _fmt(value: Any) -> str:
    return "" if value is None else f"{float(value):.4g}"


def _interval(interval: tuple[float, float] | None) -> str:
    return "" if interval is None else f"{interval[0]:+.4f} to {interval[1]:+.4f}"
