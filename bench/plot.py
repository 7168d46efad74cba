#!/usr/bin/env python3
"""Plots of a bench/run.py result (bench/run.py calls it after each run).

    .venv-bench/bin/python bench/plot.py bench/results/core-<stamp>.json [--out-dir DIR] [--prefix bench-]

For each worker count W of the peers section: DIR/<prefix>peers-wW.png (req/s,
a panel per workload), DIR/<prefix>peers-wW-<workload>.png (one workload), and
DIR/<prefix>peers-wW-resources.png (PSS and launch-to-first-200 of every server
on the Flask workload); DIR/<prefix>plaintext.png and DIR/<prefix>cpu.png when
those core sections are in the file. Needs matplotlib (bench/requirements.txt).
Bars: gorgon in blue (its modes in lighter blues), Python peers in grey, nginx
(the static ceiling) hatched; a bar's label is its req/s and, for peers,
gorgon (interpreters) ÷ that server. Failed runs are drawn as a red "failed"
label, runs with errors are marked "errors!", servers that left connections
unanswered "starves connections".
"""

import argparse
import json
import os
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def colour(name):
    if name.startswith("gorgon"):
        if "processes" in name:
            return "#6baed6"
        if "threads" in name:
            return "#9ecae1"
        return "#08519c"
    if name.startswith("nginx"):
        return "#ffffff"
    return "#969696"


def panel(ax, title, servers, ratio_key="gorgon_ratio"):
    names = list(servers)
    rps = [servers[n]["summary"].get("rps") or 0 for n in names]
    ys = range(len(names))[::-1]
    bars = ax.barh(list(ys), rps, color=[colour(n) for n in names], edgecolor="black", linewidth=0.6)
    for b, n in zip(bars, names):
        if n.startswith("nginx"):
            b.set_hatch("//")
    top = max(rps) if any(rps) else 1
    for y, n, r in zip(ys, names, rps):
        s = servers[n]["summary"]
        if s.get("failed") or not r:
            ax.text(top * 0.01, y, "failed", va="center", color="red", fontsize=8, fontweight="bold")
            continue
        label = f"{r:,.0f}"
        ratio = s.get(ratio_key)
        if ratio and not n.startswith("gorgon") and ratio_key == "gorgon_ratio":
            label += f"  (gorgon ×{ratio:.2f})"
        if s.get("starved"):
            label += "  [starves connections: " + ", ".join(s.get("fairness_answered", [])) + " served]"
        if s.get("non2xx", 0) + s.get("socket_errors", 0):
            label += "  errors!"
        ax.text(r + top * 0.01, y, label, va="center", fontsize=7.5)
    ax.set_yticks(list(ys))
    ax.set_yticklabels(names, fontsize=8)
    ax.set_xlim(0, top * 1.7)
    ax.set_xlabel("requests/s (higher is better)", fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(axis="x", alpha=0.3)


def peer_plots(a, wls, w, p, foot):
    """One figure with a panel per workload, and one figure per workload."""
    written = []
    rows = len(wls)
    cols = 2 if rows > 1 else 1
    nrows = (rows + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(7.5 * cols, 3.4 * nrows), squeeze=False)
    for ax, (wl, d) in zip(axes.flat, wls.items()):
        panel(ax, f"{wl} (wrk {d['wrk']})", d["servers"])
    for ax in list(axes.flat)[rows:]:
        ax.axis("off")
    fig.suptitle(f"gorgon vs peers, {w} worker(s) each, {p['duration_s']}s runs", fontsize=12)
    fig.text(0.5, 0.005, foot, ha="center", fontsize=7, color="#555555")
    fig.tight_layout(rect=(0, 0.02, 1, 0.97))
    written.append(save(fig, a, f"peers-w{w}"))
    for wl, d in wls.items():
        fig, ax = plt.subplots(figsize=(8, 0.45 * len(d["servers"]) + 1.4))
        panel(ax, f"{wl}: {d['app']} {d['path']}, wrk {d['wrk']}, {w} worker(s)", d["servers"])
        fig.text(0.5, 0.005, foot, ha="center", fontsize=6, color="#555555")
        fig.tight_layout(rect=(0, 0.03, 1, 1))
        written.append(save(fig, a, f"peers-w{w}-{slug(wl)}"))
    return written


def resource_plot(a, wls, w, foot):
    """PSS and launch-to-first-200 of every server on the Flask workload (the
    heaviest app; the plaintext workloads when Flask was not run)."""
    wl = next((k for k in wls if "Flask" in k), None) or next(iter(wls))
    servers = wls[wl]["servers"]
    names = [n for n in servers if not servers[n]["summary"].get("failed")]
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.42 * len(names) + 1.6))
    for ax, key, label, spec in ((axes[0], "pss_mb", "PSS of all its processes, MB (lower is better)", ".1f"),
                                 (axes[1], "first_200_ms", "launch to first 200, ms (lower is better)", ".0f")):
        raw = [servers[n]["summary"].get(key) for n in names]
        vals = [v or 0 for v in raw]
        ys = range(len(names))[::-1]
        ax.barh(list(ys), vals, color=[colour(n) for n in names], edgecolor="black", linewidth=0.6)
        top = max(vals) if any(vals) else 1
        for y, v in zip(ys, raw):
            ax.text((v or 0) + top * 0.01, y, "n/a" if v is None else format(v, spec), va="center", fontsize=7.5)
        ax.set_yticks(list(ys))
        ax.set_yticklabels(names, fontsize=8)
        ax.set_xlim(0, top * 1.25)
        ax.set_xlabel(label, fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"{wl}, {w} worker(s): memory after the run and start-up", fontsize=11)
    fig.text(0.5, 0.005, foot, ha="center", fontsize=6, color="#555555")
    fig.tight_layout(rect=(0, 0.03, 1, 0.95))
    return save(fig, a, f"peers-w{w}-resources")


def save(fig, a, name):
    path = os.path.join(a.out_dir, f"{a.prefix}{name}.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def slug(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json")
    ap.add_argument("--out-dir", default=None, help="default: next to the JSON")
    ap.add_argument("--prefix", default="bench-")
    a = ap.parse_args()
    with open(a.json) as f:
        res = json.load(f)
    a.out_dir = a.out_dir or os.path.dirname(os.path.abspath(a.json))
    os.makedirs(a.out_dir, exist_ok=True)
    m = res.get("machine", {})
    foot = (f"{m.get('cpu_model')}, {m.get('nproc')} CPUs, Linux {m.get('kernel')}, Python {m.get('python')}; "
            f"wrk on the same machine; {res.get('started')}"
            + ("; quick run" if res.get("config", {}).get("quick") else ""))
    written = []

    p = res.get("peers")
    if p:
        by = p.get("by_workers") or {str(p["workers"]): p["workloads"]}  # results before worker counts
        for w, wls in by.items():
            if not wls:
                continue
            written += peer_plots(a, wls, w, p, foot)
            written.append(resource_plot(a, wls, w, foot))
    for sec, title, key in (("plaintext", "plaintext hello (WSGI)", "gorgon_ratio"),
                            ("cpu", "CPU-bound pi", "speedup_vs_gorgon_w1")):
        d = res.get(sec)
        if d:
            fig, ax = plt.subplots(figsize=(8, 0.45 * len(d["servers"]) + 1.4))
            panel(ax, f"{title}, wrk {d['wrk']}", d["servers"], key)
            fig.tight_layout()
            written.append(save(fig, a, sec))
    for w in written:
        print(w)


if __name__ == "__main__":
    main()
