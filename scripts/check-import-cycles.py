#!/usr/bin/env python3
"""House rule: no import cycle between the files of one crate (data flows one way).

For every crate's `src/`, each top-level file `x.rs` is a module; an edge x -> y is any
`crate::y` path in x outside its `#[cfg(test)] mod tests` (including `use crate::{y::...}`
groups). Prints every cycle and exits 1 when there is one. Submodule folders (`x/*.rs`) belong to
their parent and are not checked against each other. Run by scripts/test.sh after clippy.
"""
import glob
import os
import re
import sys


def crate_sources(root):
    for manifest in glob.glob(os.path.join(root, "**", "Cargo.toml"), recursive=True):
        parts = manifest.split(os.sep)
        if "target" in parts or "fuzz" in parts or ".cache" in parts:
            continue
        src = os.path.join(os.path.dirname(manifest), "src")
        if os.path.isdir(src):
            yield src


def edges_of(src):
    modules = {os.path.basename(f)[:-3]: f for f in glob.glob(os.path.join(src, "*.rs"))}
    modules.pop("lib", None)
    modules.pop("main", None)
    edges = {name: set() for name in modules}
    for name, path in modules.items():
        text = re.split(r"#\[cfg\(test\)\]\s*mod tests", open(path, encoding="utf-8").read())[0]
        for line in text.splitlines():
            if line.strip().startswith("//"):
                continue
            targets = set(re.findall(r"crate::([a-z_0-9]+)", line))
            group = re.match(r"\s*(pub(\(crate\))?\s+)?use crate::\{(.*)", line)
            if group:
                targets |= set(re.findall(r"([a-z_0-9]+)::", group.group(3)))
            edges[name] |= {target for target in targets if target in modules and target != name}
    return edges


def cycles(edges):
    state, stack, found = {}, [], set()

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                found.add(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return sorted(found)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    problems = [f"{src}: {cycle}" for src in sorted(crate_sources(root)) for cycle in cycles(edges_of(src))]
    for problem in problems:
        print(f"import cycle in {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
