"""Import circles in ``segpipe``: which modules import each other round in a loop, and which packages a
loop spans.

``python -m tests.tools.import_cycles`` prints every strongly connected component of segpipe's import
graph (a set of modules each reachable from every other through imports) with the packages it spans,
and exits 1 when one spans more than one package (``segpipe.jobs``, ``segpipe.stores``, a top-level
module such as ``segpipe.config`` ...): the architecture allows circles only inside one package.
`make contracts` runs it after import-linter. The graph is grimp's (import-linter's own), so it counts
imports inside functions too; imports under ``if TYPE_CHECKING:`` are left out, as they never run.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping

import grimp

ROOT = "segpipe"


def package_of(module: str) -> str:
    """``segpipe.jobs.sharding.runner`` → ``segpipe.jobs``; a top-level module is its own package."""
    return ".".join(module.split(".")[:2])


def components(edges: Mapping[str, Iterable[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[set[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work: list[tuple[str, list[str]]] = [(start, sorted(edges.get(start, ())))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, todo = work[-1]
            if todo:
                nxt = todo.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(edges.get(nxt, ()))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component: set[str] = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def import_graph(root: str = ROOT) -> dict[str, set[str]]:
    """Module → the modules of ``root`` it imports (at run time: TYPE_CHECKING imports left out)."""
    graph = grimp.build_graph(root, exclude_type_checking_imports=True)
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def report(edges: Mapping[str, Iterable[str]]) -> tuple[list[str], int]:
    """Printable lines for every circle, and how many span more than one package."""
    lines: list[str] = []
    spanning = 0
    for component in sorted(components(edges), key=lambda c: (-len(c), sorted(c))):
        packages = sorted({package_of(m) for m in component})
        wide = len(packages) > 1
        spanning += wide
        lines.append(f"{'SPANS PACKAGES' if wide else 'within one package'}: {len(component)} modules, "
                     f"packages {', '.join(packages)}")
        lines.extend(f"    {m}" for m in sorted(component))
    return lines, spanning


def main() -> int:
    lines, spanning = report(import_graph())
    print("\n".join(lines) if lines else "no import circles in segpipe")
    print(f"import circles spanning more than one package: {spanning}")
    return 1 if spanning else 0


if __name__ == "__main__":
    sys.exit(main())
