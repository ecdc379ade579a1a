"""The package's layering, checked on the source: who may import whom, and no import cycles.

Every module under ``pica/`` is parsed with :mod:`ast` (nothing is imported). Each ``import`` is found wherever it
stands: at module level, inside a function, or under ``if TYPE_CHECKING:``. The layer rules apply to all of them (a
type-only import is still a dependency); the cycle rule looks at runtime imports only, i.e. it ignores those under
``if TYPE_CHECKING:``. ``from pkg import name`` counts as an import of ``pkg.name`` when that is a module, else of
``pkg``; the implicit import of a package by its submodules is not counted.

The rules are described in docs/architecture.md (Layout).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pica"

FOUNDATION = frozenset({"errors", "config", "logs", "heap"})
"""``pica/errors.py``, ``pica/config.py``, ``pica/logs.py``, ``pica/heap.py``: import no other pica module."""

ALLOWED: dict[str, frozenset[str]] = {
    "pica": frozenset(),  # pica/__init__.py
    "errors": frozenset(),
    "config": frozenset(),
    "logs": frozenset(),
    "heap": frozenset(),  # the garbage collector's settings for a server process
    # The node's metric definitions and their exposition (prometheus_client): instruments the edges write into.
    # Not the store's (it reports commits through store.base.CommitObserver) nor the core's.
    "metrics": frozenset({"errors"}),
    # Sans-I/O wire layer (also what the client SDK is built on).
    "protocol": frozenset({"errors"}),
    # pica/store/base.py: the Store ABC and its records, the interface the core and the cluster are written against.
    "store.base": FOUNDATION | {"protocol"},
    # The rest of pica/store: the drivers (SQLite, PostgreSQL), their shared rules, the factory.
    "store": FOUNDATION | {"protocol", "store.base"},
    # Domain logic, against ports (core/ports.py) and the Store interface; never a driver, never an edge.
    "core": FOUNDATION | {"protocol", "store.base"},
    # The cluster bus reaches this node's connections through core.ports.LocalSessions, never through the gateway.
    "cluster": FOUNDATION | {"protocol", "store.base", "core"},
    "gateway": FOUNDATION | {"protocol", "store.base", "core", "metrics"},
    "web": FOUNDATION,
    "api": FOUNDATION | {"protocol", "store.base", "core", "gateway", "web", "media", "metrics"},
    # Files: blob storage, uploads, thumbnails and housekeeping, against the Store interface.
    "media": FOUNDATION | {"store.base"},
    # The job queue's workers, against the Store interface; webhooks are one kind of job (and the before-send hook,
    # the core's BeforeSend port).
    "jobs": FOUNDATION | {"store.base"},
    "webhooks": FOUNDATION | {"protocol", "store.base", "core", "jobs"},
    # The event stream: another kind of job (publishing to NATS JetStream).
    "stream": FOUNDATION | {"store.base", "jobs"},
    # Push notifications: another kind of job; Web Push endpoints reach the network through the webhooks' SSRF rule.
    "push": FOUNDATION | {"protocol", "store.base", "jobs", "webhooks"},
    # Link previews: another kind of job; the SSRF rule shared with webhooks, thumbnails made like the media's.
    "previews": FOUNDATION | {"protocol", "store.base", "jobs", "webhooks", "media"},
    # The MQTT gateway: a transport of the gateway's Connection, beside TCP and WebSocket.
    "mqtt": FOUNDATION | {"protocol", "store.base", "core", "gateway", "metrics"},
    "xmpp": FOUNDATION | {"protocol", "store.base", "core", "gateway", "metrics"},
    # The Python SDK: could be split into a distribution of its own.
    "client": frozenset({"errors", "protocol"}),
    # The composition root wires everything but the clients.
    "app": FOUNDATION | {"protocol", "store.base", "store", "core", "cluster", "gateway", "api", "web", "jobs",
                         "webhooks", "stream", "mqtt", "xmpp", "media", "push", "metrics", "previews"},
    "cli": FOUNDATION | {"protocol", "store.base", "store", "core", "client", "app", "cluster", "jobs",
                         "webhooks"},  # cluster: doctor
    "__main__": frozenset({"cli"}),
}

THIRD_PARTY: dict[str, frozenset[str]] = {
    # library -> the only layers that may import it
    "redis": frozenset({"cluster"}),
    "asyncpg": frozenset({"store"}),
    "nats": frozenset({"stream"}),
    "sqlite3": frozenset({"store"}),
    "prompt_toolkit": frozenset({"cli"}),  # the terminal chat's input line; never the server's
    "prometheus_client": frozenset({"metrics"}),
}
FORBIDDEN_THIRD_PARTY: dict[str, frozenset[str]] = {
    # layer -> libraries (and standard modules) it must not import
    "protocol": frozenset({"asyncio", "socket", "selectors", "threading", "aiohttp", "redis", "asyncpg", "sqlite3"}),
    "core": frozenset({"socket", "aiohttp", "redis", "asyncpg", "sqlite3"}),
    "store.base": frozenset({"aiohttp", "redis", "asyncpg", "sqlite3"}),
}


@dataclass(frozen=True, slots=True)
class Import:
    source: str
    target: str
    """A pica module when the import names one; else the dotted name as written (third-party, standard library)."""
    line: int
    type_checking: bool


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def find_modules(root: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(path, root): path for path in sorted(root.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(source: str, name: str, is_package: bool, known: set[str] | dict[str, Path]) -> list[Import]:
    """Every import in ``source`` (the text of module ``name``), resolved against the ``known`` module names."""
    package = name if is_package else name.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, type_checking: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, type_checking)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(name, alias.name, node.lineno, type_checking))
            return
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.append(Import(name, candidate if candidate in known else base, node.lineno, type_checking))
            return
        for inner in ast.iter_child_nodes(node):
            visit(inner, type_checking)

    visit(ast.parse(source), False)
    return found


def all_imports(modules: dict[str, Path]) -> Iterator[Import]:
    for name, path in modules.items():
        yield from imports_of(path.read_text(encoding="utf-8"), name, path.name == "__init__.py", modules)


def layer(module: str) -> str:
    """``pica.cluster.bus`` -> ``cluster``; ``pica.store.base`` is a layer of its own (the store's interface)."""
    parts = module.split(".")
    if len(parts) == 1:
        return "pica"
    if parts[1] == "store":
        return "store.base" if parts[:3] == ["pica", "store", "base"] else "store"
    return parts[1]


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (or a module importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0

    def connect(node: str) -> None:  # Tarjan; the graph is small, recursion is fine
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                connect(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return cycles


def runtime_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for imp in all_imports(modules):
        if not imp.type_checking and imp.target in modules:
            graph[imp.source].add(imp.target)
    return graph


def _where(imp: Import, modules: dict[str, Path]) -> str:
    path = modules[imp.source].relative_to(PACKAGE.parent)
    return f"{path}:{imp.line} imports {imp.target}" + (" (under TYPE_CHECKING)" if imp.type_checking else "")


# ---------------------------------------------------------------------------------------------- the rules


MODULES = find_modules()


def test_every_module_belongs_to_a_layer_with_rules() -> None:
    assert len(MODULES) > 50  # the scan did find the package
    unknown = sorted({layer(name) for name in MODULES} - ALLOWED.keys())
    assert not unknown, f"new top-level module(s) or package(s) {unknown}: add their rules to ALLOWED"


@pytest.mark.parametrize("source_layer", sorted(ALLOWED))
def test_layer_imports_only_what_it_may(source_layer: str) -> None:
    allowed = ALLOWED[source_layer] | {source_layer}
    bad = [
        _where(imp, MODULES)
        for imp in all_imports(MODULES)
        if layer(imp.source) == source_layer and imp.target in MODULES and layer(imp.target) not in allowed
    ]
    assert not bad, f"{source_layer} may import only {sorted(allowed)}:\n" + "\n".join(bad)


def test_third_party_libraries_stay_in_their_layer() -> None:
    bad = []
    for imp in all_imports(MODULES):
        if imp.target in MODULES:
            continue
        top = imp.target.split(".")[0]
        source_layer = layer(imp.source)
        owners = THIRD_PARTY.get(top)
        if owners is not None and source_layer not in owners:
            bad.append(f"{_where(imp, MODULES)}; only {sorted(owners)} may")
        if top in FORBIDDEN_THIRD_PARTY.get(source_layer, ()):
            bad.append(f"{_where(imp, MODULES)}; {source_layer} must not")
    assert not bad, "\n".join(bad)


def test_no_import_cycles() -> None:
    cycles = find_cycles(runtime_graph(MODULES))
    assert not cycles, "import cycles (runtime imports):\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_cluster_reaches_connections_through_the_core_port() -> None:
    """Issue 9: the cluster bus hands frames and presence to ``core.ports.LocalSessions``, not to the gateway."""
    cluster = [imp for imp in all_imports(MODULES) if layer(imp.source) == "cluster"]
    assert any(imp.target == "pica.core.ports" for imp in cluster)
    assert not [imp for imp in cluster if imp.target.startswith("pica.gateway")]


# ---------------------------------------------------------------------------------------------- the checker itself


def test_the_checker_resolves_imports_and_sees_type_checking_blocks() -> None:
    known = {"pica", "pica.a", "pica.b", "pica.pkg", "pica.pkg.c"}
    source = "\n".join([
        "from __future__ import annotations",
        "import typing",
        "from pica import b",
        "from pica.pkg import c, helper",
        "from . import a",
        "if typing.TYPE_CHECKING:",
        "    import pica.a",
        "else:",
        "    import json",
        "def later() -> None:",
        "    from pica.pkg.c import thing",
    ])
    found = {(imp.target, imp.type_checking) for imp in imports_of(source, "pica.x", False, known)}
    assert ("pica.b", False) in found
    assert ("pica.pkg.c", False) in found
    assert ("pica.pkg", False) in found  # ``helper`` is not a module: an import of the package
    assert ("pica.a", False) in found  # relative
    assert ("pica.a", True) in found
    assert ("json", False) in found  # the ``else`` of TYPE_CHECKING runs
    # The function-level import is seen too.
    assert [imp.line for imp in imports_of(source, "pica.x", False, known) if imp.target == "pica.pkg.c"] == [4, 11]


def test_the_checker_finds_cycles() -> None:
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"a"}}) == [["a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []
