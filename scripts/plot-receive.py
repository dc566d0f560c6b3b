#!/usr/bin/env python3
"""Draws the receive rows of `cargo bench --bench bench_mux` (CPU-MHz per
stream against the number of streams) as an SVG line chart, with nothing
but the standard library.

    cargo bench --bench bench_mux | tee mux.txt
    python3 scripts/plot-receive.py mux.txt [rerun.txt ...] > docs/receive.svg

A row is "N name threads cpu% MHz-per-stream ..."; a "src_all", "shared
core", "shared floor" or "+ push floor" row belongs to the "shared t=..."
row before it.
"""

import math
import re
import sys

ROW = re.compile(r"^\s+(\d+)\s+(.+?)\s+(\d+)\s+([\d.]+)%\s+([\d.]+)\s")
# Series drawn, in legend order: (name in the bench, label, colour, dash
# pattern: solid for receivers, dash-dot for the core with no buffers,
# dashed for floors, dotted for push floors).
SERIES = [
    ("udpsrc", "N × udpsrc", "#d62728", ""),
    ("rtpmuxserver", "rtpmuxserver, a socket per channel", "#1f77b4", ""),
    ("shared t=0ms", "rtpmuxserver, one shared port, tick 0", "#2ca02c", ""),
    ("shared t=5ms", "rtpmuxserver, one shared port, tick 5 ms", "#9467bd", ""),
    ("src_all t=0ms", "one shared port, all channels on src_all, tick 0", "#ff7f0e", ""),
    ("src_all t=5ms", "one shared port, all channels on src_all, tick 5 ms", "#8c564b", ""),
    ("shared core t=0ms", "its core alone (no buffers), tick 0", "#2ca02c", "8,3,2,3"),
    ("shared core t=5ms", "its core alone (no buffers), tick 5 ms", "#9467bd", "8,3,2,3"),
    ("floor", "floor: a socket per stream (epoll + recvmmsg)", "#1f77b4", "5,4"),
    ("shared floor t=0ms", "floor: one shared socket, tick 0", "#2ca02c", "5,4"),
    ("shared floor t=5ms", "floor: one shared socket, tick 5 ms", "#9467bd", "5,4"),
    ("push floor t=0ms", "the same + a buffer pushed per packet, tick 0", "#2ca02c", "1,3"),
    ("push floor t=5ms", "the same + a buffer pushed per packet, tick 5 ms", "#9467bd", "1,3"),
]


def parse(lines):
    points = {}
    last_shared = None
    for line in lines:
        m = ROW.match(line)
        if not m:
            continue
        n, name, mhz = int(m.group(1)), m.group(2).strip(), float(m.group(5))
        if name.startswith("shared t="):
            last_shared = name
        elif name in ("src_all", "shared core", "shared floor", "+ push floor") and last_shared:
            kind = "push floor" if name == "+ push floor" else name
            name = kind + " " + last_shared.split(" ", 1)[1]
        points.setdefault(name, {})[n] = mhz
    return points


def svg(points):
    width, height, left, right, top, bottom = 840, 420, 70, 390, 30, 50
    ns = sorted({n for series in points.values() for n in series})
    ymax = max(v for s in points.values() for v in s.values()) * 1.1
    x0, x1 = math.log(ns[0]), math.log(ns[-1])

    def x(n):
        return left + (math.log(n) - x0) / ((x1 - x0) or 1) * (width - left - right)

    def y(v):
        return top + (1 - v / ymax) * (height - top - bottom)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>']
    step = 0.25 if ymax < 2 else 0.5
    v = 0.0
    while v <= ymax:
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.2f}</text>')
        v += step
    for n in ns:
        out.append(f'<text x="{x(n):.1f}" y="{height - bottom + 18}" text-anchor="middle">{n}</text>')
    out.append(f'<text x="{(left + width - right) / 2:.0f}" y="{height - 12}" text-anchor="middle">'
               'streams received (50 packets/s each), log scale</text>')
    out.append(f'<text x="16" y="{(top + height - bottom) / 2:.0f}" text-anchor="middle" '
               f'transform="rotate(-90 16 {(top + height - bottom) / 2:.0f})">CPU-MHz per stream</text>')
    for i, (name, label, colour, pattern) in enumerate(SERIES):
        series = points.get(name)
        if not series:
            continue
        dash = f' stroke-dasharray="{pattern}"' if pattern else ""
        path = " ".join(f"{x(n):.1f},{y(v):.1f}" for n, v in sorted(series.items()))
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        for n, v in sorted(series.items()):
            out.append(f'<circle cx="{x(n):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}"/>')
        ly = top + 10 + i * 20
        lx = width - right + 16
        out.append(f'<line x1="{lx}" x2="{lx + 24}" y1="{ly}" y2="{ly}" stroke="{colour}" stroke-width="2"{dash}/>')
        out.append(f'<text x="{lx + 30}" y="{ly + 4}">{label}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    # A later file's rows replace an earlier one's at the same N: a rerun
    # of some N (a row whose comparison a loss voided) goes last.
    points = {}
    for path in sys.argv[1:]:
        with open(path) as f:
            for name, series in parse(f).items():
                points.setdefault(name, {}).update(series)
    if not points:
        sys.exit("plot-receive: no receive rows in " + " ".join(sys.argv[1:]))
    sys.stdout.write(svg(points))


if __name__ == "__main__":
    main()
