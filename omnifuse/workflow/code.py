"""Code hashes: which package files a workflow job runs, found from the imports of its entry points.

Each rule passes ``code_hash(<entry points>)`` as a param, so that editing a file reruns exactly the
jobs whose code imports it. An entry point is a module (``omnifuse.methods.gblend``) or a command
handler (``omnifuse.cli.train:_cmd_train``). The files of a job are the import closure of its entry
points, parsed with :mod:`ast` (nothing is imported):

* every ``import omnifuse...`` / ``from omnifuse... import ...`` is followed, at module level and inside
  functions (a lazy import runs when the job runs), together with the packages' ``__init__.py``;
  ``from package import name`` follows ``package.name`` when that is a module;
* a command module of :mod:`omnifuse.cli` is followed at module level, plus the named handler and the
  module's functions it calls: its other handlers import other jobs' code;
* *plug-ins*, the modules one job chooses among, are entered from the module that dispatches to them
  only when the job names them: the fusion method files (:mod:`omnifuse.methods.registry` imports all
  of them; a training run uses one) and the feature modules of one kind of input
  (:mod:`omnifuse.features.extract` imports :mod:`~omnifuse.features.cxr`, ``rep`` and ``volume``).
  A direct import of a plug-in from any other module is followed as usual;
* package data: a string constant equal to the name of a file in ``omnifuse/resources/`` adds that
  file (e.g. ``CHANNELS_FILE = "ehr_channels.yaml"``).

The hash is over the closure's paths relative to the repository and the files' bytes, so it does not
depend on where the repository lives. This module imports nothing heavy: the workflow calls it when it
parses the rules.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from omnifuse.features import INPUT_MODULES
from omnifuse.methods import METHOD_NAMES

PACKAGE = "omnifuse"
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
CLI = "omnifuse.cli"
DISPATCHERS = {
    "omnifuse.methods.registry": frozenset(f"omnifuse.methods.{name}" for name in METHOD_NAMES),
    "omnifuse.features.extract": frozenset(
        ("omnifuse.features.cxr", "omnifuse.features.rep", "omnifuse.features.volume")
    ),
}


class CodeError(ValueError):
    """An entry module that does not exist in the package."""


def module_file(module: str, root: Path = PACKAGE_ROOT) -> Path | None:
    """The file of ``module`` (``omnifuse.x.y``) under the package folder ``root``, or None."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    return _module_file(".".join(parts[1:]), root)


@functools.cache
def _module_file(relative: str, root: Path) -> Path | None:
    base = root.joinpath(*relative.split(".")) if relative else root
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


Imported = tuple[str, tuple[str, ...]]  # (module as written, resolved; names imported from it)


@dataclass(frozen=True)
class FileImports:
    """What one source file imports: at module level, anywhere, and inside each module-level function
    (with the module-level functions each one calls), plus its string constants."""

    top: tuple[Imported, ...]
    everywhere: tuple[Imported, ...]
    functions: dict[str, tuple[tuple[Imported, ...], frozenset[str]]]
    strings: frozenset[str]


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[Imported]:
    if isinstance(node, ast.Import):
        return [(a.name, ()) for a in node.names]
    if not node.level:
        return [(node.module or "", tuple(a.name for a in node.names))]
    parts = module.split(".")  # relative import: resolve against this module's package
    base = parts[: len(parts) - node.level + (1 if is_package else 0)]
    return [(".".join(base + ([node.module] if node.module else [])), tuple(a.name for a in node.names))]


def _scan(path: Path, module: str) -> FileImports:
    stat = path.stat()
    return _scan_cached(path, module, stat.st_mtime_ns, stat.st_size)


@functools.cache
def _scan_cached(path: Path, module: str, mtime_ns: int, size: int) -> FileImports:
    tree = ast.parse(path.read_bytes(), filename=str(path))
    package = path.name == "__init__.py"
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    top: list[Imported] = []
    everywhere: list[Imported] = []
    functions: dict[str, tuple[tuple[Imported, ...], frozenset[str]]] = {}
    strings: set[str] = set()
    for statement in tree.body:  # one walk of each top-level statement
        found: list[Imported] = []
        calls: set[str] = set()
        for n in ast.walk(statement):
            if isinstance(n, ast.Import | ast.ImportFrom):
                found += _imported(n, module, package)
            elif isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in defined:
                calls.add(n.func.id)
            elif isinstance(n, ast.Constant) and isinstance(n.value, str):
                strings.add(n.value)
        everywhere += found
        if isinstance(statement, ast.Import | ast.ImportFrom):
            top += found
        elif isinstance(statement, ast.FunctionDef):
            functions[statement.name] = (tuple(found), frozenset(calls))
    return FileImports(tuple(top), tuple(everywhere), functions, frozenset(strings))


def _handler_imports(scan: FileImports, handler: str, where: str) -> list[Imported]:
    """Imports inside ``handler`` and the module-level functions it calls (transitively)."""
    if handler not in scan.functions:
        raise CodeError(f"code_hash: {where} has no function {handler!r}")
    todo, seen, out = [handler], set(), []
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        found, calls = scan.functions[name]
        out += found
        todo += calls
    return out


def imports_of(module: str, root: Path = PACKAGE_ROOT, handler: str | None = None) -> set[str]:
    """The package modules ``module`` (or its command ``handler``) imports (rules: module docstring)."""
    path = module_file(module, root)
    if path is None:
        return set()
    scan = _scan(path, module)
    if module.startswith(CLI + "."):
        imported = list(scan.top) + (_handler_imports(scan, handler, module) if handler else [])
    else:
        imported = list(scan.everywhere)
    found: set[str] = set()
    for target, names in imported:
        if target.split(".")[0] != PACKAGE:
            continue
        found.add(target)
        found.update(f"{target}.{n}" for n in names if module_file(f"{target}.{n}", root) is not None)
    return found


def _resources(modules: Iterable[tuple[str, Path]], root: Path) -> set[Path]:
    folder = root / "resources"
    names = {p.name for p in folder.iterdir() if p.is_file()} if folder.is_dir() else set()
    return {folder / s for module, path in modules for s in _scan(path, module).strings & names}


def _split(entry: str) -> tuple[str, str | None]:
    module, _, handler = entry.partition(":")
    return module, handler or None


def closure(entries: Iterable[str], root: Path = PACKAGE_ROOT) -> list[Path]:
    """Every file the entry points run: package modules and the resources they name (sorted)."""
    starts = [_split(e) for e in entries]
    for module, _ in starts:
        if module_file(module, root) is None:
            raise CodeError(f"code_hash: no module {module!r} in {root}")
    chosen = {module for module, _ in starts}
    seen: set[str] = set()
    todo: list[tuple[str, str | None]] = list(starts)
    while todo:
        module, handler = todo.pop()
        if (module, handler) in seen or (handler is None and module in seen):
            continue
        seen.add(module if handler is None else (module, handler))  # type: ignore[arg-type]
        skip = DISPATCHERS.get(module, frozenset()) - chosen
        for dep in (imports_of(module, root, handler) - skip) | set(_parents(module)):
            if dep not in seen and module_file(dep, root) is not None:
                todo.append((dep, None))
    modules = {m if isinstance(m, str) else m[0] for m in seen}
    located = [(m, f) for m in modules if (f := module_file(m, root)) is not None]
    return sorted({f for _, f in located} | _resources(located, root))


def code_hash(*entries: str, root: Path = PACKAGE_ROOT) -> str:
    """sha256 (16 hex digits) over the relative paths and bytes of :func:`closure` of ``entries``."""
    digest = hashlib.sha256()
    for path in closure(entries, root):
        digest.update(str(path.relative_to(root.parent)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def job_entries() -> dict[str, tuple[str, ...]]:
    """The entry points of every kind of job the rules run, keyed ``<rule>`` or ``<rule>/<choice>``
    (``features/cxr``, ``train/gblend``, ``synth/mimic``): the single list the rule files use."""
    extract, train = "omnifuse.cli.extract:_cmd_extract", "omnifuse.cli.train:_cmd_train"
    return {
        "synth/mimic": ("omnifuse.cli.synth:_cmd_synth_mimic",),
        "synth/lung": ("omnifuse.cli.synth:_cmd_synth_lung",),
        "ehr_events": ("omnifuse.cli.ehr:_cmd_extract",),
        "cohort": ("omnifuse.cli.cohort:_cmd_cohort",),
        "ehr_features": ("omnifuse.cli.ehr:_cmd_features",),
        **{f"features/{m}": (extract, module) for m, module in INPUT_MODULES.items()},
        **{f"train/{name}": (train, f"omnifuse.methods.{name}") for name in METHOD_NAMES},
        "table": ("omnifuse.cli.report:_cmd_table",),
        "figure": ("omnifuse.cli.report:_cmd_figure",),
        "fig8": ("omnifuse.cli.report:_cmd_fig8",),
    }


def job_hashes(root: Path = PACKAGE_ROOT) -> dict[str, str]:
    """:func:`code_hash` of every kind of job (:func:`job_entries`)."""
    return {key: code_hash(*entries, root=root) for key, entries in job_entries().items()}
