"""Local versus Ray executor: wall time of a first run over SciFact abstracts of growing size.

Each size is a fresh corpus (one text file per abstract) and a fresh workspace, run once with
the local executor and once with the Ray executor, through the full runner (parse, clean,
dedupe_exact, chunk, embed, one Lance commit). Each Ray run uses a local Ray started just before
it, so its time excludes Ray's start-up. That start-up (ray.init to ray.shutdown) is timed
separately, and a run with `executor.address: null` costs about the sum of the two.

    python -m benchmarks.executors --sizes 200 1000 3000 --workers 2
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine, quickstart_pipeline, write_scifact_files
from rag_pipeline.config import config_from_dict
from rag_pipeline.runner import RunOptions, run_pipeline

logger = logging.getLogger(__name__)


def time_ray_start(num_cpus: int) -> tuple[float, float]:
    """Return the seconds to start a quiet local Ray and to shut it down."""
    from rag_pipeline.executors.ray_runtime import start_local_ray

    started = time.perf_counter()
    session = start_local_ray(num_cpus=num_cpus)
    ready = time.perf_counter()
    session.shutdown()
    return ready - started, time.perf_counter() - ready


def run_one(kind: str, corpus: Path, workspace: Path, workers: int, batch_size: int, embed_actors: int) -> dict:
    raw = quickstart_pipeline(workspace, corpus, workers=workers)
    if kind == "local":
        raw["executor"] = {"type": "local", "workers": workers, "batch_size": batch_size}
    else:
        raw["executor"] = {"type": "ray", "batch_size": batch_size, "embed_actors": embed_actors}
    config = config_from_dict(raw, base_dir=workspace.parent)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    summary = run_pipeline(config, RunOptions(show_progress=False))
    seconds = time.perf_counter() - started
    return {
        "executor": kind,
        "seconds": round(seconds, 2),
        "load_average": round((load_before + os.getloadavg()[0]) / 2, 1),
        "documents": summary.documents["indexed"],
        "chunks": summary.chunks["total"],
        "docs_per_s": round(summary.documents["seen"] / seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 1000, 3000], help="Corpus sizes in documents.")
    parser.add_argument("--workers", type=int, default=2, help="Local worker processes, and CPUs of the local Ray.")
    parser.add_argument("--batch-size", type=int, default=32, help="Documents per batch on both executors.")
    parser.add_argument("--embed-actors", type=int, default=1, help="Embedding actors on Ray.")
    parser.add_argument("--output", type=Path, help="Also write the results as JSON to this file.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    import ray

    from rag_pipeline.executors.ray_runtime import start_local_ray

    results: dict = {"machine": machine(), "settings": vars(args) | {"output": str(args.output)}, "runs": []}
    start_s, stop_s = time_ray_start(args.workers)
    results["ray_start_s"], results["ray_stop_s"] = round(start_s, 2), round(stop_s, 2)
    print(f"local Ray start-up {start_s:.1f} s, shutdown {stop_s:.1f} s", flush=True)

    scratch = Path(tempfile.mkdtemp(prefix="ragpipe-bench-executors-"))
    try:
        for position, size in enumerate(args.sizes):
            corpus = scratch / f"scifact-{size}"
            written = write_scifact_files(corpus, limit=size)
            # Alternate which executor goes first, so a change in machine load between the two
            # runs of a size does not always favour the same one.
            order = ["local", "ray"] if position % 2 == 0 else ["ray", "local"]
            timings = {}
            for kind in order:
                session = start_local_ray(num_cpus=args.workers) if kind == "ray" else None
                try:
                    timings[kind] = run_one(
                        kind, corpus, scratch / f"ws-{kind}-{size}", args.workers, args.batch_size, args.embed_actors
                    )
                finally:
                    if session is not None:
                        session.shutdown()
                assert not ray.is_initialized()
            local, remote = timings["local"], timings["ray"]
            row = {
                "documents": written,
                "local": local,
                "ray": remote,
                "ray_over_local_throughput": round(local["seconds"] / remote["seconds"], 2),
                "ray_with_start_s": round(remote["seconds"] + start_s + stop_s, 2),
            }
            results["runs"].append(row)
            print(json.dumps(row), flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print(_markdown(results))
    if args.output:
        args.output.write_text(json.dumps(results, indent=2))
    return 0


def _markdown(results: dict) -> str:
    lines = [
        "| documents | chunks | local s | Ray s (warm) | Ray s incl. start-up | Ray / local throughput | load average |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in results["runs"]:
        lines.append(
            f"| {row['documents']} | {row['local']['chunks']} | {row['local']['seconds']:.1f} | "
            f"{row['ray']['seconds']:.1f} | {row['ray_with_start_s']:.1f} | {row['ray_over_local_throughput']:.2f}x | "
            f"{row['local']['load_average']} / {row['ray']['load_average']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
