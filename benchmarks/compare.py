"""fastbp against the NumPy reference and PyTorch, one update at a time, in one run.

    python benchmarks/compare.py            # the full tables (SGD and Adam), ~7 minutes
    python benchmarks/compare.py --optimizers sgd   # SGD's table alone, ~3 minutes
    python benchmarks/compare.py --quick    # a smoke run, seconds
    python benchmarks/compare.py --help     # every option

The logic lives in `fastbp.bench` (also run as `fastbp bench`); this is its script.
"""
import sys

from fastbp.bench import main

if __name__ == "__main__":
    sys.exit(main(prog="python benchmarks/compare.py"))
