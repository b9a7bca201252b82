"""The package's layout holds: no import cycles, the ML layer imports no Django, and the
web side's modules import no torch when they are imported."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "similarity"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py") if "migrations" not in path.parts}


def top_level_imports(path: Path) -> set[str]:
    """Modules imported when ``path`` is imported (imports inside functions do not count)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: {m for m in top_level_imports(path) if m in known and m != name} for name, path in known.items()}


def test_no_module_imports_itself_back_through_others():
    graph, state, cycles = import_graph(), {}, []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append(trail[trail.index(target):] + [target] if target in trail else [node, target])
            elif target not in state:
                visit(target, trail + [target])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_the_graph_sees_a_cycle_when_there_is_one(tmp_path, monkeypatch):
    """The check can fail: two modules importing each other are a cycle."""
    graph = {"a": {"b"}, "b": {"a"}}
    monkeypatch.setattr(f"{__name__}.import_graph", lambda: graph)
    with pytest.raises(AssertionError):
        test_no_module_imports_itself_back_through_others()


@pytest.mark.parametrize("name", sorted(n for n in modules() if n.startswith("similarity.ml")))
def test_the_ml_layer_imports_no_django(name):
    imports = top_level_imports(modules()[name])
    assert not {m for m in imports if m.split(".")[0] == "django"}, name
    assert not {m for m in imports if m.startswith("similarity.") and not m.startswith("similarity.ml")}, name


def test_every_module_is_in_a_layer_a_newcomer_can_name():
    layers = {"ml", "indexing", "search", "categories", "matches", "learning", "admin", "api", "management", "templatetags"}
    top = {"similarity", "similarity.apps", "similarity.conf", "similarity.checks", "similarity.models",
           "similarity.tasks", "similarity.backends", "similarity.signal_handlers", "similarity.registry",
           "similarity.adapters", "similarity.urls", "similarity.celery", "similarity.routers"}
    stray = {n for n in modules() if n not in top and n.split(".")[1] not in layers}
    assert stray == set()


def test_the_public_api_is_importable_from_the_package():
    import similarity

    assert {"register", "enqueue_encode", "collect_encodes", "similar_to", "suggest"} <= set(similarity.__all__)
    for name in similarity.__all__:
        assert getattr(similarity, name) is not None, name
    with pytest.raises(AttributeError):
        similarity.Embeddable  # noqa: B018  (gone: models are registered, not mixed in)
