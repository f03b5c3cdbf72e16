#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Imports run one way: no include cycle between the source directories, no header that
includes itself through others, and the downlink never reaches into the uplink.

Reads the #include "dir/file.h" lines of src/ and drivers/ (TBGW_SRCDIR, or the tree this
file is in). Exit 0 when the layout keeps its rules, 1 with one line per broken rule.
"""

import os
import re
import sys

SRCDIR = os.environ.get("TBGW_SRCDIR") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Directory pairs that include each other today, each with the reason. A new pair fails;
# one that no longer cycles is reported so that it can go from this list.
KNOWN_CYCLES = {
    frozenset({"src/core", "drivers"}): "the bus thread runs drivers; drivers use its tables",
    frozenset({"src/core", "src/config"}): "config validates against core's plan and budget",
}

# (directory, header prefix): files under the directory may not include these.
FORBIDDEN = [
    ("src/downlink", "uplink/"),  # the downlink sees the uplink only through downlink/port.h
    ("src/core", "uplink/"),
    ("src/config", "uplink/"),    # config knows ThingsBoard's limit strings from tb/, not the uplink
    ("src/tb", "uplink/"),
    ("src/core", "downlink/"),
    ("src/spool", "uplink/"),
    ("src/spool", "downlink/"),
]

INCLUDE = re.compile(r'^\s*#\s*include\s+"([a-z0-9_-]+/[^"]+)"', re.M)


def sources():
    for top in ("src", "drivers"):
        for root, _dirs, files in os.walk(os.path.join(SRCDIR, top)):
            for f in files:
                if f.endswith((".c", ".h")):
                    path = os.path.join(root, f)
                    yield os.path.relpath(path, SRCDIR)


def directory_of_header(inc):
    """"tb/pacing.h" -> "src/uplink"; "drivers/driver.h" -> "drivers"."""
    first = inc.split("/")[0]
    return "drivers" if first == "drivers" else "src/" + first


def header_path(inc):
    return inc if inc.startswith("drivers/") else "src/" + inc


def main():
    includes = {}
    for path in sources():
        with open(os.path.join(SRCDIR, path), encoding="utf-8") as f:
            includes[path] = INCLUDE.findall(f.read())

    errors = []

    # Directory graph: edges[a][b] = the files of a that include something of b.
    edges = {}
    for path, incs in includes.items():
        here = os.path.dirname(path)
        if here == "src":
            continue  # main.c, gateway.c and tbgwctl.c sit on top of everything
        for inc in incs:
            there = directory_of_header(inc)
            if there != here:
                edges.setdefault(here, {}).setdefault(there, set()).add(f"{path} -> {inc}")

    seen = set()
    for a, outs in edges.items():
        for b in outs:
            pair = frozenset({a, b})
            if pair in seen or a not in edges.get(b, {}):
                continue
            seen.add(pair)
            if pair not in KNOWN_CYCLES:
                both = sorted(edges[a][b]) + sorted(edges[b][a])
                errors.append(f"{a} and {b} include each other: " + "; ".join(both))
    for pair in KNOWN_CYCLES:
        if pair not in seen:
            print(f"note: {' and '.join(sorted(pair))} no longer include each other; "
                  "drop them from KNOWN_CYCLES")

    for path, incs in includes.items():
        for directory, prefix in FORBIDDEN:
            if path.startswith(directory + "/"):
                for inc in incs:
                    if inc.startswith(prefix):
                        errors.append(f"{path} includes {inc}")

    # Header cycles (include guards hide them from the compiler).
    def visit(h, stack):
        if h in stack:
            return stack[stack.index(h):] + [h]
        for inc in includes.get(h, []):
            cycle = visit(header_path(inc), stack + [h])
            if cycle:
                return cycle
        return None

    cycles = set()
    for h in includes:
        if h.endswith(".h"):
            cycle = visit(h, [])
            if cycle:
                cycles.add(" -> ".join(cycle))
    errors += [f"header cycle: {c}" for c in sorted(cycles)]

    for e in errors:
        print(e)
    print(f"{len(includes)} files, {sum(len(v) for v in edges.values())} directory edges, "
          f"{len(errors)} broken rules")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
