#!/usr/bin/env python3
"""Structure checks on src/ that rustc and clippy do not make.

1. No import cycle among the files of src/: file A depends on file B when
   A names `crate::...` or `super::...` resolving to B, outside comments
   and `#[cfg(test)]` items. A cycle is a strongly connected group of two
   or more files.
2. No function longer than MAX_LINES lines, and no
   `allow(clippy::too_many_lines)`.
3. No platform cfg (`target_os`, `target_vendor`, `target_family`)
   outside src/sys/ and build.rs.

Prints each finding and exits 1 if there is any.
Usage: python3 ci/structure.py [SRC_DIR]
"""
import os
import re
import sys

MAX_LINES = 80


def source_files(root):
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(folder, name)
            parts = os.path.relpath(path, root)[:-3].split(os.sep)
            if parts[-1] in ("mod", "lib"):
                parts = parts[:-1]
            found[tuple(parts)] = path
    return found


def without_tests_and_comments(text):
    """The text with `#[cfg(test)]` items and `//` comments blanked out."""
    lines = text.split("\n")
    kept = []
    skipping, depth, opened = False, 0, False
    for line in lines:
        if not skipping and re.match(r"\s*#\[cfg\((all\()?test\b", line):
            skipping, depth, opened = True, 0, False
            kept.append("")
            continue
        if skipping:
            depth += line.count("{") - line.count("}")
            opened = opened or "{" in line
            if (opened and depth <= 0) or (not opened and line.rstrip().endswith(";")):
                skipping = False
            kept.append("")
            continue
        kept.append(line.split("//")[0])
    return "\n".join(kept)


def module_of(key, path, names):
    """Resolves `crate::a::b` or `super::a` names used in `key`'s file."""
    targets = set()
    text = without_tests_and_comments(open(path).read())
    is_dir_module = os.path.basename(path) in ("mod.rs", "lib.rs")
    for m in re.finditer(r"\b(crate|super)((?:::\w+)+)(?:::\{([^}]*)\})?", text):
        head, tail, group = m.group(1), m.group(2), m.group(3)
        path_parts = [p for p in tail.split("::") if p]
        if head == "super":
            base = list(key) if is_dir_module else list(key[:-1])
            path_parts = base[:-1] + path_parts if is_dir_module else base + path_parts
        candidates = [path_parts]
        if group:
            for item in group.split(","):
                item = item.strip().split(" as ")[0]
                if item and item != "self":
                    candidates.append(path_parts + [x for x in item.split("::") if x])
        for cand in candidates:
            for k in range(len(cand), 0, -1):
                if tuple(cand[:k]) in names:
                    if tuple(cand[:k]) != key:
                        targets.add(tuple(cand[:k]))
                    break
    return targets


def cycles(files):
    graph = {key: module_of(key, path, files) for key, path in files.items()}
    index, low, stack, on_stack, groups = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted("/".join(g) or "lib" for g in group))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return groups


def long_functions(path):
    findings = []
    lines = open(path).read().split("\n")
    for i, line in enumerate(lines):
        if "too_many_lines" in line and "allow" in line:
            findings.append(f"{path}:{i + 1}: allow(too_many_lines)")
        m = re.match(r"\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?(extern \"C\"\s+)?fn\s+(\w+)", line)
        if not m:
            continue
        depth, opened, end = 0, False, None
        for j in range(i, len(lines)):
            code = lines[j].split("//")[0]
            if not opened and code.rstrip().endswith(";") and "{" not in code:
                break
            depth += code.count("{") - code.count("}")
            opened = opened or "{" in code
            if opened and depth <= 0:
                end = j
                break
        if end is not None and end - i + 1 > MAX_LINES:
            findings.append(f"{path}:{i + 1}: fn {m.group(7)} is {end - i + 1} lines (max {MAX_LINES})")
    return findings


def platform_cfgs(root):
    findings = []
    for folder, _, names in os.walk(root):
        rel = os.path.relpath(folder, root)
        if rel == "sys" or rel.startswith("sys" + os.sep):
            continue
        for name in names:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(folder, name)
            for i, line in enumerate(open(path).read().split("\n")):
                if re.search(r"\btarget_(os|vendor|family)\b", line):
                    findings.append(f"{path}:{i + 1}: platform cfg outside sys/: {line.strip()}")
    return findings


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "src"
    files = source_files(root)
    findings = [f"import cycle: {' <-> '.join(g)}" for g in cycles(files)]
    for path in files.values():
        findings += long_functions(path)
    findings += platform_cfgs(root)
    for f in findings:
        print(f)
    print(f"structure: {len(files)} files, {len(findings)} findings")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
