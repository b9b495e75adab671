"""Kill rate of a mutmut run, per package, from `mutmut results --all true` on stdin.

Mutants no test reaches ("no tests") and those skipped are counted apart: they say nothing about
the tests' strength, only about what the run covered.
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict

KILLED = {"killed", "timeout", "segfault"}
COUNTED = KILLED | {"survived", "suspicious"}


def main() -> int:
    by_package: dict[str, Counter[str]] = defaultdict(Counter)
    survivors: list[str] = []
    for line in sys.stdin:
        name, sep, status = line.strip().rpartition(": ")
        if not sep:
            continue
        package = ".".join(name.split(".")[:2])
        by_package[package][status] += 1
        if status == "survived":
            survivors.append(name)
    total: Counter[str] = Counter()
    print(f"{'module':<32} {'killed':>7} {'survived':>9} {'kill rate':>10} {'not run':>8}")
    for package, counts in sorted(by_package.items()):
        total.update(counts)
        _row(package, counts)
    _row("all", total)
    if survivors:
        print(f"\n{len(survivors)} survivors (mutmut show <name> shows the change):")
        print("\n".join(f"  {name}" for name in survivors))
    return 0


def _row(package: str, counts: Counter[str]) -> None:
    killed = sum(counts[s] for s in KILLED)
    counted = sum(counts[s] for s in COUNTED)
    rate = f"{100 * killed / counted:.1f} %" if counted else "-"
    not_run = sum(counts.values()) - counted
    print(f"{package:<32} {killed:>7} {counts['survived']:>9} {rate:>10} {not_run:>8}")


if __name__ == "__main__":
    sys.exit(main())
