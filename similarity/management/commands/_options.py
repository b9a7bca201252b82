"""Option helpers shared by the similarity management commands (not a command itself)."""
from __future__ import annotations

from django.apps import apps
from django.core.management.base import CommandError

from similarity.models import Embeddable, embeddable_models


def model_label(value: str | None) -> str:
    """Return ``value`` checked to be an Embeddable model, or the first such model."""
    if value:
        try:
            model = apps.get_model(value)
        except (LookupError, ValueError) as exc:
            raise CommandError(f"--model {value!r}: {exc}") from None
        if not issubclass(model, Embeddable):
            raise CommandError(f"--model {value!r} does not mix in similarity.models.Embeddable.")
        return model._meta.label
    models = embeddable_models()
    if not models:
        raise CommandError("No model mixes in similarity.models.Embeddable.")
    return models[0]._meta.label
