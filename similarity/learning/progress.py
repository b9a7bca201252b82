"""A training run's progress for people: log lines with an estimate of the time left.

Runs in the training worker (the Celery task logs through it) and in management commands.
``similarity.ml.fusion.training.train`` reports every epoch and each closing stage with the
run's ``step`` and ``steps`` (see its ``Progress``); this turns them into a line at most every
``interval`` seconds and at each new stage. Imports no torch.
"""
from __future__ import annotations

import logging
import time
from typing import Any

logger = logging.getLogger("similarity.learning.versions")


def remaining(step: int, steps: int, elapsed: float) -> float | None:
    """Seconds left at the pace so far (None before the first step)."""
    if step <= 0 or steps <= 0:
        return None
    return max(steps - step, 0) * elapsed / step


class LoggedProgress:
    """``progress(epoch, point)`` for ``train`` that logs stage, step, steps and the time left.

    Args:
        name: what is trained, for the log line (e.g. the model label).
        interval: seconds between two lines within one stage.
    """

    def __init__(self, name: str, interval: float = 30.0, clock=time.monotonic) -> None:
        self.name, self.interval, self.clock = name, interval, clock
        self.started = clock()
        self.last_line, self.stage = None, None

    def __call__(self, epoch: int, point: dict[str, Any]) -> None:
        now = self.clock()
        stage, step, steps = point.get("stage"), int(point.get("step", 0)), int(point.get("steps", 0))
        due = self.last_line is None or now - self.last_line >= self.interval
        if stage == self.stage and not due and step < steps:
            return
        self.stage, self.last_line = stage, now
        left = remaining(step, steps, now - self.started)
        scores = ", ".join(f"{key} {value:.3f}" for key, value in shown_scores(point).items())
        logger.info(
            "training %s: %s%s, step %d of %d, %.0fs so far, %s%s",
            self.name, stage, f" epoch {epoch}" if stage in ("fit", "refit") else "", step, steps, now - self.started,
            f"about {left:.0f}s left" if left is not None else "estimate after the first epoch",
            f" ({scores})" if scores else "",
        )


def shown_scores(point: dict) -> dict[str, float]:
    """The scores of a progress ``point`` worth showing: the loss, and the validation P@k
    except while refitting (the refit trains on every labelled row: nothing is validated)."""
    keys = ("loss",) if point.get("stage") == "refit" else ("loss", "val_p_at_k")
    return {key: point[key] for key in keys if isinstance(point.get(key), float)}
