#!/usr/bin/python3
"""Writes a line chart as a self-contained SVG (no plotting library needed).

Reads JSON on stdin:
    {"title": "...", "x_label": "...", "y_label": "...",
     "x": [100, 500, ...], "series": {"name": [y or null, ...], ...}}
and writes the SVG to the file named by the one argument. The x axis is
logarithmic when its values span more than a factor of 10 (stream and call
counts), linear otherwise; the y axis starts at 0.
"""

import json
import math
import sys

W, H = 640, 360
LEFT, RIGHT, TOP, BOTTOM = 60, 150, 36, 50
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]


def nice_step(span, ticks=5):
    raw = span / ticks
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)


def main():
    spec = json.load(sys.stdin)
    xs = spec["x"]
    ys = [v for s in spec["series"].values() for v in s if v is not None]
    step = nice_step(max(ys))
    top = step * math.ceil(max(ys) / step)
    log_x = max(xs) / min(xs) > 10
    fx = (lambda v: math.log10(v)) if log_x else (lambda v: v)
    x0, x1 = fx(min(xs)), fx(max(xs))
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM

    def px(v):
        return LEFT + (fx(v) - x0) / (x1 - x0) * plot_w

    def py(v):
        return TOP + plot_h - v / top * plot_h

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14">{spec["title"]}</text>',
    ]
    t = 0.0
    while t <= top + 1e-9:
        y = py(t)
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">{t:g}</text>')
        t += step
    for v in xs:
        out.append(f'<text x="{px(v):.1f}" y="{H - BOTTOM + 18}" text-anchor="middle">{v}</text>')
    out.append(
        f'<text x="{LEFT + plot_w / 2}" y="{H - 12}" text-anchor="middle">{spec["x_label"]}</text>'
    )
    out.append(
        f'<text x="16" y="{TOP + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 16 {TOP + plot_h / 2})">{spec["y_label"]}</text>'
    )
    for i, (name, values) in enumerate(spec["series"].items()):
        color = COLORS[i % len(COLORS)]
        points = [(px(x), py(y)) for x, y in zip(xs, values) if y is not None]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for x, y in points:
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>')
        ly = TOP + 16 + 20 * i
        out.append(f'<line x1="{W - RIGHT + 12}" y1="{ly}" x2="{W - RIGHT + 32}" y2="{ly}" '
                   f'stroke="{color}" stroke-width="2"/>')
        out.append(f'<text x="{W - RIGHT + 38}" y="{ly + 4}">{name}</text>')
    out.append("</svg>")
    with open(sys.argv[1], "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
