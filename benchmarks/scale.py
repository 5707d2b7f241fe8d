"""A synthetic corpus of any size, built by recombining SciFact sentences with a fixed seed.

Each document is a SciFact title, a blank line and an abstract of randomly drawn SciFact
sentences. The number of sentences is drawn from the sentence counts of the real abstracts, so
the documents have about the real length distribution (5,183 abstracts, 8.7 sentences and 1,400
characters on average). The same count and seed always give the same files.

    python -m benchmarks.scale --count 1000 --folder /tmp/synthetic
"""

from __future__ import annotations

import argparse
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import SCIFACT

SCALE_SEED = 7
# A sentence ends at ., ! or ? followed by whitespace and a capital letter or a digit. A wrong
# split, as inside "et al. Smith", only shortens one recombined sentence.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])")


@dataclass
class SentencePool:
    titles: list[str]
    sentences: list[str]
    sentence_counts: list[int]  # sentences per real abstract, one entry per abstract


def load_sentence_pool(corpus: Path = SCIFACT / "corpus.jsonl") -> SentencePool:
    if not corpus.exists():
        raise SystemExit(f"SciFact corpus not found at {corpus}; the ../shared folder is required")
    titles, sentences, counts = [], [], []
    with corpus.open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            parts = [part for part in _SENTENCE_END.split(record["text"].strip()) if part]
            titles.append(record.get("title", "").strip())
            sentences.extend(parts)
            counts.append(len(parts))
    return SentencePool(titles, sentences, counts)


def write_synthetic_files(folder: Path, count: int, seed: int = SCALE_SEED,
                          pool: SentencePool | None = None) -> int:
    """Write `count` recombined documents as `synthetic-NNNNNN.txt` files; return their bytes."""
    pool = pool or load_sentence_pool()
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    total_bytes = 0
    for number in range(count):
        title = rng.choice(pool.titles)
        sentence_count = rng.choice(pool.sentence_counts)
        abstract = " ".join(rng.choice(pool.sentences) for _ in range(sentence_count))
        data = f"{title}\n\n{abstract}\n".encode("utf-8")
        (folder / f"synthetic-{number:06d}.txt").write_bytes(data)
        total_bytes += len(data)
    return total_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, required=True, help="documents to write")
    parser.add_argument("--folder", type=Path, required=True, help="folder to write them to")
    parser.add_argument("--seed", type=int, default=SCALE_SEED, help=f"random seed (default {SCALE_SEED})")
    args = parser.parse_args()
    size = write_synthetic_files(args.folder, args.count, args.seed)
    print(f"wrote {args.count} documents ({size / 2**20:.1f} MiB) to {args.folder}")


if __name__ == "__main__":
    main()
