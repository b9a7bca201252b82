"""Option helpers shared by the similarity management commands (not a command itself)."""
from __future__ import annotations

from django.apps import apps
from django.core.management.base import CommandError

from similarity.registry import is_registered, registered_models


def model_label(value: str | None) -> str:
    """Return ``value`` checked to be a registered model, or the first registered model."""
    if value:
        try:
            model = apps.get_model(value)
        except (LookupError, ValueError) as exc:
            raise CommandError(f"--model {value!r}: {exc}") from None
        if not is_registered(model):
            raise CommandError(
                f"--model {value!r} is not registered with similarity: add it to SIMILARITY['MODELS'] "
                "or call similarity.register()."
            )
        return model._meta.label
    models = registered_models()
    if not models:
        raise CommandError("No model is registered with similarity: add one to SIMILARITY['MODELS'].")
    return models[0]._meta.label
