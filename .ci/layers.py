#!/usr/bin/env python3
"""Checks that no two source files of a crate import each other, directly or through others.

Reads every `crate::…` and `super::…` path in each crate's src/ (use lines and inline
paths, tests excluded), resolves it to the file of the module it names, and reports every
cycle of the file graph (its strongly connected components). Exit 1 when there is one.
Usage: .ci/layers.py [crate dirs...]   (default: core router gateway loadtest sim)
"""
import os
import re
import sys


def module_files(src):
    """Map module path tuple -> file, for every .rs file under src."""
    mods = {}
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(root, f)
            rel = os.path.relpath(path, src)[:-3].split(os.sep)
            if rel[-1] in ("lib", "main") and len(rel) == 1:
                rel = []
            elif rel[-1] == "mod":
                rel = rel[:-1]
            mods[tuple(rel)] = path
    return mods


def strip_tests(text):
    """Drops `#[cfg(test)] mod … { … }` blocks and comments."""
    text = re.sub(r"//[^\n]*", "", text)
    out, i = [], 0
    while True:
        m = re.search(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*\{", text[i:])
        if not m:
            out.append(text[i:])
            break
        start = i + m.start()
        out.append(text[i:start])
        depth, j = 0, i + m.end() - 1
        while j < len(text):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        i = j + 1
    return "".join(out)


def expand_use(text):
    """Yields every path named in `use` trees and inline `crate::`/`super::` paths."""
    # A `use` item starts its line (after `pub` or `pub(crate)`): the word in a message
    # or a comment ("use username_file and …") is not one.
    for m in re.finditer(r"^\s*(?:pub(?:\([^)]*\))?\s+)?use\s+([^;]+);", text, re.M):
        tree = re.sub(r"\s+", "", m.group(1))
        yield from flatten(tree)
    for m in re.finditer(r"(?<![\w:])((?:crate|super)(?:::\w+)+)", text):
        yield m.group(1)


def flatten(tree, prefix=""):
    depth, start = 0, None
    if "{" not in tree:
        yield prefix + tree.split(" as ")[0]
        return
    head = tree[: tree.index("{")]
    body = tree[tree.index("{") + 1 : tree.rindex("}")]
    parts, depth, cur = [], 0, ""
    for ch in body:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    if cur:
        parts.append(cur)
    for p in parts:
        yield from flatten(p, prefix + head)


def resolve(path, here, mods):
    parts = path.split("::")
    if parts[0] == "crate":
        base, rest = [], parts[1:]
    elif parts[0] == "super":
        base = list(here)
        rest = parts
        while rest and rest[0] == "super":
            base = base[:-1]
            rest = rest[1:]
    else:
        return None
    best = None
    cur = list(base)
    if tuple(cur) in mods:
        best = tuple(cur)
    for p in rest:
        cur.append(p)
        if tuple(cur) in mods:
            best = tuple(cur)
        else:
            break
    return best


def check(crate):
    src = os.path.join(crate, "src")
    mods = module_files(src)
    edges = {m: set() for m in mods}
    for mod, path in mods.items():
        if mod and mod[-1] == "tests":
            continue  # unit tests of their parent, compiled only for `cargo test`
        # A file's own module for `super::`: a mod.rs is its directory's module.
        here = mod
        with open(path, encoding="utf-8") as f:
            text = strip_tests(f.read())
        children = {k[-1] for k in mods if len(k) == len(mod) + 1 and k[:-1] == mod}
        named = list(expand_use(text))
        for child in children:
            # Inline `child::item` paths (`use child::…` trees come from expand_use).
            for m in re.finditer(r"(?<![\w:])" + child + r"((?:::\w+)+)", text):
                named.append(child + m.group(1))
        for used in named:
            first = used.split("::")[0]
            if first == "self" or first in children:
                rest = used.split("::")[1:] if first == "self" else used.split("::")
                used = "crate::" + "::".join(list(mod) + rest)
            target = resolve(used, here, mods)
            if target is not None and target != mod and target != ():
                # A child naming its parent module's items is not a layer edge when the
                # parent is only a folder of declarations; keep it: parents are files too.
                edges[mod].add(target)
    return find_cycles(edges, mods)


def find_cycles(edges, mods):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index:
            visit(v)
    return [[mods[m] for m in comp] for comp in out]


def main():
    crates = sys.argv[1:] or ["core", "router", "gateway", "loadtest", "sim"]
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    bad = False
    for crate in crates:
        for comp in check(os.path.join(root, crate)):
            bad = True
            names = ", ".join(os.path.relpath(p, root) for p in comp)
            print(f"import cycle in {crate}: {names}")
    if not bad:
        print("layers: no import cycle between files in " + ", ".join(crates))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
