"""What a result was made from: the package code a function runs, and the files a stage left behind.

Code is hashed by meaning: a syntax tree without docstrings (comments are not in the tree), so a prose
edit keeps every cache and an edit of what runs invalidates what depends on it.
"""
from __future__ import annotations

import ast
import dis
import hashlib
import importlib.util
import inspect
import textwrap
import types
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path

PACKAGE = __name__.split(".")[0]
# Config values enter every cache key by value (the sections a stage reads), so the module declaring them
# is not hashed as code: adding an option re-runs only the stages that read its section.
NOT_CODE = {f"{PACKAGE}.config"}


def _digest(tree: ast.AST) -> str:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()[:16]


def _module_file(name: str) -> Path:
    return Path(importlib.util.find_spec(name).origin)


@cache
def _source(name: str) -> str:
    return _module_file(name).read_text()


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _imports(name: str) -> set[str]:
    """The package's modules that module `name` imports, absolutely or relatively."""
    package = name if _module_file(name).name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(_source(name))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            found |= {base} | {f"{base}.{a.name}" for a in node.names}  # `from . import module` too
    return {m for m in found if m.split(".")[0] == PACKAGE and _is_module(m)}


def module_closure(names: Iterable[str]) -> set[str]:
    """The package modules `names` import, directly or through each other, themselves included."""
    todo, seen = list(names), set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += _imports(name)
    return seen - NOT_CODE


def _globals_used(code: types.CodeType) -> set[str]:
    """Global names a function's code (nested functions included) loads; attribute names are not globals."""
    names = {i.argval for i in dis.get_instructions(code) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _globals_used(const)
    return names


def code_digests(fn: Callable) -> dict[str, str]:
    """Digest of a function's own code, of the functions of its module it calls, and of every package module
    it reaches through the names they use: a stage function in a module of many stages depends on what it
    calls, not on its neighbours."""
    digests, modules, todo = {}, set(), [fn]
    while todo:
        f = todo.pop()
        name = f"{f.__module__}.{f.__qualname__}"
        if name in digests:
            continue
        digests[name] = _digest(ast.parse(textwrap.dedent(inspect.getsource(f))))
        for obj in (f.__globals__[n] for n in _globals_used(f.__code__) if n in f.__globals__):
            if inspect.isfunction(obj) and obj.__module__ == fn.__module__:
                todo.append(obj)
            else:
                modules.add(obj.__name__ if inspect.ismodule(obj) else getattr(obj, "__module__", None))
    reached = module_closure(m for m in modules if m and m.split(".")[0] == PACKAGE and m != fn.__module__)
    digests |= {m: _digest(ast.parse(_source(m))) for m in reached}
    return dict(sorted(digests.items()))


def fingerprint(paths: Iterable[Path]) -> dict[str, list[int] | None]:
    """Size and modification time of every file under `paths` (None for a missing path): a stage's outputs
    as it left them, so that a later rewrite by anything else is noticed."""
    out: dict[str, list[int] | None] = {}
    for path in paths:
        if not path.exists():
            out[str(path)] = None
        for f in sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]:
            if f.exists():
                stat = f.stat()
                out[str(f)] = [stat.st_size, stat.st_mtime_ns]
    return out
