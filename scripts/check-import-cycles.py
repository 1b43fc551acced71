#!/usr/bin/env python3
"""House rule: no import cycle between the files of one crate (data flows one way).

Every `.rs` file under a crate's `src/` is a module (`a/b.rs` and `a/b/mod.rs` are `a::b`;
`lib.rs`/`main.rs` are the root and not checked). An edge x -> y is a path to y in x outside its
`#[cfg(test)] mod tests`: `crate::y::...`, `super::...` and `self::...` paths, in code or in `use`
trees (`use crate::{a::B, c::{D, E}}`), resolved to the deepest module that is a file. Re-exports
(`pub use` / `pub(crate) use`) are a module's facade, not a dependency, and are not edges. Prints
every cycle and exits 1 when there is one. Run by scripts/test.sh after clippy.
"""
import glob
import os
import re
import sys


def crate_sources(root):
    for manifest in glob.glob(os.path.join(root, "**", "Cargo.toml"), recursive=True):
        parts = manifest.split(os.sep)
        if "target" in parts or "fuzz" in parts or ".cache" in parts or "node_modules" in parts:
            continue
        src = os.path.join(os.path.dirname(manifest), "src")
        if os.path.isdir(src):
            yield src


def module_of(src, path):
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] == "mod":
        rel = rel[:-1]
    if rel in (["lib"], ["main"]) or (len(rel) == 1 and rel[0] in ("lib", "main")):
        return ()
    if rel and rel[0] == "bin":
        return None
    return tuple(rel)


def expand_use_tree(tree):
    """`a::{b::C, d}` -> [['a','b','C'], ['a','d']]."""
    tree = tree.strip()
    depth, start = 0, None
    for i, ch in enumerate(tree):
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}":
            depth -= 1
    if start is None:
        return [[part.strip() for part in tree.split(" as ")[0].split("::") if part.strip()]]
    prefix = [part for part in tree[:start].split("::") if part.strip()]
    inner = tree[start + 1 : tree.rindex("}")]
    items, depth, current = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            items.append(current)
            current = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        current += ch
    items.append(current)
    out = []
    for item in items:
        if item.strip():
            for path in expand_use_tree(item):
                out.append(prefix + path)
    return out


def resolve(path, here, modules):
    """The deepest file module that the path `path` (as written in module `here`) names."""
    if not path:
        return None
    if path[0] == "crate":
        absolute = list(path[1:])
    elif path[0] == "super":
        base = list(here)
        while path and path[0] == "super":
            base = base[:-1]
            path = path[1:]
        absolute = base + list(path)
    elif path[0] == "self":
        absolute = list(here) + list(path[1:])
    else:
        # A bare path in a `use` names a child module of `here` (2018 paths) when one exists.
        absolute = list(here) + list(path)
        if tuple(absolute[: len(here) + 1]) not in modules:
            return None
    best = None
    for n in range(1, len(absolute) + 1):
        if tuple(absolute[:n]) in modules:
            best = tuple(absolute[:n])
    return best


def edges_of(src):
    modules = {}
    for path in glob.glob(os.path.join(src, "**", "*.rs"), recursive=True):
        module = module_of(src, path)
        if module:
            modules[module] = path
    edges = {name: set() for name in modules}
    for name, path in modules.items():
        text = re.split(r"#\[cfg\(test\)\]\s*mod tests", open(path, encoding="utf-8").read())[0]
        text = "\n".join(line for line in text.splitlines() if not line.strip().startswith("//"))
        targets = set()
        for match in re.finditer(r"(?m)^\s*(pub(\([a-z]+\))?\s+)?use\s+([^;]*);", text):
            if match.group(1):
                continue
            for use_path in expand_use_tree(match.group(3)):
                targets.add(resolve(use_path, name, modules))
        code = re.sub(r"(?m)^\s*(pub(\([a-z]+\))?\s+)?use\s+[^;]*;", "", text)
        for match in re.finditer(r"\b((?:crate|super|self)(?:::[A-Za-z_0-9]+)+)", code):
            targets.add(resolve(match.group(1).split("::"), name, modules))
        edges[name] |= {t for t in targets if t and t != name}
    return {"::".join(k): {"::".join(t) for t in v} for k, v in edges.items()}


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
