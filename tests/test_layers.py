"""The import layers of sparseshift, read from the source (``ast``), nothing imported.

Data flows env -> dataset file -> learner checkpoint -> agent -> results, and the subpackages are
stacked the same way. Each has a floor; a module may import its own floor or a lower one, never a
higher one:

====  ==============================  ======================================================
floor subpackage                      what lives there
====  ==============================  ======================================================
0     ``sparseshift`` (the root)      registers the env ids; every import runs it, so it is
                                      on the lowest floor
0     ``sparseshift.envs``            bottom up (:data:`ENV_FLOORS`): the infrastructure every
                                      layer uses (``envs.infra``), shifts, the env base
                                      (``envs.core``), the envs, the registry, and what a
                                      dataset is (``envs.data``: config and manifest, format,
                                      pair generation, readers)
0     ``sparseshift.assets``          shipped files
1     ``sparseshift.representations`` learners (they read datasets)
2     ``sparseshift.agents``          agents on encoders; dataset collection
                                      (``agents.collect``), whose behaviour policy may be a
                                      trained agent
3     ``sparseshift.experiments``     the CLI, studies, benchmarks
====  ==============================  ======================================================

What counts as an import: every ``import sparseshift.X`` and ``from sparseshift.X import ...`` (or
relative) statement anywhere in a module (module level, in functions, under ``TYPE_CHECKING``),
and every string constant that names one of our modules (``"sparseshift.pkg.module"`` or
``"sparseshift.pkg.module:name"``, also the literal head of an f-string), since such strings exist
to be imported by name. Two kinds of such strings import no code and are not string imports (they
still count as dependencies): ``"sparseshift.assets"``, the package of shipped files read through
``importlib.resources``, and the module after ``"-m"`` in a command line (a child process). The
tests check that

* no module imports a higher floor (string imports included);
* no module names one of our modules in a string, except where :data:`STRING_IMPORTS` says why
  (gymnasium's env entry points; labels recorded in dataset manifests, in modules that import
  nothing by name);
* only the modules in :data:`DYNAMIC_IMPORTS` call ``importlib.import_module`` or ``__import__``,
  each for a stated reason;
* the subpackages (``sparseshift.envs``, ``...``) import each other without a cycle, and the
  packages below them (every folder with an ``__init__.py``) without any import cycle beyond
  :data:`KNOWN_PACKAGE_CYCLES` (a ``-m`` child process is not an import).

:func:`test_the_checks_catch_what_they_check` feeds the same functions a made-up package with an
upward import, a string import, a dynamic import and a cycle, and sees each flagged.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "sparseshift"

#: The floor of each top-level subpackage ("" is the root package, ``sparseshift/__init__.py``).
FLOORS: Mapping[str, int] = {
    "": 0,
    "envs": 0,
    "assets": 0,
    "representations": 1,
    "agents": 2,
    "experiments": 3,
}

#: Modules that may name our modules in strings, each with why. A module listed with target
#: prefixes may name only those (the rest of its strings are checked as everywhere else).
STRING_IMPORTS: Mapping[str, tuple[str, tuple[str, ...]]] = {
    # Allowed for good.
    "sparseshift.envs.registry": (
        "gymnasium env entry points: gymnasium.register takes 'module:Class' and imports the env "
        "module only when an env is made, so `import sparseshift` registers every id without "
        "importing MuJoCo or MiniGrid",
        ("sparseshift.envs.",)),
    "sparseshift.agents.collect.policies": (
        "AGENT_LOADER: the 'loader' label in the policy description of every dataset collected "
        "with an agent, so part of its manifest and fingerprint; a label only, never imported "
        "(this module imports nothing by name: not in DYNAMIC_IMPORTS)",
        ("sparseshift.agents.replay:load_agent_policy",)),
}

#: Modules that import by name at run time, each with why (the names are not ours unless said).
DYNAMIC_IMPORTS: Mapping[str, str] = {
    "sparseshift.envs.shifts.registry": "shift plugin modules the user named (--plugin)",
    "sparseshift.envs.data.export": "the optional export libraries (lerobot, minari)",
    "sparseshift.representations.plugins": "learner and encoder plugins: installed entry points "
                                           "and modules the user named (--plugin)",
}

#: Cycles between packages below the subpackages (folders with ``__init__.py``) that exist
#: today; each is inside one subpackage, so no floor is crossed. No new one may appear (none is
#: left: envs.infra <- envs.shifts <- envs.core <- the env packages <- envs.registry).
KNOWN_PACKAGE_CYCLES: frozenset[frozenset[str]] = frozenset()

#: ``"sparseshift.a.b"`` or ``"sparseshift.a.b:name"``, the whole string.
_NAMED = re.compile(rf"{PACKAGE}(?:\.[A-Za-z_]\w*)+(?::[A-Za-z_][\w.]*)?")
#: The literal head of an f-string such as ``f"sparseshift.experiments.commands.{name}"``.
_HEAD = re.compile(rf"{PACKAGE}(?:\.[A-Za-z_]\w*)*\.?")
_DYNAMIC = frozenset({"import_module", "__import__"})


@dataclass(frozen=True)
class Ref:
    """One dependency of ``source`` on ``target`` (a module of ours) at ``line``."""

    source: str
    target: str
    line: int
    #: "import"; "string" (names a module to import it); "resource" (names the assets package, to
    #: read its files); "run" (``python -m MODULE``); "dynamic" (a call that imports by name)
    kind: str
    text: str = ""  # the string, for "string"


@dataclass(frozen=True)
class Source:
    text: str
    is_package: bool  # an __init__.py
    path: str = ""


def package_sources(root: Path = ROOT) -> dict[str, Source]:
    """Every module of the package, by dotted name (tests/ and docs/ are not part of it)."""
    out = {PACKAGE: Source((root / "__init__.py").read_text(), True, "__init__.py")}
    for top in FLOORS:
        if not top:
            continue
        for path in sorted((root / top).rglob("*.py")):
            rel = path.relative_to(root)
            parts = list(rel.with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            out[".".join([PACKAGE, *parts])] = Source(path.read_text(), is_package, str(rel))
    return out


def top_of(module: str) -> str | None:
    """The top-level subpackage of a module name ("" for the root), None if not ours."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    top = parts[1] if len(parts) > 1 else ""
    return top if top in FLOORS else None


def package_of(module: str, sources: Mapping[str, Source]) -> str:
    """The package a module belongs to (itself for a package)."""
    src = sources.get(module)
    if src is not None and src.is_package:
        return module
    return module.rpartition(".")[0] if module in sources else _known_prefix(module, sources)


def _known_prefix(name: str, sources: Mapping[str, Source]) -> str:
    """The longest prefix of ``name`` that is one of our modules, in the same subpackage
    (``name`` itself if none is)."""
    probe = name
    while probe not in sources and probe.count(".") > 1:
        probe = probe.rpartition(".")[0]
    return probe if probe in sources else name


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def refs_of(module: str, src: Source, sources: Mapping[str, Source]) -> list[Ref]:
    """Every dependency of ``module`` on one of our modules (see the module docstring)."""
    tree = ast.parse(src.text, filename=src.path or module)
    out: list[Ref] = []
    # ``[sys.executable, "-m", "sparseshift.experiments", ...]`` runs a program; it imports nothing
    run = {id(node.elts[i + 1]) for node in ast.walk(tree) if isinstance(node, ast.List | ast.Tuple)
           for i, e in enumerate(node.elts[:-1])
           if isinstance(e, ast.Constant) and e.value == "-m"}

    def add(target: str, line: int, kind: str, text: str = "") -> None:
        if top_of(target) is not None:
            out.append(Ref(module, _known_prefix(target, sources), line, kind, text))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno, "import")
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, src.is_package)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                add(sub if sub in sources else base, node.lineno, "import")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if _NAMED.fullmatch(node.value):
                target = node.value.partition(":")[0]
                kind = ("resource" if top_of(target) == "assets" else
                        "run" if id(node) in run else "string")
                add(target, node.lineno, kind, node.value)
        elif isinstance(node, ast.JoinedStr) and node.values:
            head = node.values[0]
            if (isinstance(head, ast.Constant) and isinstance(head.value, str)
                    and len(node.values) > 1 and _HEAD.fullmatch(head.value)):
                add(head.value.rstrip("."), node.lineno, "string", head.value + "{...}")
        elif isinstance(node, ast.Call):
            f = node.func
            name = (f.attr if isinstance(f, ast.Attribute) else
                    f.id if isinstance(f, ast.Name) else "")
            if name in _DYNAMIC:
                # the target is unknown; record it against the package itself
                out.append(Ref(module, PACKAGE, node.lineno, "dynamic", name))
    return out


def all_refs(sources: Mapping[str, Source]) -> list[Ref]:
    return [r for m, s in sources.items() for r in refs_of(m, s, sources)]


def floor_of(module: str) -> int:
    top = top_of(module)
    assert top is not None, module
    return FLOORS[top]


def upward(refs: Iterable[Ref]) -> list[str]:
    """Imports and string imports of a higher floor."""
    return [f"{r.source}:{r.line} ({floor_of(r.source)}) -> {r.target} ({floor_of(r.target)})"
            f"{' by the string ' + repr(r.text) if r.kind == 'string' else ''}"
            for r in refs if r.kind != "dynamic" and floor_of(r.target) > floor_of(r.source)]


def string_imports(refs: Iterable[Ref],
                   allowed: Mapping[str, tuple[str, tuple[str, ...]]]) -> list[str]:
    """String imports of our modules that :data:`STRING_IMPORTS` does not explain."""
    bad = []
    for r in refs:
        if r.kind != "string":
            continue
        entry = allowed.get(r.source)
        if entry is None or (entry[1] and not r.text.startswith(entry[1])):
            bad.append(f"{r.source}:{r.line} names {r.text!r}")
    return bad


def dynamic_imports(refs: Iterable[Ref], allowed: Mapping[str, str]) -> list[str]:
    return [f"{r.source}:{r.line} calls {r.text}" for r in refs
            if r.kind == "dynamic" and r.source not in allowed]


def cycles(edges: Mapping[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(frozenset(comp))

    for v in sorted(set(edges) | {w for ws in edges.values() for w in ws}):
        if v not in index:
            visit(v)
    return found


def graph(refs: Iterable[Ref], node: Callable[[str], str]) -> dict[str, set[str]]:
    """Edges between ``node(module)`` of every import and string import (self-loops dropped)."""
    edges: dict[str, set[str]] = {}
    for r in refs:
        if r.kind == "dynamic":
            continue
        a, b = node(r.source), node(r.target)
        if a != b:
            edges.setdefault(a, set()).add(b)
    return edges


def subpackage(module: str) -> str:
    top = top_of(module)
    return PACKAGE if not top else f"{PACKAGE}.{top}"


# ---------------------------------------------------------------------------------------------

SOURCES = package_sources()
REFS = all_refs(SOURCES)


def test_every_subpackage_has_a_floor() -> None:
    tops = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert tops - {"tests", "docs"} == set(FLOORS) - {""}


def test_the_floors_in_the_docstring_are_the_floors_checked() -> None:
    """The table at the top of this file is :data:`FLOORS`; printed with the subpackage graph
    (``pytest -s``)."""
    table = re.findall(rf"^(\d)\s+``({PACKAGE}[\w.]*)``", __doc__ or "", re.MULTILINE)
    assert {name: int(floor) for floor, name in table} == {
        f"{PACKAGE}.{top}" if top else PACKAGE: floor for top, floor in FLOORS.items()}
    edges = graph(REFS, subpackage)
    for top, floor in sorted(FLOORS.items(), key=lambda kv: (kv[1], kv[0])):
        name = f"{PACKAGE}.{top}" if top else PACKAGE
        print(f"floor {floor}  {name:30} imports {', '.join(sorted(edges.get(name, ()))) or '-'}")


def test_no_module_imports_a_higher_floor() -> None:
    assert upward(REFS) == []


def test_no_string_imports_of_our_modules() -> None:
    assert string_imports(REFS, STRING_IMPORTS) == []


def test_string_import_exceptions_are_still_needed() -> None:
    """An exception whose strings are gone is removed (the list only shrinks)."""
    used = {r.source for r in REFS if r.kind == "string"}
    assert sorted(set(STRING_IMPORTS) - used) == []


def test_modules_with_recorded_labels_import_nothing_by_name() -> None:
    """A label kept in a manifest stays a label: its module has no dynamic import."""
    labels = {m for m, (_, prefixes) in STRING_IMPORTS.items() if prefixes}
    assert sorted(labels & set(DYNAMIC_IMPORTS)) == []
    assert dynamic_imports([r for r in REFS if r.source in labels], {}) == []


def test_only_known_modules_import_by_name() -> None:
    assert dynamic_imports(REFS, DYNAMIC_IMPORTS) == []
    used = {r.source for r in REFS if r.kind == "dynamic"}
    assert sorted(set(DYNAMIC_IMPORTS) - used) == []


def test_no_cycle_between_subpackages() -> None:
    assert cycles(graph(REFS, subpackage)) == []


def test_no_cycle_between_modules() -> None:
    """No module imports itself back through others (imports anywhere in a module, under
    ``TYPE_CHECKING`` too): the learner registry, the env registry and every other module sit
    in one order. A ``-m`` child process is not an import (see below)."""
    imports = [r for r in REFS if r.kind != "run"]
    assert sorted(map(sorted, cycles(graph(imports, lambda m: m)))) == []


def test_no_new_cycle_between_packages() -> None:
    """Imports only: a ``-m`` module run in a child process (``bench evalrep`` and ``bench gpu``
    time the ``sparseshift`` program as a user runs it) shares no import state with its caller,
    so it cannot close an import cycle. Those edges still count for the floors."""
    imports = [r for r in REFS if r.kind != "run"]
    found = set(cycles(graph(imports, lambda m: package_of(m, SOURCES))))
    assert sorted(map(sorted, found - KNOWN_PACKAGE_CYCLES)) == []
    assert sorted(map(sorted, KNOWN_PACKAGE_CYCLES - found)) == []  # fixed: remove it


#: The floors inside ``sparseshift.envs`` (its packages; "" is its own modules: the registry).
ENV_FLOORS: Mapping[str, int] = {
    "infra": 0,  # config, io, errors, heartbeat: what every layer uses; nothing else of ours
    "shifts": 1,  # colour splits and graded shifts (they read assets)
    "core": 2,  # the env base class (it applies shifts), factor specs, the GL backend
    "trifinger": 3, "grid": 3,  # the envs
    "": 4,  # the registry: names the env classes (gymnasium entry points), makes envs
    "data": 5,  # what a dataset is: config, format, pair generation, readers
}


def _env_floor(module: str) -> int:
    part = module.removeprefix("sparseshift.envs").lstrip(".").split(".", 1)[0]
    return ENV_FLOORS[part if part in ENV_FLOORS else ""]


def test_envs_is_stacked_bottom_up() -> None:
    """Issue 24: inside the lowest floor, infrastructure, shifts, the env base, the envs, the
    registry and the dataset format each import only what is below them (string entry points
    included), so the env registry has no import cycle."""
    parts = {m.removeprefix("sparseshift.envs.").split(".", 1)[0] for m in SOURCES
             if m.startswith("sparseshift.envs.") and SOURCES[m].is_package}
    assert parts <= set(ENV_FLOORS)
    inside = [r for r in REFS if r.kind != "dynamic" and r.source.startswith("sparseshift.envs")
              and r.target.startswith("sparseshift.envs")]
    up = [f"{r.source}:{r.line} -> {r.target}" for r in inside
          if _env_floor(r.target) > _env_floor(r.source)]
    assert up == []
    assert {r.target for r in REFS if r.source.startswith("sparseshift.envs.infra.")
            and r.kind != "run"} <= {m for m in SOURCES if m.startswith("sparseshift.envs.infra")}


def test_collection_imports_agents_plainly() -> None:
    """Issue 24: collection runs agents, so it sits above them and imports them plainly."""
    targets = {r.target for r in REFS
               if r.source.startswith("sparseshift.agents.collect.") and r.kind == "import"}
    assert {"sparseshift.agents.replay", "sparseshift.representations.runtime",
            "sparseshift.envs.trifinger.scripted"} <= targets
    inside = ("sparseshift.agents.collect", "sparseshift.agents.collect.")
    back = [f"{r.source}:{r.line}" for r in REFS
            if r.source.startswith("sparseshift.agents.") and not r.source.startswith(inside)
            and r.target.startswith(inside)]
    assert back == []  # the rest of agents never needs collection: no agents <-> collect cycle


def test_study_graph_is_called_one_way() -> None:
    """Issue 24: the modules that build study tasks import the graph and their stage functions
    plainly; the graph imports none of them back (a task carries its stage function)."""
    graph_module = "sparseshift.experiments.study.graph"
    back = sorted({r.target for r in REFS if r.source == graph_module
                   and r.target.startswith("sparseshift.experiments.")})
    assert back == ["sparseshift.experiments.study.artifacts"]
    builders = ("sparseshift.experiments.study.runner", "sparseshift.experiments.study.disentangle",
                "sparseshift.experiments.study.slot_curve",
                "sparseshift.experiments.study.scorecard", "sparseshift.experiments.commands.demo")
    for builder in builders:
        targets = {r.target for r in REFS if r.source == builder and r.kind == "import"}
        assert graph_module in targets, builder
        assert "sparseshift.experiments.study.stages" in targets, builder


def test_the_checks_catch_what_they_check() -> None:
    """Fail-capable: a made-up package with one of each fault is flagged by each check."""
    fake = {
        PACKAGE: Source("", True),
        "sparseshift.envs": Source("", True),
        "sparseshift.envs.low": Source(
            "import importlib\n"
            "LOADER = 'sparseshift.agents.high:load'\n"  # string import, and upward
            "def f():\n"
            "    from sparseshift.agents.high import g\n"  # upward, inside a function
            "    return importlib.import_module(LOADER.partition(':')[0]), g\n"
            "NAME = f'sparseshift.agents.{LOADER}'\n", False),
        "sparseshift.envs.fine": Source("from sparseshift.envs import low\n"
                                        "from sparseshift.envs.sub import y\n", False),
        "sparseshift.agents": Source("", True),
        "sparseshift.agents.high": Source("from ..envs.fine import low\n"
                                          "from sparseshift.envs.sub import x\n"
                                          "CMD = ['python', '-m', 'sparseshift.envs.fine']\n"
                                          "FILES = 'sparseshift.assets'\n", False),
        "sparseshift.envs.sub": Source("from sparseshift.envs import fine\n", True),
    }
    refs = all_refs(fake)
    up = upward(refs)
    assert len(up) == 3 and all("sparseshift.envs.low:" in u for u in up), up
    assert any("string 'sparseshift.agents.high:load'" in u for u in up)
    assert len(string_imports(refs, {})) == 2
    assert string_imports(refs, {"sparseshift.envs.low": ("ok", ())}) == []
    assert len(string_imports(refs, {"sparseshift.envs.low": ("label", ("sparseshift.x",))})) == 2
    assert dynamic_imports(refs, {}) == ["sparseshift.envs.low:5 calls import_module"]
    assert cycles(graph(refs, subpackage)) == [frozenset({"sparseshift.envs",
                                                          "sparseshift.agents"})]
    assert any({"sparseshift.envs", "sparseshift.envs.sub"} <= c
               for c in cycles(graph(refs, lambda m: package_of(m, fake))))
    # relative imports resolve: ..envs.fine from sparseshift.agents.high
    assert Ref("sparseshift.agents.high", "sparseshift.envs.fine", 1, "import") in refs
    # a child process and the assets' files are dependencies, not string imports
    assert {(r.kind, r.target) for r in refs if r.source == "sparseshift.agents.high"} >= {
        ("run", "sparseshift.envs.fine"), ("resource", "sparseshift.assets")}
