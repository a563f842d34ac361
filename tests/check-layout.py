#!/usr/bin/python3
"""check-layout.py - the tree keeps one room per concept.

    check-layout.py SOURCE_ROOT

Fails (exit 1), naming each, on:
- a .c file outside tests/ longer than 900 lines: split it by concept;
- a function longer than 120 lines with fewer than one comment line of
  its own per 80 lines: mark its phases with one-line banners, or split
  it.
Functions are found by layout (clang-format's: a definition starts at
column 0 and its body ends with a `}` alone at column 0).
"""
import os
import re
import sys

MAX_FILE_LINES = 900
MAX_FUNCTION_LINES = 120
LINES_PER_BANNER = 80
FOLDERS = ("core", "predictors", "daemon", "tailorctl")
NOT_A_FUNCTION = re.compile(r"^(typedef\s+|static\s+|const\s+)*(struct|enum|union)\b[^(]*\{$")


def functions(lines):
    """(name, first line, body lines) of each function definition."""
    i = 0
    while i < len(lines):
        line = lines[i]
        opens = line.endswith("{") and "=" not in line and not NOT_A_FUNCTION.match(line)
        if opens and not line.startswith((" ", "\t", "#", "/", "*")) or \
                (line.endswith(") {") and line.startswith(" ")):
            start = i
            while start > 0 and lines[start].startswith(" ") and lines[start - 1] and \
                    not lines[start - 1].endswith((";", "}", "*/")):
                start -= 1
            if not lines[start].startswith((" ", "\t")):
                end = i + 1
                while end < len(lines) and lines[end] != "}":
                    end += 1
                name = re.search(r"(\w+)\s*\(", " ".join(lines[start:i + 1]))
                yield (name.group(1) if name else "?"), start + 1, lines[i + 1:end]
                i = end
        i += 1


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().split("\n\n")[1])
    root = sys.argv[1]
    problems = []
    for folder in FOLDERS:
        for dirpath, _, names in os.walk(os.path.join(root, folder)):
            for n in sorted(names):
                if not n.endswith(".c"):
                    continue
                path = os.path.join(dirpath, n)
                rel = os.path.relpath(path, root)
                with open(path) as fh:
                    lines = fh.read().split("\n")
                if len(lines) - 1 > MAX_FILE_LINES:
                    problems.append(f"{rel}: {len(lines) - 1} lines, over {MAX_FILE_LINES}: "
                                    f"split it by concept")
                for name, first, body in functions(lines):
                    if len(body) <= MAX_FUNCTION_LINES:
                        continue
                    comments = sum(1 for b in body if re.match(r"^\s+/[*/]", b))
                    want = len(body) // LINES_PER_BANNER
                    if comments < want:
                        problems.append(f"{rel}:{first}: {name} is {len(body)} lines with "
                                        f"{comments} comment lines (want {want}): mark its "
                                        f"phases or split it")
    for p in problems:
        print(f"check-layout: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
