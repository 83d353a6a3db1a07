"""How the time of one update grows with the network: against parameter count (one
hidden layer of growing width) and against depth (hidden layers of a fixed width).

    python benchmarks/scaling.py                          # table + log-log slopes
    python benchmarks/scaling.py --plot docs/scaling.png  # and the figure (needs matplotlib)
    python benchmarks/scaling.py --quick                  # a smoke run, seconds

The work of an update is proportional to the parameter count (4·B flops per weight,
see `fastbp.bench.FLOP_CONVENTION`), so where per-call overhead no longer matters
the time should grow linearly: a log-log slope near 1 against parameters, and a
constant cost per added layer against depth. A slope well below 1 means fixed
overhead dominates; above 1 means the working set fell out of a cache level.
Tools are timed interleaved, medians over rounds, as in `benchmarks/compare.py`.
"""
import argparse
import json
import os
import statistics
import sys

import numpy as np

from fastbp import Network, bench

DEFAULT_WIDTHS = (16, 32, 64, 128, 256, 512, 1024, 2048)
DEFAULT_DEPTHS = (1, 2, 3, 4, 6, 8)
QUICK_WIDTHS = (16, 64, 256)
QUICK_DEPTHS = (1, 2, 3)
SCALING_TOOLS = ("fastbp", "numpy")


def n_params(sizes):
    """Weights and biases of a dense net.

    >>> n_params((784, 256, 10))
    203530
    """
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def loglog_slope(x, y):
    """The exponent k of the least-squares fit y ≈ c·x^k.

    >>> round(loglog_slope([1, 10, 100], [2, 20, 200]), 6)
    1.0
    """
    if len(x) < 2:
        return float("nan")
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def sweep_nets(widths, depths, depth_width, n_in=784, n_out=10):
    """[(sweep name, layer sizes)]: one hidden layer per width, then `depth` hidden
    layers of depth_width."""
    nets = [("width", (n_in, w, n_out)) for w in widths]
    nets += [("depth", (n_in, *([depth_width] * d), n_out)) for d in depths]
    return nets


def measure(nets, batch, tools, repeats, seconds, n_threads, progress=print):
    rows = []
    for sweep, sizes in nets:
        data = bench.make_batches(sizes, batch)
        net = Network(sizes, seed=0)
        fns = {t: bench.make_update(t, net, data, n_threads=n_threads) for t in tools}
        samples = bench.measure_interleaved(fns, repeats, seconds)
        row = {"sweep": sweep, "net": bench.net_name(sizes), "sizes": list(sizes),
               "hidden_layers": len(sizes) - 2, "params": n_params(sizes), "batch": batch,
               "us_per_update": {t: statistics.median(samples[t]) * 1e6 for t in tools},
               "rounds_us": {t: [s * 1e6 for s in samples[t]] for t in tools}}
        rows.append(row)
        if progress:
            progress(f"  {sweep:5s} {row['net']:28s} " + "  ".join(
                f"{t} {row['us_per_update'][t]:,.1f} µs" for t in tools), flush=True)
    return rows


def fits(rows, tools):
    """Per sweep and tool: the log-log slope of time against parameters; for the depth
    sweep also µs per added hidden layer (linear least squares)."""
    out = {}
    for sweep in ("width", "depth"):
        part = [r for r in rows if r["sweep"] == sweep]
        for tool in tools:
            times = [r["us_per_update"][tool] for r in part]
            fit = {"loglog_slope_vs_params": loglog_slope([r["params"] for r in part], times)}
            if sweep == "depth" and len(part) >= 2:
                fit["us_per_hidden_layer"] = float(np.polyfit([r["hidden_layers"] for r in part], times, 1)[0])
            out[f"{sweep}/{tool}"] = fit
    return out


def print_table(rows, tools, fit, batch, markdown):
    header = ["sweep", "net", "params"] + [f"{bench.TOOL_LABELS[t]} µs" for t in tools] + \
             [f"{bench.TOOL_LABELS[t]} ns/param" for t in tools]
    body = [[r["sweep"], r["net"], f"{r['params']:,}"]
            + [f"{r['us_per_update'][t]:,.1f}" for t in tools]
            + [f"{1000 * r['us_per_update'][t] / r['params']:.3f}" for t in tools] for r in rows]
    print(f"\nOne update at batch {batch}, float32, median of interleaved rounds")
    print(bench.format_table(header, body, markdown))
    print()
    for key, f in fit.items():
        extra = f", {f['us_per_hidden_layer']:,.1f} µs per added hidden layer" if "us_per_hidden_layer" in f else ""
        print(f"{key}: log-log slope of time vs parameters {f['loglog_slope_vs_params']:.2f}{extra}")


def plot(rows, tools, batch, path):
    """Time against parameters (log-log) for both sweeps, and against depth."""
    from fastbp.plot import figure
    try:
        fig = figure(11, 4.2)
    except ImportError:
        print(f"matplotlib is not installed: {path} not written (pip install matplotlib)")
        return False
    ax_params, ax_depth = fig.subplots(1, 2)
    for tool, color in zip(tools, ("tab:blue", "tab:orange", "tab:green")):
        for sweep, marker in (("width", "o"), ("depth", "s")):
            part = [r for r in rows if r["sweep"] == sweep]
            ax_params.loglog([r["params"] for r in part], [r["us_per_update"][tool] for r in part],
                             marker=marker, color=color, linestyle="-" if sweep == "width" else "--",
                             label=f"{bench.TOOL_LABELS[tool]}, {sweep}")
        part = [r for r in rows if r["sweep"] == "depth"]
        ax_depth.plot([r["hidden_layers"] for r in part], [r["us_per_update"][tool] for r in part],
                      marker="s", color=color, label=bench.TOOL_LABELS[tool])
    ax_params.set_xlabel("parameters")
    ax_params.set_ylabel(f"µs per update (batch {batch})")
    ax_params.set_title("against parameter count")
    ax_params.grid(True, which="both", alpha=0.3)
    ax_params.legend(fontsize=8)
    depth_width = next((r["sizes"][1] for r in rows if r["sweep"] == "depth"), "")
    ax_depth.set_xlabel(f"hidden layers of {depth_width}")
    ax_depth.set_ylabel("µs per update")
    ax_depth.set_title("against depth")
    ax_depth.grid(True, alpha=0.3)
    ax_depth.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")
    return True


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="three widths, three depths, short rounds")
    p.add_argument("--batch", type=bench._positive_int, default=32)
    p.add_argument("--widths", nargs="+", help="hidden widths of the 784-W-10 sweep")
    p.add_argument("--depths", nargs="+", help="hidden-layer counts of the depth sweep")
    p.add_argument("--depth-width", type=bench._positive_int, default=256)
    p.add_argument("--tools", default=",".join(SCALING_TOOLS), help="comma-separated subset of "
                   + ",".join(bench.TOOLS))
    p.add_argument("--repeats", type=bench._positive_int)
    p.add_argument("--seconds", type=float)
    p.add_argument("--threads", type=bench._positive_int, default=os.cpu_count() or 1)
    p.add_argument("--plot", metavar="PNG")
    p.add_argument("--json", metavar="PATH")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    try:
        widths = bench._split_list(args.widths, bench._positive_int, "--widths") if args.widths else \
            list(QUICK_WIDTHS if args.quick else DEFAULT_WIDTHS)
        depths = bench._split_list(args.depths, bench._positive_int, "--depths") if args.depths else \
            list(QUICK_DEPTHS if args.quick else DEFAULT_DEPTHS)
        tools = bench._split_list([args.tools], str, "--tools")
    except (ValueError, argparse.ArgumentTypeError) as e:
        p.error(str(e))
    if any(t not in bench.TOOLS for t in tools):
        p.error(f"--tools: choose from {list(bench.TOOLS)}, got {tools}")
    if args.seconds is not None and args.seconds <= 0:
        p.error(f"--seconds must be > 0, got {args.seconds}")
    torch = bench.import_torch()
    if "torch" in tools:
        if torch is None:
            p.error("--tools torch: PyTorch is not installed")
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 5)
    seconds = args.seconds or (0.02 if args.quick else 0.1)

    with bench._BlasThreads(args.threads):
        info = bench.machine_info(args.threads)
        for line in bench.describe_machine(info, []):
            print(line)
        rows = measure(sweep_nets(widths, depths, args.depth_width), args.batch, tools, repeats,
                       seconds, args.threads)
    fit = fits(rows, tools)
    print_table(rows, tools, fit, args.batch, args.markdown)
    if args.plot:
        plot(rows, tools, args.batch, args.plot)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "batch": args.batch, "rows": rows, "fits": fit}, f, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
