"""Render a :class:`~netxray.report.core.Report` as ONE self-contained HTML file.

Plots are embedded as base64 PNG ``data:`` URIs, the style sheet is inline, and no script is
used, so the file opens offline in any browser and can be mailed as-is. Every plot is an
``<img class="plot">`` with explicit width/height attributes so that it reserves its box even
before decoding (the browser test checks that each one rendered at a visible size).

Names on demand: each per-layer plot carries the slots of its named positions
(:func:`netxray._plotting.hover_regions`), laid over the image as transparent boxes positioned
in percent of the image, each with a native ``title`` tooltip ("features.3.1.block.2.act (SiLU)
— ρ_aff 0.912, ok"), so hovering a point names it without any script.

Exceptions aggregated: a note about many named things (:class:`ItemizedNote`) is shown as one
line per distinct reason with a count ("58 layers: no permutable axis proven through it") and
the names folded in a ``<details>``; every section shows its reading guide and plots first and
its caveats after them.
"""

from __future__ import annotations

import html
import io
import json
import math
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from netxray.report.results import Plot

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure


__all__ = [
    "ItemizedNote", "Plot", "figure_to_plot", "notes_html", "render_html", "render_summary_html",
]  # fmt: skip

_DPI = 96


def figure_to_plot(fig: Figure, title: str, caption: str = "", *, dpi: int = _DPI) -> Plot:
    """Render a matplotlib Figure to PNG bytes (Agg canvas, no pyplot state) and wrap it, with the
    hover slots of the positions its axes named (:func:`netxray._plotting.label_positions`).
    Tick labels that would overlap are hidden first (:func:`netxray._plotting.finish_figure`)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from netxray._plotting import finish_figure, hover_regions

    FigureCanvasAgg(fig)  # attach an Agg canvas whatever backend the user has set
    fig.set_dpi(dpi)  # lay out at the resolution of the image, so the slots match its pixels
    finish_figure(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    w, h = fig.get_size_inches() * dpi
    return Plot(title=title, png=buf.getvalue(), width=round(w), height=round(h), caption=caption,
                regions=hover_regions(fig))  # fmt: skip


class ItemizedNote(str):
    """A note about many named things (layers, sites, tensors), each with a reason.

    As a string it is the whole text, ``"lead: a (reason); b (reason)"``, so whatever reads notes
    as text keeps working; the report renders it grouped by reason, one line per reason with its
    count and the names folded away (:func:`notes_html`).

    >>> n = ItemizedNote("Not analysed", [("a", "grouped conv"), ("b", "grouped conv")], noun="layers")
    >>> str(n), n.groups()
    ('Not analysed: a (grouped conv); b (grouped conv)', [('grouped conv', ['a', 'b'])])
    """

    lead: str
    items: tuple[tuple[str, str], ...]
    noun: str
    detail: str

    def __new__(
        cls, lead: str, items: Iterable[tuple[str, str]], noun: str = "layers", detail: str = ""
    ) -> ItemizedNote:
        pairs = tuple((str(n), str(r)) for n, r in items)
        text = f"{lead}" + (f" ({detail})" if detail else "") + ": " + "; ".join(f"{n} ({r})" for n, r in pairs)
        obj = super().__new__(cls, text)
        obj.lead, obj.items, obj.noun, obj.detail = str(lead), pairs, str(noun), str(detail)
        return obj

    def __reduce__(self) -> tuple[Any, ...]:
        return (ItemizedNote, (self.lead, self.items, self.noun, self.detail))

    def groups(self) -> list[tuple[str, list[str]]]:
        """``(reason, names)`` per distinct reason, the most frequent first (ties: first seen).
        A reason that quotes its own item's name ("no module 'layer1.0.relu#0' in ResNet") is
        grouped with the others of its kind, the name shown as ‹name›."""
        by: dict[str, list[str]] = {}
        for name, reason in self.items:
            # the name as a whole token only: "norm" must not eat the start of "normalization"
            token = re.compile(rf"(?<![\w.#:-]){re.escape(name)}(?![\w#:-]|\.\w)") if name and len(name) > 1 else None
            key = token.sub("‹name›", reason) if token is not None else reason
            by.setdefault(key, []).append(name)
        return sorted(by.items(), key=lambda kv: -len(kv[1]))


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d232b}
header{background:#1d2b3a;color:#fff;padding:18px 28px}
header h1{margin:0;font-size:22px} header p{margin:4px 0 0;color:#b9c6d3;font-size:13px}
main{max-width:1180px;margin:0 auto;padding:18px 28px 60px}
section{background:#fff;border:1px solid #dde2e8;border-radius:8px;padding:14px 20px;margin:16px 0}
h2{font-size:18px;margin:4px 0 10px} h3{font-size:15px;margin:16px 0 6px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{flex:1 1 220px;border:1px solid #dde2e8;border-radius:6px;padding:10px 12px;background:#fbfcfd}
.card h3{margin:0 0 6px;font-size:14px} .card dl{margin:0;display:grid;grid-template-columns:auto 1fr;gap:2px 10px;font-size:13px}
.card dt{color:#5b6773} .card dd{margin:0;font-variant-numeric:tabular-nums}
.status-ok{color:#1b7f3b} .status-failed,.status-unavailable,.status-no_result{color:#b3261e} .status-skipped{color:#8a6d00}
.note{border-left:4px solid #b3261e;background:#fdf1f0;padding:8px 12px;margin:8px 0;font-size:14px}
.info{border-left:4px solid #3b6ea8;background:#eef4fb;padding:6px 12px;margin:8px 0;font-size:13px}
.howto{color:#3d4853;font-size:14px;margin:4px 0 10px}
figure{margin:10px 0} figure img.plot{max-width:100%;height:auto;border:1px solid #eef0f3}
.plotbox{position:relative;display:inline-block;max-width:100%;line-height:0}
.plotbox .hot{position:absolute;display:block}
.plotbox .hot:hover{background:rgba(255,190,0,.25);outline:1px solid rgba(190,130,0,.7)}
.caveats{margin-top:12px} .caveats h3{font-size:14px;color:#3d4853;margin:10px 0 4px}
.info details{margin:2px 0} .info details summary{margin:2px 0;color:#1d3b5a}
.names{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px;line-height:1.5;
  max-height:260px;overflow:auto;padding:4px 0 4px 14px;color:#3d4853}
figcaption{font-size:13px;color:#4b5661;margin-top:4px}
table{border-collapse:collapse;font-size:12px;margin:6px 0} th,td{border:1px solid #e3e7ec;padding:3px 6px;text-align:right}
th{background:#f0f3f6} td.l,th.l{text-align:left}
.tablewrap{max-height:420px;overflow:auto;border:1px solid #eef0f3}
details summary{cursor:pointer;color:#24527a;font-size:13px;margin:6px 0}
pre{background:#f3f5f7;padding:8px;font-size:12px;overflow:auto}
footer{font-size:12px;color:#66727e;margin-top:20px}
"""


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.4g}"
        return f"{value:.4f}".rstrip("0").rstrip(".") if abs(value) < 1e3 else f"{value:.1f}"
    if isinstance(value, (list, tuple)):
        items = [_fmt(v) for v in value[:12]]
        return ", ".join(items) + (" …" if len(value) > 12 else "") if items else "none"
    if isinstance(value, dict):
        return "; ".join(f"{k}={_fmt(v)}" for k, v in list(value.items())[:8])
    try:  # numpy scalars
        return _fmt(value.item())
    except (AttributeError, ValueError):
        return str(value)


def _esc(value: Any) -> str:
    return html.escape(_fmt(value) if not isinstance(value, str) else value)


def _table_html(df: pd.DataFrame, max_rows: int = 200) -> str:
    shown = df.head(max_rows)
    cols = list(shown.columns)
    numeric = {c for c in cols if pd.api.types.is_numeric_dtype(shown[c])}
    head = "".join(f'<th class="{"" if c in numeric else "l"}">{html.escape(str(c))}</th>' for c in cols)
    rows = []
    for rec in shown.itertuples(index=False):
        cells = "".join(
            f'<td class="{"" if c in numeric else "l"}">{_esc(v)}</td>' for c, v in zip(cols, rec, strict=True)
        )
        rows.append(f"<tr>{cells}</tr>")
    more = (
        f'<p class="howto">first {max_rows} of {len(df)} rows; the full table is in the CSV file</p>'
        if len(df) > max_rows else ""
    )
    return f'<div class="tablewrap"><table><tr>{head}</tr>{"".join(rows)}</table></div>{more}'


def _plot_html(plot: Plot) -> str:
    hot = "".join(
        f'<span class="hot" style="left:{100 * x:.3f}%;top:{100 * y:.3f}%;width:{100 * w:.3f}%;'
        f'height:{100 * h:.3f}%" title="{html.escape(tip)}"></span>'
        for x, y, w, h, tip in plot.regions
    )
    hint = " Hover over the plot to see each point's name." if plot.regions else ""
    return (
        f'<figure><div class="plotbox"><img class="plot" alt="{html.escape(plot.title)}" '
        f'src="{plot.data_uri()}" width="{plot.width}" height="{plot.height}">{hot}</div>'
        f"<figcaption><b>{html.escape(plot.title)}.</b> {html.escape(plot.caption)}{hint}</figcaption></figure>"
    )


def _singular(noun: str) -> str:
    return noun[:-1] if noun.endswith("s") and not noun.endswith("ss") else noun


def notes_html(notes: Sequence[str]) -> str:
    """The caveats of a section, aggregated: identical notes once with a count, and each
    :class:`ItemizedNote` as one line per distinct reason ("58 layers: reason") with the names
    in a collapsible ``<details>`` (inline when there are three or fewer)."""
    counts: dict[str, int] = {}
    firsts: dict[str, str] = {}
    for note in notes:
        key = str(note)
        counts[key] = counts.get(key, 0) + 1
        firsts.setdefault(key, note)
    parts = []
    for key, note in firsts.items():
        times = f" <i>(×{counts[key]})</i>" if counts[key] > 1 else ""
        if not isinstance(note, ItemizedNote) or not note.items:
            parts.append(f'<div class="info">{html.escape(key)}{times}</div>')
            continue
        total = len(note.items)
        lines = []
        for reason, names in note.groups():
            noun = note.noun if len(names) != 1 else _singular(note.noun)
            head = f"<b>{len(names)}</b> {html.escape(noun)}: {html.escape(reason)}"
            listing = ", ".join(f"<code>{html.escape(n)}</code>" for n in names)
            if len(names) <= 3:
                lines.append(f"<div>{head} — {listing}</div>")
            else:
                lines.append(f'<details><summary>{head} — show list</summary><div class="names">'
                             f"{listing}</div></details>")  # fmt: skip
        noun = note.noun if total != 1 else _singular(note.noun)
        detail = f" {html.escape(note.detail)}" if note.detail else ""
        parts.append(f'<div class="info"><b>{html.escape(note.lead)}</b> ({total} {html.escape(noun)}){times}.'
                     f"{detail}{''.join(lines)}</div>")  # fmt: skip
    return "".join(parts)


def _card(title: str, status: str, items: Iterable[tuple[str, Any]]) -> str:
    dl = "".join(f"<dt>{html.escape(str(k))}</dt><dd>{_esc(v)}</dd>" for k, v in items)
    return (
        f'<div class="card"><h3>{html.escape(title)} '
        f'<span class="status-{html.escape(status)}">({html.escape(status)})</span></h3><dl>{dl}</dl></div>'
    )


_NOT_OK_LEAD = {"no_result": "This lens ran, but nothing it measured is meaningful"}


def _section(result: Any, anchor: str) -> str:
    parts = [f'<section id="{html.escape(anchor)}"><h2>{html.escape(result.title)}</h2>']
    if result.status != "ok":
        parts.append(
            f'<div class="note"><b>{_NOT_OK_LEAD.get(result.status, "This lens could not run on this model")} '
            f'({html.escape(result.status)}).</b> '
            f"{html.escape(result.reason or '')}</div>"
        )
    for text in result.howto:
        parts.append(f'<p class="howto">{html.escape(text)}</p>')
    for plot in result.plots:
        parts.append(_plot_html(plot))
    if result.notes:  # caveats and what was not analysed: after the finding, not before it
        parts.append(f'<div class="caveats"><h3>Caveats and what was not analysed</h3>'
                     f"{notes_html(result.notes)}</div>")  # fmt: skip
    for name, df in result.tables.items():
        if df is None or not isinstance(df, pd.DataFrame):
            continue
        parts.append(
            f"<details><summary>table <code>{html.escape(name)}</code> "
            f"({len(df)} rows × {df.shape[1]} columns)</summary>{_table_html(df)}</details>"
        )
    parts.append("</section>")
    return "".join(parts)


def _cards(report: Any) -> str:
    cards = []
    for res in report.results.values():
        items = list(res.headline().items())
        if res.status != "ok":  # why first: a card without a meaningful number says so
            items = [("reason", res.reason or res.status)] + items
        cards.append(_card(res.title, res.status, items))
    return f'<div class="cards">{"".join(cards)}</div>'


def render_html(report: Any) -> str:
    """The report as one HTML document (a string); a comparison shows each model's scan after the
    comparison sections."""
    meta = report.meta
    subtitle = " · ".join(
        f"{k}: {_fmt(meta[k])}" for k in ("model", "data", "n", "seed", "netxray_version") if k in meta
    )
    nav = [f'<a href="#{html.escape(n)}">{html.escape(r.title)}</a>' for n, r in report.results.items()]
    nav += [f'<a href="#model-{html.escape(c)}">model {html.escape(c)}</a>' for c in report.children]
    body = [f'<section id="summary"><h2>Summary</h2><p class="howto">{" · ".join(nav)}</p>{_cards(report)}']
    for cname, child in report.children.items():
        acc = child.meta.get("test_acc")
        extra = f" — test accuracy {_fmt(acc)}" if acc is not None else ""
        body.append(f"<h3>{html.escape(cname)}{html.escape(extra)}</h3>{_cards(child)}")
    body.append("</section>")
    body += [_section(res, name) for name, res in report.results.items()]
    for cname, child in report.children.items():
        cmeta = child.meta
        facts = ", ".join(f"{k} {_fmt(cmeta[k])}" for k in ("model", "arch", "n_params", "test_acc", "model_hash")
                          if cmeta.get(k) is not None)
        body.append(f'<h2 id="model-{html.escape(cname)}" style="margin-top:34px">Model {html.escape(cname)}</h2>'
                    f'<p class="howto">{html.escape(facts)}</p>')
        body += [_section(res, f"{cname}-{name}") for name, res in child.results.items()]
    meta_json = html.escape(json.dumps(report.meta, indent=2, default=str))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # a data: favicon stops browsers from requesting /favicon.ico (a console error offline)
        '<link rel="icon" href="data:,">'
        f"<title>{html.escape(report.title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{html.escape(report.title)}</h1><p>{html.escape(subtitle)}</p></header><main>"
        f"{''.join(body)}"
        f"<section id=\"metadata\"><h2>Metadata</h2><details><summary>how this report was made</summary>"
        f"<pre>{meta_json}</pre></details></section>"
        f"<footer>netxray {html.escape(str(meta.get('netxray_version', '')))} — tables as CSV"
        " (and Parquet) and results.json sit next to this file.</footer></main></body></html>\n"
    )


# the summary's rules, scoped to its wrapper so that a notebook's own styles are left alone
_SUMMARY_CSS = (
    ".nx-summary{font-family:system-ui,sans-serif;color:#1d232b}"
    ".nx-summary h3{margin:6px 0;font-size:16px}.nx-summary .cards{display:flex;flex-wrap:wrap;gap:10px}"
    ".nx-summary .card{flex:1 1 200px;border:1px solid #dde2e8;border-radius:6px;padding:8px 10px}"
    ".nx-summary .card h3{font-size:13px;margin:0 0 4px}.nx-summary dl{margin:0;display:grid;"
    "grid-template-columns:auto 1fr;gap:1px 8px;font-size:12px}.nx-summary dt{color:#5b6773}"
    ".nx-summary dd{margin:0}.nx-summary .status-ok{color:#1b7f3b}"
    ".nx-summary .status-failed,.nx-summary .status-unavailable,.nx-summary .status-no_result{color:#b3261e}"
    ".nx-summary .note{border-left:4px solid #b3261e;background:#fdf1f0;padding:4px 8px;font-size:13px}"
    ".nx-summary .plots{display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start}"
    ".nx-summary img{max-width:380px;height:auto;border:1px solid #eef0f3}"
)


def render_summary_html(report: Any) -> str:
    """A compact HTML fragment for notebooks: title, one card per lens (headline numbers and
    status), why any lens failed, and each lens's plots at thumbnail size. The full document is
    :meth:`Report.to_html`."""
    meta = report.meta
    facts = " · ".join(
        f"{k}: {_fmt(meta[k])}" for k in ("model", "data", "n", "seed") if meta.get(k) is not None
    )
    parts = [f'<div class="nx-summary"><style>{_SUMMARY_CSS}</style>',
             f"<h3>{html.escape(report.title)}</h3><p style=\"font-size:12px;margin:2px 0 8px\">"
             f"{html.escape(facts)}</p>", _cards(report)]  # fmt: skip
    for name, reason in report.failed.items():
        parts.append(f'<p class="note"><b>{html.escape(name)}</b>: {html.escape(reason)}</p>')
    thumbs = [p for res in report.results.values() for p in res.plots]
    if thumbs:
        parts.append('<div class="plots">')
        parts += [
            f'<img alt="{html.escape(p.title)}" title="{html.escape(p.title)}" src="{p.data_uri()}" '
            f'width="{min(p.width, 380)}">'
            for p in thumbs
        ]
        parts.append("</div>")
    parts.append(
        '<p style="font-size:11px;color:#66727e">report.to_html(path) or report.save(dir) for the '
        "full report with every table.</p></div>"
    )
    return "".join(parts)
