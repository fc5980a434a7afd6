"""Draw config/grafana/logscan.json's panels as one SVG from a real Prometheus's answers.

Not a Grafana screenshot (Grafana is not in Debian 12): every panel's queries run through the
Prometheus HTTP API with the variables set to "All", and the results are drawn as plain line
charts (tables as rows of text). docs/dashboard.svg was made by tests/test_dashboard.py's stack:

    LOGSCAN_RENDER_DASHBOARD=docs/dashboard.svg .venv/bin/python -m pytest -q tests/test_dashboard.py

or, against any Prometheus that scrapes logscan:

    .venv/bin/python scripts/render_dashboard.py --prometheus http://127.0.0.1:9090 --out x.svg
"""

from __future__ import annotations

import argparse
import json
import math
import time
import urllib.parse
import urllib.request
from html import escape
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DASHBOARD = REPO / "config" / "grafana" / "logscan.json"
COLORS = ("#7eb26d", "#eab839", "#6ed0e0", "#ef843c", "#e24d42", "#1f78c1", "#ba43a9", "#705da0")
W, H, PAD = 560, 230, 12


def _get(url: str, path: str, params: dict[str, str]) -> Any:
    if not url.startswith(("http://", "https://")):
        raise SystemExit(f"--prometheus wants an http(s) URL, got {url!r}")
    full = f"{url}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(full, timeout=30) as resp:  # noqa: S310 - http(s) checked above
        body = json.load(resp)
    if body["status"] != "success":
        raise RuntimeError(body)
    return body["data"]


def _expr(expr: str, rate_interval: str, range_: str) -> str:
    for name, value in (
        ("$__rate_interval", rate_interval),
        ("$__range", range_),
        ("$instance", ".*"),
        ("$log", ".*"),
    ):
        expr = expr.replace(name, value)
    return expr


def _legend(fmt: str, labels: dict[str, str]) -> str:
    out = fmt
    for k, v in labels.items():
        out = out.replace("{{" + k + "}}", v)
    return " ".join(p for p in out.split() if "{{" not in p) or "value"


def _panel_svg(
    panel: dict[str, Any],
    x0: int,
    y0: int,
    url: str,
    start: float,
    end: float,
    step: float,
    rate_interval: str,
) -> list[str]:
    out = [
        f'<rect x="{x0}" y="{y0}" width="{W}" height="{H}" rx="4" fill="#181b1f" stroke="#2c3235"/>',
        f'<text x="{x0 + PAD}" y="{y0 + 20}" fill="#d8d9da" font-size="13" font-weight="bold">'
        f"{escape(panel['title'])}</text>",
    ]
    range_ = f"{max(1, int(end - start))}s"
    if panel["type"] == "table":
        rows: list[tuple[str, float]] = []
        for t in panel["targets"]:
            for r in _get(
                url, "/api/v1/query", {"query": _expr(t["expr"], rate_interval, range_), "time": str(end)}
            )["result"]:
                rows.append((_legend(t["legendFormat"], r["metric"]), float(r["value"][1])))
        rows.sort(key=lambda r: -r[1])
        for i, (name, v) in enumerate(rows[:9]):
            y = y0 + 46 + i * 19
            out.append(f'<text x="{x0 + PAD}" y="{y}" fill="#d8d9da" font-size="12">{escape(name)}</text>')
            out.append(
                f'<text x="{x0 + W - PAD}" y="{y}" fill="#d8d9da" font-size="12" '
                f'text-anchor="end">{v:g}</text>'
            )
        return out
    series: list[tuple[str, list[tuple[float, float]]]] = []
    for t in panel["targets"]:
        data = _get(
            url,
            "/api/v1/query_range",
            {
                "query": _expr(t["expr"], rate_interval, range_),
                "start": str(start),
                "end": str(end),
                "step": str(step),
            },
        )
        for r in data["result"]:
            pts = [(float(a), float(b)) for a, b in r["values"] if not math.isnan(float(b))]
            if pts:
                series.append((_legend(t["legendFormat"], r["metric"]), pts))
    px0, py0, pw, ph = x0 + 50, y0 + 32, W - 62 - 170, H - 52
    vmax = max((v for _, pts in series for _, v in pts), default=1.0) or 1.0
    out.append(f'<line x1="{px0}" y1="{py0 + ph}" x2="{px0 + pw}" y2="{py0 + ph}" stroke="#2c3235"/>')
    out.append(
        f'<text x="{px0 - 4}" y="{py0 + 8}" fill="#8e8e8e" font-size="10" text-anchor="end">{vmax:.3g}</text>'
    )
    out.append(f'<text x="{px0 - 4}" y="{py0 + ph}" fill="#8e8e8e" font-size="10" text-anchor="end">0</text>')
    for i, (name, pts) in enumerate(series[:8]):
        color = COLORS[i % len(COLORS)]
        coords = " ".join(
            f"{px0 + (t - start) / (end - start) * pw:.1f},{py0 + ph - min(v, vmax) / vmax * ph:.1f}"
            for t, v in pts
        )
        out.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        ly = py0 + 10 + i * 15
        out.append(f'<rect x="{px0 + pw + 12}" y="{ly - 8}" width="10" height="3" fill="{color}"/>')
        out.append(
            f'<text x="{px0 + pw + 26}" y="{ly - 3}" fill="#d8d9da" font-size="10">{escape(name[:28])}</text>'
        )
    if not series:
        out.append(
            f'<text x="{x0 + W / 2}" y="{y0 + H / 2}" fill="#8e8e8e" font-size="12" '
            'text-anchor="middle">No data</text>'
        )
    return out


def render(url: str, start: float, end: float, *, rate_interval: str = "1m") -> str:
    """The SVG of every panel of the dashboard over [start, end]."""
    doc = json.loads(DASHBOARD.read_text())
    step = max(1.0, (end - start) / 200)
    cols = 2
    rows = math.ceil(len(doc["panels"]) / cols)
    width, height = cols * (W + 10) + 10, rows * (H + 10) + 50
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(end))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif">',
        f'<rect width="{width}" height="{height}" fill="#111217"/>',
        f'<text x="10" y="26" fill="#d8d9da" font-size="16">{escape(doc["title"])}'
        "  ·  instance = All, log = All"
        f"  ·  {int(end - start)} s to {when}  ·  from Prometheus query results (not Grafana)</text>",
    ]
    for i, panel in enumerate(doc["panels"]):
        parts += _panel_svg(
            panel,
            10 + (i % cols) * (W + 10),
            40 + (i // cols) * (H + 10),
            url,
            start,
            end,
            step,
            rate_interval,
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prometheus", required=True, help="base URL, e.g. http://127.0.0.1:9090")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--minutes", type=float, default=360)
    ap.add_argument("--rate-interval", default="5m")
    args = ap.parse_args()
    end = time.time()
    args.out.write_text(
        render(args.prometheus, end - args.minutes * 60, end, rate_interval=args.rate_interval)
    )


if __name__ == "__main__":
    main()
