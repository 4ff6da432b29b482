"""CLI start-up: `outreach --help` vs `python -c pass`, same interpreter (DESIGN §8: <= +250 ms).

Run: .venv/bin/python bench/cli_startup.py
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def best_of(runs: int, argv: list[str]) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, cwd=ROOT)
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    bare = best_of(10, [sys.executable, "-c", "pass"])
    cli = best_of(10, [sys.executable, "-c", "import cli; cli.main(['--help'])"])
    print(f"python -c pass: {bare * 1000:.0f} ms; outreach --help: {cli * 1000:.0f} ms")
    print(f"extra: {(cli - bare) * 1000:.0f} ms (target <= 250 ms)")


if __name__ == "__main__":
    main()
