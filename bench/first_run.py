"""A newcomer's first run: `make demo` from a fresh clone with empty package caches, timed.

    python bench/first_run.py                 # clones this checkout's HEAD into a temporary folder
    python bench/first_run.py --source URL    # or any clone source (a path, a git URL)
    python bench/first_run.py --keep          # leave the clone (and its .venv) behind to look at

What it does, exactly:
1. ``git clone SOURCE DIR`` (committed work only, as a newcomer gets it);
2. empty caches: ``UV_CACHE_DIR`` and ``PIP_CACHE_DIR`` point at new empty folders, so every wheel is
   fetched again from the package index (the Makefile's uv and pip read them from the environment);
3. ``make install`` and then ``make demo`` in DIR (``make demo`` alone does both; timing the steps
   apart shows where the time goes), each under ``/usr/bin/time``-style wall/user/sys accounting;
4. prints the machine's load (``/proc/loadavg``) before and after, a table, and one JSON line.

The figure to quote is ``total_s`` (= what ``time make demo`` shows) with the load beside it: on a
shared machine other people's work slows both the install and the training.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def timed(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> dict[str, float]:
    """Run `cmd`, its output to `log`; wall, user and sys seconds of it and its children."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with log.open("ab") as out:
        done = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        sys.exit(f"{' '.join(cmd)} failed (exit {done.returncode}); see {log}")
    return {"wall_s": round(wall, 1), "user_s": round(after.ru_utime - before.ru_utime, 1),
            "sys_s": round(after.ru_stime - before.ru_stime, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", default=str(REPO), help="what to clone (default: this checkout)")
    parser.add_argument("--keep", action="store_true", help="keep the clone")
    parser.add_argument("--quick", action="store_true", help="accepted for `make bench`; the run is the run")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="segpipe-first-run-"))
    clone, caches, log = work / "segpipe", work / "caches", work / "first_run.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEGPIPE_", "VIRTUAL_ENV"))}
    env.update(UV_CACHE_DIR=str(caches / "uv"), PIP_CACHE_DIR=str(caches / "pip"))
    for folder in (caches / "uv", caches / "pip"):
        folder.mkdir(parents=True)

    load_before = load()
    print(f"cloning {args.source} into {clone}; empty caches in {caches}; log: {log}", flush=True)
    subprocess.run(["git", "clone", "--quiet", args.source, str(clone)], check=True)
    install = timed(["make", "install"], clone, env, log)
    print(f"make install: {install} (load now {load()})", flush=True)
    demo = timed(["make", "demo"], clone, env, log)
    load_after = load()
    total = round(install["wall_s"] + demo["wall_s"], 1)
    ap = next((line.strip() for line in log.read_text(errors="replace").splitlines() if "validation (8 images" in line), "")

    print(f"first run of {args.source} in {clone} (cores: {os.cpu_count()}, OMP_NUM_THREADS="
          f"{env.get('OMP_NUM_THREADS', 'unset')})")
    print(f"load average before: {load_before}   after: {load_after}")
    print(f"{'step':<14}{'wall s':>9}{'user s':>9}{'sys s':>9}")
    for name, t in (("make install", install), ("segpipe demo", demo)):
        print(f"{name:<14}{t['wall_s']:>9}{t['user_s']:>9}{t['sys_s']:>9}")
    print(f"{'total':<14}{total:>9}   (= time make demo from a fresh clone, empty caches)")
    if ap:
        print(ap)
    print(json.dumps({"bench": "first_run", "total_s": total, "install": install, "demo": demo,
                      "load_before": load_before, "load_after": load_after, "demo_line": ap}))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"kept: {work}")


if __name__ == "__main__":
    main()
