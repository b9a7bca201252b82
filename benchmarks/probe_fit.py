"""How long fitting the category probe takes on a large synthetic catalog.

    .venv/bin/python benchmarks/probe_fit.py [--products 15000] [--categories 1000] [--max-iter 300]

The probe (``similarity/ml/fusion/probe.py``) is a scikit-learn logistic regression on
[sentence (512), image (1280)] features, fitted once per training run after the network.
Its cost grows with products x categories per L-BFGS iteration; real catalogs converge in a
few dozen iterations (flipkart1050: 36, zh-titles: 51). Features here are category centres
plus noise, so the count of iterations is an example, the time per iteration is the number.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from similarity.ml.fusion.probe import CategoryProbe  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=15_000)
    parser.add_argument("--categories", type=int, default=1_000)
    parser.add_argument("--max-iter", type=int, default=300)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    targets = rng.integers(0, args.categories, args.products)
    centres = rng.normal(size=(args.categories, 512)).astype(np.float32)
    sentence = centres[targets] + rng.normal(0, 2.0, (args.products, 512)).astype(np.float32)
    image = rng.normal(size=(args.products, 1280)).astype(np.float32)
    present = np.ones(args.products, bool)
    probe = CategoryProbe(args.categories, 512, 1280)
    started = time.perf_counter()
    fitted = probe.fit(image, present, sentence, present, targets, max_iter=args.max_iter)
    seconds = time.perf_counter() - started
    iterations = max(fitted["iterations"], 1)
    print(
        f"{args.products} products x {args.categories} categories: {seconds:.1f} s, "
        f"{fitted['iterations']} L-BFGS iterations, {seconds / iterations:.2f} s per iteration"
    )


if __name__ == "__main__":
    main()
