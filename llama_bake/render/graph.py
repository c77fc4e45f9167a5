"""``BakePlan`` -> the target graph: a text tree for the terminal, Mermaid, or Graphviz DOT. Pure.

Edges point from what is used to what uses it: OS/CUDA images and the llama.cpp source into a base, a base
into its models.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from llama_bake.plan.ir import BakePlan, Target


@dataclass(frozen=True)
class Node:
    id: str
    label: str
    kind: str  # image, source, base, model


def _inputs(target: Target) -> list[tuple[str, str]]:
    """(label, kind) of what a base is built from, overrides shown as such."""
    contexts = dict(target.contexts)
    out: list[tuple[str, str]] = []
    for image in target.from_images:
        out.append((f"{image} (from {contexts[image]})" if image in contexts else image, "image"))
    ref, source = target.llama_cpp
    out.append((f"llama.cpp {ref}: {source}", "source"))
    return out


def graph(plan: BakePlan) -> tuple[list[Node], list[tuple[str, str]]]:
    """Nodes and edges, in a stable order: bases sorted, then their inputs, then their models."""
    nodes: dict[str, Node] = {}
    edges: list[tuple[str, str]] = []

    def node(label: str, kind: str) -> str:
        key = f"{kind}:{label}"
        if key not in nodes:
            nodes[key] = Node(f"n{len(nodes)}", label, kind)
        return nodes[key].id

    for base in (t for t in plan.targets if t.kind == "base"):
        base_id = node(base.name, "base")
        for label, kind in _inputs(base):
            edges.append((node(label, kind), base_id))
        for model in (t for t in plan.targets if t.base == base.name):
            edges.append((base_id, node(model.name, "model")))
    return list(nodes.values()), edges


def render_text(plan: BakePlan) -> str:
    lines: list[str] = []
    for base in (t for t in plan.targets if t.kind == "base"):
        platforms = ", ".join(base.platforms)
        lines.append(f"{base.name}  [{base.description}; {platforms}]  -> {plan.value_of(base.image)}")
        for label, kind in _inputs(base):
            lines.append(f"│   {'image ' if kind == 'image' else ''}{label}")
        models = [t for t in plan.targets if t.base == base.name]
        for i, model in enumerate(models):
            branch = "└──" if i == len(models) - 1 else "├──"
            lines.append(f"{branch} {model.name}  -> {plan.value_of(model.image)}")
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def _mermaid_label(text: str) -> str:
    # Mermaid's quoted labels take entity codes for the characters that would end or break them.
    return text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def render_mermaid(plan: BakePlan) -> str:
    nodes, edges = graph(plan)
    shapes = {"image": ('[("', '")]'), "source": ('[/"', '"/]'), "base": ('[["', '"]]'), "model": ('["', '"]')}
    lines = ["flowchart LR"]
    for n in nodes:
        opening, closing = shapes[n.kind]
        lines.append(f"    {n.id}{opening}{_mermaid_label(n.label)}{closing}")
    lines += [f"    {a} --> {b}" for a, b in edges]
    return "\n".join(lines) + "\n"


def _dot_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def render_dot(plan: BakePlan) -> str:
    nodes, edges = graph(plan)
    shapes = {"image": "cylinder", "source": "folder", "base": "box3d", "model": "box"}
    lines = ["digraph llama_bake {", "    rankdir=LR;", "    node [fontname=Helvetica];"]
    for n in nodes:
        lines.append(f"    {n.id} [label={_dot_string(n.label)}, shape={shapes[n.kind]}];")
    lines += [f"    {a} -> {b};" for a, b in edges]
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_json(plan: BakePlan) -> str:
    """``{"nodes": [{"id", "label", "kind"}], "edges": [[from_id, to_id]]}``; kinds: image, source, base, model."""
    nodes, edges = graph(plan)
    data = {"nodes": [{"id": n.id, "label": n.label, "kind": n.kind} for n in nodes], "edges": [list(e) for e in edges]}
    return json.dumps(data, indent=2) + "\n"


def render(plan: BakePlan, fmt: str) -> str:
    return {"text": render_text, "mermaid": render_mermaid, "dot": render_dot, "json": render_json}[fmt](plan)
