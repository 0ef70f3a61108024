#!/usr/bin/env python3
"""Draws traffic at rest per node against cluster size, one line per
membership engine, on a log scale, from bench/idle_sweep.sh's CSV.

Usage: bench/membership_chart.py CSV SVG
"""
import csv, math, sys

rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["bytes_per_node_sec_at_rest"] not in ("", "-")]
series = {}
for r in rows:
    series.setdefault(r["engine"], []).append((int(r["nodes"]), float(r["bytes_per_node_sec_at_rest"])))
W, H, L, R, T, B = 640, 360, 70, 130, 40, 50
xs = sorted({n for pts in series.values() for n, _ in pts})
ymin, ymax = 100, 10 ** math.ceil(math.log10(max(v for pts in series.values() for _, v in pts)))
X = lambda n: L + (W - L - R) * (math.log10(n) - math.log10(xs[0])) / max(1e-9, math.log10(xs[-1]) - math.log10(xs[0]))
Y = lambda v: T + (H - T - B) * (1 - (math.log10(v) - math.log10(ymin)) / (math.log10(ymax) - math.log10(ymin)))
out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<text x="{L}" y="22" font-size="14">Gossip traffic per node at rest (netsim, idle scenario)</text>']
e = 0
while 10 ** (e + 2) <= ymax:
    v = 10 ** (e + 2)
    label = f"{v // 1000} KB/s" if v >= 1000 else f"{v} B/s"
    out.append(f'<line x1="{L}" x2="{W - R}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" stroke="#ddd"/>')
    out.append(f'<text x="{L - 6}" y="{Y(v) + 4:.1f}" text-anchor="end">{label}</text>')
    e += 1
out.append(f'<line x1="{L}" x2="{W - R}" y1="{Y(1024):.1f}" y2="{Y(1024):.1f}" stroke="#2a2" stroke-dasharray="4 3"/>')
out.append(f'<text x="{W - R + 6}" y="{Y(1024) + 4:.1f}" fill="#2a2">goal: 1 KB/s</text>')
for n in xs:
    out.append(f'<text x="{X(n):.1f}" y="{H - B + 18}" text-anchor="middle">{n}</text>')
out.append(f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">nodes</text>')
colors = {"chitchat": "#c33", "swim": "#36c"}
for name, pts in sorted(series.items()):
    pts.sort()
    c = colors.get(name, "#555")
    out.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="' + " ".join(f"{X(n):.1f},{Y(v):.1f}" for n, v in pts) + '"/>')
    for n, v in pts:
        out.append(f'<circle cx="{X(n):.1f}" cy="{Y(v):.1f}" r="3" fill="{c}"/>')
    n, v = pts[-1]
    out.append(f'<text x="{X(n) + 8:.1f}" y="{Y(v) + 4:.1f}" fill="{c}">{name}</text>')
out.append("</svg>")
open(sys.argv[2], "w").write("\n".join(out) + "\n")
