"""No import cycles in first-party code, and the layers of docs/architecture.md: a module knows
the layers below it, never one above (function-level and TYPE_CHECKING imports included;
tests/import_graph.py).

    services.contract   bundle, features, vocabularies, types, errors: imports no other layer
    services.platform   server plumbing: may import services.contract, never a service
    services.<service>  one deployable each: contract + platform (+ another service's domain
                        module only for the embedded gateway's in-process stages)
    training            imports services.contract, never services.platform
"""

from __future__ import annotations

from pathlib import Path

from tests.import_graph import build_graph, cycles, find_modules, imports_of

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("services", "training", "recserve", "bench", "loadtest")


def test_no_import_cycles() -> None:
    found = cycles(build_graph(find_modules(REPO, PACKAGES)))
    why = "import cycles (break each one; tests/import_graph.py says what counts):\n"
    assert not found, why + "\n".join(" <-> ".join(cycle) for cycle in found)


SERVICES = ("feature", "retrieval", "ranking", "uservalue", "gateway")


def _edges() -> list[tuple[str, str]]:
    graph = build_graph(find_modules(REPO, PACKAGES))
    return [(src, dst) for src, targets in graph.items() for dst in sorted(targets)]


def _layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "services" and len(parts) > 1:
        return "services." + parts[1]
    return parts[0]


def test_contract_imports_no_other_layer() -> None:
    bad = [
        f"{src} -> {dst}"
        for src, dst in _edges()
        if _layer(src) == "services.contract"
        and dst.startswith("services.")
        and _layer(dst) != "services.contract"
    ]
    assert not bad, "services.contract must not import these:\n" + "\n".join(bad)


def test_platform_imports_no_service() -> None:
    services = {f"services.{name}" for name in SERVICES}
    bad = [
        f"{src} -> {dst}"
        for src, dst in _edges()
        if _layer(src) == "services.platform" and _layer(dst) in services
    ]
    assert not bad, "services.platform must not import a service:\n" + "\n".join(bad)


def test_training_never_imports_the_server_platform() -> None:
    bad = [
        f"{src} -> {dst}"
        for src, dst in _edges()
        if _layer(src) == "training" and _layer(dst) == "services.platform"
    ]
    assert not bad, "training must not import services.platform:\n" + "\n".join(bad)


# --- the helper itself, on a small made-up tree --------------------------------------------


TYPE_CHECKING_BLOCK = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"


def _tree(root: Path, files: dict[str, str]) -> dict[str, Path]:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return find_modules(root, ["pkg"])


def test_module_names_and_import_forms(tmp_path: Path) -> None:
    modules = _tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "import os\nimport pkg.b\nfrom pkg import c\nfrom pkg.sub import d as _\n",
            "pkg/b.py": "def f():\n    from pkg.sub.d import thing\n",
            "pkg/c.py": "from . import b\nfrom .sub import d\n",
            "pkg/sub/__init__.py": "from .. import a\n",
            "pkg/sub/d.py": TYPE_CHECKING_BLOCK + "    import numpy\n",
        },
    )
    assert sorted(modules) == ["pkg", "pkg.a", "pkg.b", "pkg.c", "pkg.sub", "pkg.sub.d"]
    graph = build_graph(modules)
    assert graph["pkg.a"] == {"pkg", "pkg.b", "pkg.c", "pkg.sub", "pkg.sub.d"}
    assert graph["pkg.b"] == {"pkg.sub.d"}  # function-level, `from module import name`
    assert graph["pkg.c"] == {"pkg", "pkg.b", "pkg.sub", "pkg.sub.d"}  # relative
    assert graph["pkg.sub"] == {"pkg", "pkg.a"}
    assert graph["pkg.sub.d"] == set()  # third party only
    assert imports_of("pkg.a", "import pkg.a\n", modules) == set()  # itself


def test_cycles_are_strongly_connected_components(tmp_path: Path) -> None:
    modules = _tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg import b\n",
            "pkg/b.py": "def late():\n    import pkg.c\n",  # deferred still counts
            "pkg/c.py": "import pkg.a\n",
            "pkg/d.py": "import pkg.a\nimport pkg.e\n",
            "pkg/e.py": TYPE_CHECKING_BLOCK + "    from pkg.d import x\n",
            "pkg/f.py": "import pkg.a\n",
        },
    )
    assert cycles(build_graph(modules)) == [("pkg.a", "pkg.b", "pkg.c"), ("pkg.d", "pkg.e")]


def test_no_cycles_in_a_layered_tree() -> None:
    graph = {"top": {"mid", "low"}, "mid": {"low"}, "low": set(), "other": {"outside"}}
    assert cycles(graph) == []
