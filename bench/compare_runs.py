#!/usr/bin/env python3
"""Compares the run directories of two trees of wsml-train runs (e.g. two `make demo`
outputs, build/demo, before and after a change that must not change the numbers).

  python3 bench/compare_runs.py OLD_DIR NEW_DIR

Every run.jsonl below OLD_DIR (found by path relative to it) must exist below NEW_DIR with
the same number of lines, the same keys in each line and the same value for every key,
numbers to the last digit (as written: 17 significant digits), except the wall-clock
fields (time_s, step_s, images_per_s, gpu_idle_frac). Also compares the *.csv tables
found at the top of both directories, byte for byte. Prints one line per run and a
summary; exit status 0 when everything is identical, 1 otherwise.
"""
import json
import os
import sys

WALL_CLOCK = {"time_s", "step_s", "images_per_s", "gpu_idle_frac"}


def run_files(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        if "run.jsonl" in files:
            out[os.path.relpath(dirpath, root)] = os.path.join(dirpath, "run.jsonl")
    return out


def lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def compare_run(old, new):
    """Returns (number of numeric values compared, list of differences)."""
    a, b = lines(old), lines(new)
    diffs, numbers = [], 0
    if len(a) != len(b):
        diffs.append("%d lines vs %d" % (len(a), len(b)))
    for i, (x, y) in enumerate(zip(a, b)):
        if set(x) != set(y):
            diffs.append("line %d: keys differ: %s" % (i + 1, sorted(set(x) ^ set(y))))
        for k in x:
            if k in WALL_CLOCK or k not in y:
                continue
            if isinstance(x[k], (int, float)) and not isinstance(x[k], bool):
                numbers += 1
            if x[k] != y[k]:
                diffs.append("line %d: %s = %r vs %r" % (i + 1, k, x[k], y[k]))
    return numbers, diffs


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    old_root, new_root = sys.argv[1], sys.argv[2]
    old_runs, new_runs = run_files(old_root), run_files(new_root)
    if not old_runs:
        sys.exit("%s: no run.jsonl found" % old_root)
    bad = 0
    total = 0
    for name in sorted(old_runs):
        if name not in new_runs:
            print("MISSING %s" % name)
            bad += 1
            continue
        numbers, diffs = compare_run(old_runs[name], new_runs[name])
        total += numbers
        print("%s %s: %d numbers%s" % ("DIFF" if diffs else "same", name, numbers,
                                      "".join("\n    " + d for d in diffs[:10])))
        bad += bool(diffs)
    for f in sorted(os.listdir(old_root)):
        if f.endswith(".csv"):
            a = open(os.path.join(old_root, f), "rb").read()
            b_path = os.path.join(new_root, f)
            same = os.path.exists(b_path) and open(b_path, "rb").read() == a
            print("%s %s" % ("same" if same else "DIFF", f))
            bad += not same
    print("%d runs, %d numbers compared, %d differences" % (len(old_runs), total, bad))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
