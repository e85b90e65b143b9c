"""dbt's selection syntax, applied to activations and resolved on the manifest's graph.

``-s "a b"`` is a union, ``a,b`` an intersection; an atom is ``[+]method:value[+]`` or a bare
name. Methods: ``exposure:``, ``tag:``, ``path:``, ``fqn:`` and a bare name (an activation, or a
model when a graph operator follows it). ``customers+`` selects the activations downstream of
the model ``customers``; ``+`` on the left adds ancestors (which are never activations, so it
only matters combined with other atoms). Nothing is re-parsed and no dbt file is written.
"""

from __future__ import annotations

import fnmatch
import re
from collections import deque
from collections.abc import Iterable, Sequence

from dbt_dinmo.errors import Problem
from dbt_dinmo.manifest import Exposure, Manifest

_ATOM = re.compile(r"^(?P<up>\d*\+)?(?P<body>[^+]+?)(?P<down>\+\d*)?$")
METHODS = ("exposure", "tag", "path", "fqn")


def select_activations(
    manifest: Manifest, select: Sequence[str], exclude: Sequence[str]
) -> tuple[list[Exposure], list[Problem]]:
    """Activations picked by ``select`` minus ``exclude`` (all when ``select`` is empty)."""
    activations = manifest.activations()
    problems: list[Problem] = []
    by_id = {e.unique_id: e for e in activations}
    chosen = set(by_id) if not select else set()
    for term in _terms(select):
        picked = _term(manifest, term, problems, "--select")
        if not picked & set(by_id) and not any(p.key == term for p in problems):
            problems.append(
                Problem(
                    "--select",
                    term,
                    "selects no activation.",
                    f"known activations: {', '.join(sorted(e.name for e in activations)) or 'none'}; "
                    "see `dbt-dinmo ls`.",
                )
            )
        chosen |= picked
    for term in _terms(exclude):
        chosen -= _term(manifest, term, problems, "--exclude")
    return [by_id[uid] for uid in sorted(chosen & set(by_id), key=lambda u: by_id[u].name)], problems


def _terms(values: Iterable[str]) -> list[str]:
    return [part for value in values for part in value.split() if part]


def _term(manifest: Manifest, term: str, problems: list[Problem], flag: str) -> set[str]:
    """An intersection of atoms separated by commas."""
    result: set[str] | None = None
    for atom in term.split(","):
        nodes = _atom(manifest, atom, problems, flag)
        result = nodes if result is None else result & nodes
    return result or set()


def _atom(manifest: Manifest, atom: str, problems: list[Problem], flag: str) -> set[str]:
    match = _ATOM.match(atom)
    if not match:
        problems.append(Problem(flag, atom, "is not a valid selector.", "e.g. tag:braze or customers+."))
        return set()
    body = match["body"]
    method, _, value = body.partition(":") if ":" in body else ("", "", body)
    if method and method not in METHODS:
        problems.append(
            Problem(flag, atom, f"unknown selector method {method!r}.", f"use one of: {', '.join(METHODS)}.")
        )
        return set()
    seeds = _seeds(manifest, method, value, graph=bool(match["up"] or match["down"]))
    nodes = set(seeds)
    if match["down"]:
        nodes |= _walk(manifest.child_map, seeds, _depth(match["down"]))
    if match["up"]:
        nodes |= _walk(manifest.parent_map, seeds, _depth(match["up"]))
    return nodes


def _seeds(manifest: Manifest, method: str, value: str, graph: bool) -> set[str]:
    exposures = manifest.exposures.values()
    if method == "tag":
        return {e.unique_id for e in exposures if value in e.tags} | {
            n.unique_id for n in manifest.nodes.values() if value in n.tags and graph
        }
    if method == "path":
        value = value.rstrip("/")
        return {
            e.unique_id
            for e in exposures
            if fnmatch.fnmatchcase(e.path, value) or e.path.startswith(value + "/") or e.path == value
        }
    if method == "fqn":
        return {e.unique_id for e in exposures if fnmatch.fnmatchcase(".".join(e.fqn), value)}
    found = {e.unique_id for e in exposures if fnmatch.fnmatchcase(e.name, value)}
    if not method:  # a bare name may also be a model, the start of a graph walk
        found |= {n.unique_id for n in manifest.nodes.values() if fnmatch.fnmatchcase(n.name, value)}
    return found


def _depth(operator: str) -> int | None:
    digits = operator.strip("+")
    return int(digits) if digits else None


def _walk(edges: dict[str, list[str]] | object, start: Iterable[str], depth: int | None) -> set[str]:
    graph: dict[str, list[str]] = edges  # type: ignore[assignment]
    seen: set[str] = set()
    queue = deque((node, 0) for node in start)
    while queue:
        node, level = queue.popleft()
        if depth is not None and level >= depth:
            continue
        for nxt in graph.get(node, ()):
            if nxt not in seen:
                seen.add(nxt)
                queue.append((nxt, level + 1))
    return seen
