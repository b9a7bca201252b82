"""``manage.py similarity_evaluate``: the evaluation protocol on the current catalog.

Held-out products (the sku-hash test split) are the queries, every product the gallery. No
vector is built from a category label (the encoded text is title, brand, description), so
the numbers measure what the vectors know, not what the labels say.

First, through the code the API serves (``similarity.learning.evaluation``): neighbour
lists from ``similar_to`` over the active space's pgvector indexes, suggestions from
``suggest`` with the held-out categories hidden; P@1, P@10 and mAP@10 per level for image
only, text only, the fixed-weight fusion, the served vectors (and with the lexical
channel), category suggestions top-1 / top-3 and calibration (ECE) per level.

Then diagnostics, exact kNN over vectors computed here: pretrained and recurrent text, the
learned model's parts, a TF-IDF baseline over text-pipeline tokens. Prints and writes JSON
+ markdown.

A large catalog: the served part asks a seeded sample of ``--max-queries`` held-out items
(5,000) against the whole catalog; the diagnostics read a sample of ``--max-products`` products
(``TRAINING_MAX_PRODUCTS``, as training does with the same seed, so a learned model's
diagnostic row repeats its training metrics).
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from similarity.conf import similarity_settings
from similarity.indexing.rows import rows_by_key
from similarity.learning.evaluation import MAX_QUERIES, evaluate_served
from similarity.learning.photos import image_features
from similarity.learning.weights import fitted_weights
from similarity.learning.versions import collect_catalog
from similarity.management.commands._options import model_label
from similarity.ml.evaluation import (
    category_at_level,
    format_score,
    json_safe,
    nearest_neighbours,
    score_neighbours,
    tfidf_vectors,
)
from similarity.models import ModelVersion
from similarity.registry import get_adapter

# Diagnostics of a model with category evidence: its two parts scored apart.
NETWORK_ONLY = "learned fusion, network only (no category evidence)"
PROBE_ONLY = "category probe only (its probabilities as vectors)"
ROWS = [
    "image only", "image only (fine-tuned network)", "pretrained text only", "recurrent text only",
    "fixed-weight fusion", "learned attention fusion", "TF-IDF (text pipeline tokens)", NETWORK_ONLY, PROBE_ONLY,
]
MODALITIES = ("image", "sentence", "recurrent")


class Command(BaseCommand):
    help = "Evaluate image, text, fused and learned vectors on the held-out products."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--model", help="app_label.Model (default: the first registered model)")
        parser.add_argument("--model-version", help="ModelVersion name for the learned rows (default: the active one)")
        parser.add_argument("--levels", default="", help="comma-separated category levels (default: every level present)")
        parser.add_argument("--output", type=Path, help="folder for evaluation.json and evaluation.md (default: similarity-evaluation/<time> here)")
        parser.add_argument("--title", default="", help="heading of the markdown report")
        parser.add_argument(
            "--max-queries", type=int, default=MAX_QUERIES,
            help=f"held-out items asked through the served code at most, a seeded sample (default {MAX_QUERIES}; 0: all)",
        )
        parser.add_argument(
            "--max-products", type=int, default=None,
            help="products the diagnostics read at most, a seeded sample as training draws it "
            "(default: SIMILARITY['TRAINING_MAX_PRODUCTS']; 0: all)",
        )
        parser.add_argument("--seed", type=int, help="seed of both samples (default: training's, SIMILARITY['TRAINING'] seed or 0)")

    def handle(self, *args, **opts) -> None:
        from similarity.ml.fusion.checkpoint import FusionModel
        from similarity.ml.fusion.training import TrainConfig

        label = model_label(opts["model"])
        s = similarity_settings
        limit = s.TRAINING_MAX_PRODUCTS if opts["max_products"] is None else opts["max_products"]
        seed = int((s.TRAINING or {}).get("seed", TrainConfig.seed)) if opts["seed"] is None else opts["seed"]
        catalog = collect_catalog(label, limit=limit or None, seed=seed)
        if not catalog.pks:
            raise CommandError(f"{label} has no rows to evaluate.")
        version = (
            ModelVersion.objects.filter(name=opts["model_version"]).first() if opts["model_version"] else ModelVersion.active_for(label)
        )
        if opts["model_version"] and version is None:
            raise CommandError(f"No model version named {opts['model_version']!r}.")
        depth = max(p.count(">") + 1 if p else 0 for p in catalog.paths)
        levels = [int(x) for x in opts["levels"].split(",") if x] or list(range(1, depth + 1))
        has_any = catalog.has_image | catalog.has_text
        rows = {
            "image only": (catalog.image, catalog.has_image),
            "pretrained text only": (catalog.sentence, catalog.has_text),
            "fixed-weight fusion": (catalog.fixed_fusion(fitted_weights(label)), has_any),
            "TF-IDF (text pipeline tokens)": (
                tfidf_vectors([" ".join(t) for t in catalog.tokens], str.split),
                np.array([bool(t) for t in catalog.tokens]),
            ),
        }
        attention = None
        if version is not None:
            model = FusionModel.load(version.path)
            image, has_image = catalog.image, catalog.has_image
            if version.image_weights:  # the version brought its own image network
                image, has_image = image_features(label, _rows(label, catalog.pks), version.image_weights)
                rows["image only (fine-tuned network)"] = (image, has_image)
            inputs = (image, has_image, catalog.sentence, catalog.has_text, catalog.tokens)
            learned, attention = model.encode(*inputs)
            rows["learned attention fusion"] = (learned, has_any)
            rows["recurrent text only"] = (model.encode_branch("recurrent", *inputs), np.array([bool(t) for t in catalog.tokens]))
            posterior = model.category_posterior(*inputs[:4])
            if posterior is not None:
                rows[NETWORK_ONLY] = (model.encode(*inputs, evidence=False)[0], has_any)
                rows[PROBE_ONLY] = (posterior / np.linalg.norm(posterior, axis=1, keepdims=True), has_any)
        served = evaluate_served(
            label, levels=levels, progress=lambda row: self.stderr.write(f"served: {row} done"),
            max_queries=opts["max_queries"] or None, seed=seed,
        )
        held_out = catalog.held_out
        results = {}
        for name in (n for n in ROWS if n in rows):
            vectors, valid = rows[name]
            if not valid.any():  # e.g. image only on a catalog without photos
                continue
            query_idx, neighbours = nearest_neighbours(vectors, valid, held_out)  # once, scored per level
            results[name] = {str(l): score_neighbours(query_idx, neighbours, catalog.labels(l)) for l in levels}
        report = {
            "model": label,
            "learned_version": version.name if version else None,
            "products": len(catalog.pks),
            "held_out": int(held_out.sum()),
            "created": timezone.now().isoformat(timespec="seconds"),
            "served": served,
            "results": results,
            "attention_by_top_category": _attention_summary(catalog.paths, attention) if attention is not None else {},
        }
        markdown = _served_markdown(served, levels, opts["title"] or label) + "\n" + _markdown(report, levels, "")
        self.stdout.write(markdown)
        output = opts["output"] or Path("similarity-evaluation") / timezone.now().strftime("%Y%m%d-%H%M%S")
        output.mkdir(parents=True, exist_ok=True)
        (output / "evaluation.json").write_text(json.dumps(json_safe(report), indent=2, ensure_ascii=False), encoding="utf-8")
        (output / "evaluation.md").write_text(markdown, encoding="utf-8")
        self.stderr.write(f"written to {output}/evaluation.json and evaluation.md")


def _attention_summary(paths: list[str], attention: np.ndarray) -> dict[str, dict[str, float]]:
    groups: dict[str, list[np.ndarray]] = defaultdict(list)
    for path, weights in zip(paths, attention):
        groups[category_at_level(path, 1) or "(uncategorised)"].append(weights)
    return {
        top: {"products": len(ws), **{m: round(float(v), 3) for m, v in zip(MODALITIES, np.mean(ws, axis=0))}}
        for top, ws in sorted(groups.items())
    }


def _served_markdown(served: dict, levels: list[int], title: str) -> str:
    lines = [f"### {title}: through the served code", ""]
    lines.append(
        f"{served['items']} items, {served['held_out']} held out (their categories hidden), "
        f"{served['queries']} of them asked; vector "
        f"space {served['space']}, learned model: {served['learned'] or 'none'}."
    )
    lines += ["", "| vectors | " + " | ".join(f"L{l} P@1 | L{l} P@10" for l in levels) + " | held-out share of neighbours (chance) |"]
    lines.append("|---|" + "---|" * (2 * len(levels) + 1))
    for name, per_level in served["rows"].items():
        cells = []
        for level in levels:
            m = per_level[str(level)]
            cells += [format_score(m["p@1"]), format_score(m["p@10"])]
        share = served["held_out_share"][name]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {share['share']:.3f} ({share['expected']:.3f}) |")
    lines += ["", "Category suggestions for the held-out items (categories hidden):", ""]
    lines += [
        "| level | queries (category known) | served by | top-1 | top-3 | ECE | classifier top-1 | top-3 | ECE "
        "| neighbours top-1 | top-3 | ECE |"
    ]
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for level in levels:
        row = served["suggestions"][str(level)]
        cells = [f"{row['queries']} ({row['queries_whose_category_is_known']})", row["answered_by"]]
        for source in ("served", "classifier", "neighbours"):
            m = row.get(source) or {}
            cells += [format_score(m.get("top1")), format_score(m.get("top3")), format_score(m.get("ece"))]
        lines.append(f"| {level} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _markdown(report: dict, levels: list[int], title: str) -> str:
    lines = [f"### {title or 'Diagnostics: exact kNN over vectors computed here'}", ""]
    lines.append(
        f"{report['products']} products, {report['held_out']} held out as queries; learned model: "
        f"{report['learned_version'] or 'none active'}."
    )
    lines += ["", "| vectors | " + " | ".join(f"L{l} P@1 | L{l} P@10 | L{l} mAP@10" for l in levels) + " |"]
    lines.append("|---|" + "---|" * (3 * len(levels)))
    for name, per_level in report["results"].items():
        cells = []
        for level in levels:
            m = per_level[str(level)]
            cells += [format_score(m["p@1"]), format_score(m["p@10"]), format_score(m["map@10"])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if report["attention_by_top_category"]:
        lines += ["", "Mean attention weights of the learned fusion per top-level category:", ""]
        lines += ["| top-level category | products | image | pretrained text | recurrent text |", "|---|---|---|---|---|"]
        for top, w in report["attention_by_top_category"].items():
            lines.append(f"| {top} | {w['products']} | {w['image']:.2f} | {w['sentence']:.2f} | {w['recurrent']:.2f} |")
    return "\n".join(lines) + "\n"


def _rows(label: str, pks: list) -> list:
    """The rows of ``pks``, in that order."""
    found = rows_by_key(get_adapter(label), pks)
    return [found[pk] for pk in pks]
