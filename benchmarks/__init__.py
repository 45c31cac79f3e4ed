"""Speed and memory benchmarks: plain scripts that print JSON and say whether each target is met."""
from __future__ import annotations

import json


def report(results: dict, targets: dict[str, bool]) -> int:
    """Print results with each target and whether it is met; the exit code is 1 when one is not."""
    results = dict(results, targets_met=targets, all_targets_met=all(targets.values()))
    print(json.dumps(results, indent=2))
    return 0 if all(targets.values()) else 1
