"""Benchmark `dedupe_minhash` against datasketch's MinHash and MinHashLSH on planted duplicates.

Both sides see the same generated documents (half English, half Chinese, see
`operators.minhash.synthetic`), the same shingles, the same number of permutations and the same
LSH bands and rows. Both verify candidates against the threshold with the estimated Jaccard
similarity and join verified pairs with union-find, so they reach about the same recall.

The script prints documents per CPU second, wall time, peak memory, and precision and recall
against the planted groups. All methods run in one thread, and CPU time is steadier than wall
time on a shared machine. Peak memory is what the deduplication allocated as seen by
tracemalloc, measured in a second pass because tracing slows Python code down. The threshold
sweep also prints the recall of the planted pairs whose exact Jaccard similarity reaches the
threshold, because edits push some planted pairs below high thresholds.

With `--ray` it also times clean, dedupe_exact and dedupe_minhash on a local Ray, with the
signatures computed in the Ray tasks of `clean` and, for comparison, in the driver.

Run from the repository root:

    .venv/bin/python benchmarks/dedupe.py --originals 3000
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from operators.dedupe_minhash import DedupeMinHash  # noqa: E402
from operators.minhash.lsh import (  # noqa: E402
    FALSE_NEGATIVE_WEIGHT,
    FALSE_POSITIVE_WEIGHT,
    UnionFind,
    optimal_bands,
)
from operators.minhash.signature import MinHashParams, shingle_mode  # noqa: E402
from operators.minhash.synthetic import (  # noqa: E402
    SyntheticDocument,
    duplicate_precision_recall,
    generate_corpus,
)
from operators.records import Document  # noqa: E402

BATCH_SIZE = 64


def machine_description() -> str:
    """Return the CPU model, logical CPU count and total memory of this machine."""
    cpu = platform.processor() or "unknown CPU"
    memory = "unknown memory"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemTotal"):
                    memory = f"{int(line.split()[1]) / 1024**2:.1f} GiB memory"
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, {memory}, Python {platform.python_version()}"


def to_documents(corpus: list[SyntheticDocument]) -> list[Document]:
    documents = []
    for item in corpus:
        doc = Document(doc_id=item.doc_id, uri=f"synthetic://{item.doc_id}", source="synthetic")
        doc.set_text(item.text)
        documents.append(doc)
    return documents


def run_ours(corpus: list[SyntheticDocument], threshold: float, num_perm: int) -> dict[str, str]:
    """Run `dedupe_minhash` as the local executor does and return the duplicate_of mapping."""
    docs = to_documents(corpus)
    operator = DedupeMinHash(threshold=threshold, num_perm=num_perm, keep="earliest")
    operator.begin(None)
    for start in range(0, len(docs), BATCH_SIZE):
        operator.process_batch(docs[start : start + BATCH_SIZE])
    operator.finish()
    return {doc.doc_id: doc.duplicate_of for doc in docs if doc.duplicate_of is not None}


class DriverSignatures(DedupeMinHash):
    """`dedupe_minhash` without a prepare function, so the Ray executor computes signatures in the driver."""

    def prepare_function(self):
        return None


def run_on_ray(corpus: list[SyntheticDocument], threshold: float, num_perm: int, in_tasks: bool) -> dict[str, str]:
    """Run clean, dedupe_exact and dedupe_minhash on the Ray executor and return duplicate_of.

    The executor joins the Ray this process started. With `in_tasks`, the Ray tasks of `clean`
    also compute the signatures; otherwise the driver computes them.
    """
    from operators.clean import CleanOperator
    from operators.context import RunContext
    from operators.dedupe_exact import DedupeExactOperator
    from rag_pipeline.config import RayExecutorConfig
    from rag_pipeline.executors.ray_executor import RayExecutor

    operator_class = DedupeMinHash if in_tasks else DriverSignatures
    operators = [
        CleanOperator(),
        DedupeExactOperator(),
        operator_class(threshold=threshold, num_perm=num_perm, keep="earliest"),
    ]
    executor = RayExecutor(RayExecutorConfig(batch_size=BATCH_SIZE), show_progress=False)
    docs: list[Document] = []
    executor.execute(to_documents(corpus), operators, RunContext(run_id="bench"), docs.extend)
    return {doc.doc_id: doc.duplicate_of for doc in docs if doc.duplicate_of is not None}


def compare_on_ray(corpus: list[SyntheticDocument], threshold: float, num_perm: int, repetitions: int = 3) -> None:
    """Print wall times of the Ray executor with signatures in Ray tasks and in the driver."""
    from rag_pipeline.executors.ray_runtime import start_local_ray

    labels = {True: "Ray tasks (fused with clean)", False: "the driver"}
    seconds: dict[bool, list[float]] = {True: [], False: []}
    results: dict[bool, dict[str, str]] = {}
    session = start_local_ray()
    try:
        run_on_ray(corpus[:BATCH_SIZE], threshold, num_perm, True)  # start the workers
        for _ in range(repetitions):
            for in_tasks in (True, False):
                started = time.perf_counter()
                results[in_tasks] = run_on_ray(corpus, threshold, num_perm, in_tasks)
                seconds[in_tasks].append(time.perf_counter() - started)
    finally:
        session.shutdown()
    print(f"clean + dedupe_exact + dedupe_minhash on the Ray executor, {repetitions} repetitions:")
    print(f"{'signatures computed in':32} {'median s':>8} {'min s':>7} {'max s':>7} {'docs/s':>7}")
    for in_tasks, label in labels.items():
        median = statistics.median(seconds[in_tasks])
        print(
            f"{label:32} {median:8.2f} {min(seconds[in_tasks]):7.2f} {max(seconds[in_tasks]):7.2f} "
            f"{len(corpus) / median:7.0f}"
        )
    print(f"same duplicates on both paths: {results[True] == results[False]}")


def shingle_strings(text: str, params: MinHashParams) -> list[str]:
    """Return the same shingles as `compute_signature` hashes, as strings."""
    if shingle_mode(text) == "word":
        tokens = re.findall(r"\w+", text.lower())
        n = params.word_ngram
        separator = " "
    else:
        tokens = list(re.sub(r"[\W_]+", "", text.lower()))
        n = params.char_ngram
        separator = ""
    if len(tokens) < n:
        return [separator.join(tokens)] if tokens else []
    return [separator.join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def planted_pair_similarities(
    corpus: list[SyntheticDocument], params: MinHashParams
) -> list[tuple[str, str, float]]:
    """Return `(original id, variant id, exact Jaccard similarity)` for every planted variant."""
    originals = {doc.group: doc for doc in corpus if doc.is_original}
    pairs = []
    for doc in corpus:
        if doc.is_original:
            continue
        original = originals[doc.group]
        first = set(shingle_strings(original.text, params))
        second = set(shingle_strings(doc.text, params))
        pairs.append((original.doc_id, doc.doc_id, len(first & second) / len(first | second)))
    return pairs


def run_datasketch(
    corpus: list[SyntheticDocument], threshold: float, num_perm: int, batch_update: bool
) -> dict[str, str]:
    """Deduplicate with datasketch the straightforward way and return the duplicate_of mapping.

    Each document gets a MinHash (one `update` call per shingle, or one `update_batch` call) and
    is inserted into a MinHashLSH index. Then each document queries the index, candidates whose
    estimated Jaccard similarity reaches the threshold are joined with union-find, and the
    earliest document of each cluster is its keeper, as `dedupe_minhash` does with
    `keep="earliest"`.
    """
    from datasketch import MinHash, MinHashLSH

    params = MinHashParams(num_perm=num_perm)
    lsh = MinHashLSH(
        threshold=threshold,
        num_perm=num_perm,
        weights=(FALSE_POSITIVE_WEIGHT, FALSE_NEGATIVE_WEIGHT),
    )
    sketches: dict[int, MinHash] = {}
    for position, item in enumerate(corpus):
        shingles = shingle_strings(item.text, params)
        if not shingles:
            continue
        sketch = MinHash(num_perm=num_perm, seed=params.seed)
        if batch_update:
            sketch.update_batch([shingle.encode("utf-8") for shingle in shingles])
        else:
            for shingle in shingles:
                sketch.update(shingle.encode("utf-8"))
        lsh.insert(position, sketch)
        sketches[position] = sketch

    union_find = UnionFind(len(corpus))
    for position, sketch in sketches.items():
        for candidate in lsh.query(sketch):
            if candidate != position and sketch.jaccard(sketches[candidate]) >= threshold:
                union_find.union(position, candidate)
    duplicate_of = {}
    for keeper, members in union_find.clusters().items():
        for member in members[1:]:
            duplicate_of[corpus[member].doc_id] = corpus[keeper].doc_id
    return duplicate_of


def measure(
    run: Callable[[], dict[str, str]], trace_memory: bool
) -> tuple[float, float, dict[str, str], int]:
    """Return wall seconds, CPU seconds of this process, the run's result and its peak bytes.

    The peak is 0 unless `trace_memory` is set.
    """
    if trace_memory:
        tracemalloc.start()
        tracemalloc.reset_peak()
        baseline = tracemalloc.get_traced_memory()[0]
    wall_started = time.perf_counter()
    cpu_started = time.process_time()
    result = run()
    cpu_seconds = time.process_time() - cpu_started
    wall_seconds = time.perf_counter() - wall_started
    peak = 0
    if trace_memory:
        peak = tracemalloc.get_traced_memory()[1] - baseline
        tracemalloc.stop()
    return wall_seconds, cpu_seconds, result, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--originals", type=int, default=3000, help="original documents to generate"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated corpus")
    parser.add_argument("--threshold", type=float, default=0.8, help="Jaccard threshold compared")
    parser.add_argument("--num-perm", type=int, default=128, help="MinHash permutations")
    parser.add_argument(
        "--sweep",
        type=float,
        nargs="*",
        default=[0.6, 0.7, 0.8, 0.9],
        help="thresholds at which to print dedupe_minhash's precision and recall",
    )
    parser.add_argument(
        "--skip-memory", action="store_true", help="skip the tracemalloc pass (halves run time)"
    )
    parser.add_argument(
        "--ray",
        action="store_true",
        help="also time a local Ray executor with signatures computed in Ray tasks and in the driver",
    )
    args = parser.parse_args()

    started = time.perf_counter()
    corpus = generate_corpus(args.originals, seed=args.seed)
    english = sum(1 for doc in corpus if doc.language == "en")
    characters = sum(len(doc.text) for doc in corpus)
    print(f"machine: {machine_description()}")
    print(
        f"corpus: {len(corpus)} documents ({english} English, {len(corpus) - english} Chinese), "
        f"{characters / len(corpus):.0f} characters on average, "
        f"generated in {time.perf_counter() - started:.1f} s"
    )
    bands, rows = optimal_bands(args.threshold, args.num_perm)
    print(
        f"parameters: threshold {args.threshold}, num_perm {args.num_perm}, "
        f"{bands} bands of {rows} rows on both sides"
    )
    print()

    contenders: list[tuple[str, Callable[[], dict[str, str]]]] = [
        ("dedupe_minhash (NumPy)", lambda: run_ours(corpus, args.threshold, args.num_perm)),
        (
            "datasketch update per shingle",
            lambda: run_datasketch(corpus, args.threshold, args.num_perm, batch_update=False),
        ),
        (
            "datasketch update_batch",
            lambda: run_datasketch(corpus, args.threshold, args.num_perm, batch_update=True),
        ),
    ]
    header = (
        f"{'method':32} {'docs/CPU-s':>10} {'CPU s':>7} {'wall s':>7} {'peak MiB':>9} "
        f"{'precision':>9} {'recall':>7}"
    )
    print(header)
    print("-" * len(header))
    rates = {}
    for label, run in contenders:
        wall_seconds, cpu_seconds, duplicate_of, _ = measure(run, trace_memory=False)
        peak = 0
        if not args.skip_memory:
            _, _, _, peak = measure(run, trace_memory=True)
        precision, recall = duplicate_precision_recall(corpus, duplicate_of)
        rates[label] = len(corpus) / cpu_seconds
        peak_text = "-" if args.skip_memory else f"{peak / 2**20:.1f}"
        print(
            f"{label:32} {rates[label]:10.0f} {cpu_seconds:7.2f} {wall_seconds:7.2f} "
            f"{peak_text:>9} {precision:9.4f} {recall:7.4f}"
        )
    ours = rates["dedupe_minhash (NumPy)"]
    print()
    for label, rate in rates.items():
        if label != "dedupe_minhash (NumPy)":
            print(f"speedup of dedupe_minhash over {label} (CPU time): {ours / rate:.1f}x")

    print()
    print("dedupe_minhash precision and recall by threshold:")
    planted = planted_pair_similarities(corpus, MinHashParams(num_perm=args.num_perm))
    print(
        f"{'threshold':>9} {'bands x rows':>12} {'precision':>9} {'recall':>7} "
        f"{'planted pairs >= threshold':>26} {'recall of those':>15}"
    )
    for threshold in args.sweep:
        duplicate_of = run_ours(corpus, threshold, args.num_perm)
        precision, recall = duplicate_precision_recall(corpus, duplicate_of)
        bands, rows = optimal_bands(threshold, args.num_perm)
        above = [(first, second) for first, second, jaccard in planted if jaccard >= threshold]
        joined = sum(
            1
            for first, second in above
            if duplicate_of.get(first, first) == duplicate_of.get(second, second)
        )
        pair_recall = joined / len(above) if above else 1.0
        print(
            f"{threshold:9.2f} {f'{bands} x {rows}':>12} {precision:9.4f} {recall:7.4f} "
            f"{len(above):>17} of {len(planted):<6} {pair_recall:15.4f}"
        )

    if args.ray:
        print()
        compare_on_ray(corpus, args.threshold, args.num_perm)


if __name__ == "__main__":
    main()
