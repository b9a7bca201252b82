"""``manage.py similarity_cluster``: discover category clusters and store their suggestions."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from similarity.categories.clustering import ClusteringUnavailable, enqueue_clustering, run_clustering
from similarity.management.commands._options import model_label
from similarity.models import CategorySuggestion, Decision


class Command(BaseCommand):
    help = (
        "Cluster the active products' vectors, name the clusters and store assign / move / create "
        "category suggestions for review in the admin (open suggestions of earlier runs are "
        "replaced; decided ones are kept)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--model", help="app_label.Model to cluster (default: the first registered model)")
        parser.add_argument("--k", type=int, help="number of clusters (default: chosen by cosine silhouette)")
        parser.add_argument("--seed", type=int, help="random seed (default 0)")
        parser.add_argument(
            "--async", dest="run_async", action="store_true", help="send the job to the training queue instead of running it here"
        )

    def handle(self, *args, **opts) -> None:
        label = model_label(opts["model"])
        if opts["run_async"]:
            enqueue_clustering(label)
            self.stdout.write(f"clustering of {label} sent to the training queue")
            return
        options = {name: opts[name] for name in ("k", "seed") if opts[name] is not None}
        if options.get("k") is not None and options["k"] < 2:
            raise CommandError("--k must be at least 2.")
        try:
            run = run_clustering(label, **options)
        except ClusteringUnavailable as exc:
            raise CommandError(str(exc)) from exc
        open_suggestions = CategorySuggestion.objects.filter(model_label=label, status=Decision.OPEN, cluster__run=run)
        self.stdout.write(
            f"{run.products} items -> {run.k} clusters (k by {run.criterion}) in "
            f"{sum(run.seconds.values()):.1f}s; {open_suggestions.count()} open suggestions"
        )
        for cluster in run.clusters.order_by("-size")[:20]:
            self.stdout.write(
                f"  {cluster.size:5d}  purity {cluster.purity:.2f}  {cluster.name}"
                + (f"  (mostly {cluster.majority_label})" if cluster.majority_label else "")
            )
        for suggestion in open_suggestions.order_by("-size")[:20]:
            self.stdout.write(self.style.SUCCESS(f"  -> {suggestion.describe()}"))
