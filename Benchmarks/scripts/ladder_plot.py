#!/usr/bin/env python3
"""The scale ladder's cost curve: one log-log SVG and one Markdown table from ladder.json files.

Each line is a cost relative to its value at the smallest step (x 1 there), against the number
of memories, both on log scales: a line parallel to the dotted "grows as the data" line grows
linearly, a flat one does not grow. Steps come from every file given, a later file's step
replacing an earlier one of the same size (so a step re-run with a newer build wins).

    Benchmarks/scripts/ladder_plot.py /tmp/ladder/ladder.json /tmp/ladder5m/ladder.json \\
        --svg docs/bench-scale-ladder.svg
"""
import argparse, json, math

# (key in a step, label, colour); costs, so higher is worse except import rows/s.
SERIES = [
    ("rss_bytes", "RSS after load", "#1f77b4"),
    ("file_bytes", "file size", "#7f7f7f"),
    ("restart_s", "restart to listening", "#d62728"),
    ("import_seconds", "offline import time", "#9467bd"),
    ("largest_vector_p50_ms", "vector p50, largest user", "#2ca02c"),
    ("largest_keyword_p50_ms", "keyword p50, largest user", "#ff7f0e"),
    ("small_keyword_p50_ms", "keyword p50, user of 100", "#bcbd22"),
    ("small_vector_p50_ms", "vector p50, user of 100", "#17becf"),
]


def steps_of(paths):
    steps = {}
    for path in paths:
        report = json.load(open(path))
        for step in report["steps"]:
            if "import_offline_rows_per_s" in step:
                step["import_seconds"] = step["memories"] / step["import_offline_rows_per_s"]
            steps[step["memories"]] = dict(step, source=path, machine=report.get("machine", {}),
                                           flat_storage=report.get("flat_storage", "float32"))
    return [steps[n] for n in sorted(steps)]


def svg(steps, width=720, height=440):
    left, right, top, bottom = 70, 250, 20, 50
    xs = [s["memories"] for s in steps]
    ratios = {}
    for key, _, _ in SERIES:
        points = [(s["memories"], s[key]) for s in steps if s.get(key)]
        if len(points) >= 2:
            ratios[key] = [(x, y / points[0][1]) for x, y in points]
    low = min([1.0] + [r for pts in ratios.values() for _, r in pts])
    high = max([xs[-1] / xs[0]] + [r for pts in ratios.values() for _, r in pts])
    x0, x1 = math.log10(xs[0]), math.log10(xs[-1])
    y0, y1 = math.floor(math.log10(low)), math.ceil(math.log10(high))

    def px(x):
        return left + (math.log10(x) - x0) / (x1 - x0) * (width - left - right)

    def py(y):
        return height - bottom - (math.log10(y) - y0) / (y1 - y0) * (height - top - bottom)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>']
    for e in range(y0, y1 + 1):
        y = py(10 ** e)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">x{10 ** e:g}</text>')
    for x in xs:
        out.append(f'<line x1="{px(x):.1f}" y1="{top}" x2="{px(x):.1f}" y2="{height - bottom}" stroke="#ddd"/>')
        label = f"{x / 1e6:g}M" if x >= 1e6 else f"{x / 1e3:g}K"
        out.append(f'<text x="{px(x):.1f}" y="{height - bottom + 16}" text-anchor="middle">{label}</text>')
    out.append(f'<text x="{(left + width - right) / 2:.0f}" y="{height - 12}" text-anchor="middle">'
               f'memories (log)</text>')
    out.append(f'<text x="16" y="{(top + height - bottom) / 2:.0f}" text-anchor="middle" '
               f'transform="rotate(-90 16 {(top + height - bottom) / 2:.0f})">cost / cost at {xs[0]:,} (log)</text>')
    out.append(f'<line x1="{px(xs[0]):.1f}" y1="{py(1):.1f}" x2="{px(xs[-1]):.1f}" y2="{py(xs[-1] / xs[0]):.1f}" '
               f'stroke="black" stroke-dasharray="3,3"/>')
    legend = [("grows as the data", "black", True)]
    for key, label, colour in SERIES:
        if key not in ratios:
            continue
        points = " ".join(f"{px(x):.1f},{py(r):.1f}" for x, r in ratios[key])
        out.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, r in ratios[key]:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(r):.1f}" r="3" fill="{colour}"/>')
        legend.append((label, colour, False))
    for i, (label, colour, dashed) in enumerate(legend):
        y = top + 10 + 18 * i
        dash = ' stroke-dasharray="3,3"' if dashed else ""
        out.append(f'<line x1="{width - right + 12}" y1="{y}" x2="{width - right + 36}" y2="{y}" '
                   f'stroke="{colour}" stroke-width="2"{dash}/>')
        out.append(f'<text x="{width - right + 42}" y="{y + 4}">{label}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def table(steps):
    def cell(step, key, form):
        return form.format(step[key]) if step.get(key) is not None else "not run"
    rows = ["| memories | flat rows | import offline rows/s | file MiB | RSS MiB | bytes/memory | restart s "
            "| vector p50 ms: 100 / median / largest | keyword p50 ms: 100 / median / largest |",
            "|---:|---|---:|---:|---:|---:|---:|---|---|"]
    for s in steps:
        mib = lambda key: f"{s[key] / 2**20:,.0f}" if s.get(key) else "not run"
        rows.append(
            f"| {s['memories']:,} | {s['flat_storage']} | {cell(s, 'import_offline_rows_per_s', '{:,.0f}')} "
            f"| {mib('file_bytes')} | {mib('rss_bytes')} | {cell(s, 'bytes_per_memory', '{:,.0f}')} "
            f"| {cell(s, 'restart_s', '{:.2f}')} "
            f"| {cell(s, 'small_vector_p50_ms', '{:.3f}')} / {cell(s, 'median_vector_p50_ms', '{:.3f}')} / "
            f"{cell(s, 'largest_vector_p50_ms', '{:.2f}')} "
            f"| {cell(s, 'small_keyword_p50_ms', '{:.2f}')} / {cell(s, 'median_keyword_p50_ms', '{:.2f}')} / "
            f"{cell(s, 'largest_keyword_p50_ms', '{:.1f}')} |")
    return "\n".join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("reports", nargs="+", help="ladder.json files")
    parser.add_argument("--svg", required=True, help="where to write the plot")
    args = parser.parse_args()
    steps = steps_of(args.reports)
    assert len(steps) >= 2, "the curve needs at least two steps"
    with open(args.svg, "w") as f:
        f.write(svg(steps))
    print(table(steps))


main()
