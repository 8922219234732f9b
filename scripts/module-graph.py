#!/usr/bin/env python3
"""Which modules of src-tauri/ use which, from the `crate::` paths in the code (tests excluded).

  scripts/module-graph.py            cycles between top-level modules and between files
  scripts/module-graph.py --edges    every top-level arrow with the files that make it

Exits 1 when a cycle exists. Run it from the project root. It reads text; it does not build."""
import os, re, sys
from collections import defaultdict

ROOT = "src-tauri"
USE = re.compile(r"\bcrate::((?:[a-z_][a-z0-9_]*::)*[a-z_][a-z0-9_]*)")
SUPER = re.compile(r"\bsuper::((?:[a-z_][a-z0-9_]*::)*[a-z_][a-z0-9_]*)")
GROUP = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)::\{([^;]*?)\}", re.S)

def files():
    for d, _, fs in os.walk(ROOT):
        for f in fs:
            p = os.path.join(d, f)
            if f.endswith(".rs") and "/tests/" not in p + "/" and not f.endswith("tests.rs"):
                yield p

def module_of(path):  # src-tauri/engine/runner/mod.rs -> engine::runner
    parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
    if parts[-1] == "mod": parts = parts[:-1]
    return "::".join(parts)

mods = {module_of(p): p for p in files()}
def resolve(path):  # longest known module prefix of a crate:: path
    segs = path.split("::")
    for n in range(len(segs), 0, -1):
        m = "::".join(segs[:n])
        if m in mods: return m
    return None

file_edges, top_edges = defaultdict(set), defaultdict(lambda: defaultdict(set))
for m, p in mods.items():
    text = open(p, encoding="utf-8", errors="replace").read()
    text = re.sub(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{.*", "", text, flags=re.S)  # inline test modules (at the end, by convention)
    paths = [u for u in USE.findall(text)]
    parent = "::".join(m.split("::")[:-1])  # `super::x` in module a::b is a::x
    for u in SUPER.findall(text):
        paths.append((parent + "::" + u) if parent else u)
    for head, body in GROUP.findall(text):
        for item in re.split(r"[,\s]+", body):
            item = item.strip("{} ")
            if item and item[0].islower(): paths.append(head + "::" + item.split("::{")[0])
    for u in paths:
        t = resolve(u)
        if t and t != m and not m.startswith(t + "::") and not t.startswith(m + "::"):
            file_edges[m].add(t)
            a, b = m.split("::")[0], t.split("::")[0]
            if a != b: top_edges[a][b].add(f"{p} -> {mods[t]}")

def cycles(graph):
    index, low, stack, on, out, i = {}, {}, [], set(), [], [0]
    def visit(v):
        index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
        for w in graph.get(v, ()):
            if w not in index: visit(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            c = []
            while True:
                w = stack.pop(); on.discard(w); c.append(w)
                if w == v: break
            if len(c) > 1: out.append(sorted(c))
    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index: visit(v)
    return out

top = {a: set(bs) for a, bs in top_edges.items()}
if "--edges" in sys.argv:
    for a in sorted(top_edges):
        for b in sorted(top_edges[a]):
            print(f"{a} -> {b}  ({len(top_edges[a][b])}): " + "; ".join(sorted(top_edges[a][b])[:3]))
tc, fc = cycles(top), cycles(file_edges)
for c in tc:
    print("module cycle: " + " <-> ".join(c))
    for a in c:
        for b in c:
            if b in top_edges.get(a, {}): print(f"    {a} -> {b}: " + "; ".join(sorted(top_edges[a][b])[:4]))
for c in fc:
    print("file cycle: " + " <-> ".join(c))
print(f"{len(mods)} modules, {sum(len(v) for v in top.values())} arrows between top-level modules, "
      f"{len(tc)} module cycles, {len(fc)} file cycles")
sys.exit(1 if tc or fc else 0)
