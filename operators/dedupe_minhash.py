"""`dedupe_minhash`: drop documents whose text is a near-duplicate of another document's.

Runs after `clean` and before `chunk`. Two documents are near-duplicates when the Jaccard
similarity of their shingle sets, estimated from MinHash signatures, is at least `threshold`.

The work is split in two stages so that executors can parallelise the first:

1. `compute_signature(text, params)` (in `operators.minhash.signature`) is a pure function. The
   local executor calls it from `process_batch` in the driver. The Ray executor gets it from
   `prepare_function()`, runs it in Ray tasks where the documents are, and passes the results
   to `process_prepared`. Both paths give identical signatures and therefore identical clusters.
2. `finish()` clusters all signatures of the run together with the stored signatures of
   documents indexed before. LSH banding, with bands and rows chosen for `threshold`, proposes
   candidate pairs. The estimated Jaccard similarity verifies them, and union-find joins verified
   pairs into clusters. Each cluster keeps one document and marks the others as duplicates of it.

Signatures and LSH use vectorised NumPy rather than datasketch, because `benchmarks/dedupe.py`
measured this operator at about 30 times the documents per CPU second of datasketch 2.0.0 used
with one `MinHash.update` call per shingle, and about 5 times with `MinHash.update_batch`. Both
sides had the same shingles, bands and rows, and recall within 0.3 points (2-CPU AMD EPYC, see
docs/benchmarks.md, section "Dedupe"). The gain comes from hashing each block of shingles as one
array instead of one call per shingle, and from grouping band keys by sorting instead of one
dict insert per document and band.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from operators.base import GlobalOperator, OperatorArgs, register
from operators.minhash.lsh import (
    UnionFind,
    band_keys,
    candidate_pairs,
    optimal_bands,
    pair_similarities,
)
from operators.minhash.signature import (
    SIGNATURE_DTYPE,
    MinHashParams,
    compute_signature,
    estimate_jaccard,
    is_empty,
)
from operators.minhash.store import SignatureStore
from operators.records import SECTION_SEPARATOR, Document

logger = logging.getLogger(__name__)

STORE_FOLDER_NAME = "minhash"


@dataclass(frozen=True)
class SignatureFunction:
    """The MinHash signature of a document's text, as a picklable callable for executors."""

    params: MinHashParams

    def __call__(self, doc: Document) -> np.ndarray:
        return compute_signature(doc.text, self.params)


def text_length(doc: Document) -> int:
    """Return `len(doc.text)` without joining the sections."""
    lengths = [len(section.text) for section in doc.sections if section.text]
    return sum(lengths) + len(SECTION_SEPARATOR) * max(len(lengths) - 1, 0)


@register
class DedupeMinHash(GlobalOperator):
    """Mark near-duplicate documents, checking new documents against stored signatures too.

    A document indexed in an earlier run is always the keeper against a document of this run.
    Among documents of this run, `keep` picks the keeper. Only documents with at least one
    shingle take part, so a document without word characters is never a near-duplicate.
    """

    name: ClassVar[str] = "dedupe_minhash"
    version: ClassVar[str] = "1"
    keeps_text: ClassVar[bool] = True

    class Args(OperatorArgs):
        threshold: float = Field(
            0.8,
            gt=0.0,
            le=1.0,
            description="Minimum estimated Jaccard similarity of near-duplicates.",
        )
        num_perm: int = Field(
            128, ge=16, le=1024, description="Number of MinHash permutations per signature."
        )
        word_ngram: int = Field(
            3,
            ge=1,
            le=16,
            description="Shingle size in words, for scripts that put spaces between words.",
        )
        char_ngram: int = Field(
            4,
            ge=1,
            le=32,
            description="Shingle size in characters, for CJK and other unspaced scripts.",
        )
        keep: Literal["longest", "earliest", "first_by_id"] = Field(
            "longest",
            description=(
                "Keeper of a cluster: longest is the longest text; earliest is the document "
                "indexed first (in doc-id order within a run); first_by_id is the smallest doc_id. "
                "A document indexed by an earlier run always stays the keeper against one of this run."
            ),
        )
        seed: int = Field(
            1,
            ge=0,
            description="Seed of the MinHash permutations. Changing it discards stored signatures.",
        )

    def __init__(self, args: OperatorArgs | None = None, **kwargs: Any) -> None:
        super().__init__(args, **kwargs)
        self.params = MinHashParams(
            num_perm=self.args.num_perm,
            word_ngram=self.args.word_ngram,
            char_ngram=self.args.char_ngram,
            seed=self.args.seed,
        )
        self._store_folder = None
        self._store = SignatureStore.empty(self.params.num_perm)
        self._reset_run()

    def _reset_run(self) -> None:
        self._docs: list[Document] = []
        self._lengths: list[int] = []
        self._signatures: list[np.ndarray] = []
        self._seen: list[Document] = []

    # ---- lifecycle ----------------------------------------------------------------------------

    def begin(self, context: Any) -> None:
        """Load the stored signatures, without those of documents whose text this run replaces."""
        self._reset_run()
        workspace = getattr(context, "workspace", None)
        if workspace is None:
            self._store_folder = None
            self._store = SignatureStore.empty(self.params.num_perm)
            return
        self._store_folder = workspace / STORE_FOLDER_NAME
        # Re-chunked and re-embedded documents keep their text and never reach this operator, so
        # their signatures must stay in the store.
        removed = getattr(context, "replaced_text_doc_ids", None)
        if removed is None:
            removed = getattr(context, "removed_doc_ids", None)
        self._store = SignatureStore.load(self._store_folder, self.params).without(set(removed or ()))

    def process_batch(self, docs: list[Document]) -> list[Document]:
        """Compute the signatures of the pending documents. Decisions wait for `finish()`."""
        pending = [doc for doc in docs if doc.is_pending]
        self.add_signatures(pending, [compute_signature(doc.text, self.params) for doc in pending])
        return docs

    def prepare_function(self) -> SignatureFunction:
        """Return the signature computation, which a Ray executor runs in parallel tasks."""
        return SignatureFunction(self.params)

    def process_prepared(self, docs: list[Document], results: list[Any]) -> list[Document]:
        """Record the documents with the signatures that `prepare_function()` computed."""
        self.add_signatures(docs, results)
        return docs

    def add_signatures(self, docs: list[Document], signatures: list[np.ndarray]) -> None:
        """Record documents with signatures computed elsewhere, in doc-id order.

        The operator keeps references to the documents (to mark them in `finish()`), their text
        lengths and signatures, but not their text.
        """
        if len(docs) != len(signatures):
            raise ValueError(f"got {len(docs)} documents but {len(signatures)} signatures")
        for doc, signature in zip(docs, signatures, strict=True):
            if not doc.is_pending:
                continue
            if signature.shape != (self.params.num_perm,):
                raise ValueError(
                    f"signature of {doc.doc_id} has shape {signature.shape}, expected "
                    f"({self.params.num_perm},); compute it with this operator's `params`"
                )
            self.stats["in"] += 1
            self._seen.append(doc)
            if is_empty(signature):
                self.stats["no_shingles"] += 1
                continue
            self._docs.append(doc)
            self._lengths.append(text_length(doc))
            self._signatures.append(signature.astype(SIGNATURE_DTYPE, copy=False))

    def finish(self) -> None:
        """Cluster this run's signatures with the stored ones, mark duplicates, save the store."""
        run_ids = {doc.doc_id for doc in self._docs}
        # A document processed again replaces its stored row instead of matching it.
        stored = self._store.without(run_ids)
        first_sequence = stored.next_sequence()
        new_sequence = np.arange(first_sequence, first_sequence + len(self._docs), dtype=np.int64)
        new_lengths = np.asarray(self._lengths, dtype=np.int64)
        if self._signatures:
            new_signatures = np.stack(self._signatures)
        else:
            new_signatures = np.empty((0, self.params.num_perm), dtype=SIGNATURE_DTYPE)

        combined = stored.extend(
            [doc.doc_id for doc in self._docs], new_sequence, new_lengths, new_signatures
        )
        duplicates = self._mark_duplicates(combined, len(stored))

        for doc in self._seen:
            self.count_outcome(doc)
        still_pending = np.array([doc.is_pending for doc in self._docs], dtype=bool)
        self._store = stored.extend(
            [doc.doc_id for doc in self._docs if doc.is_pending],
            new_sequence[still_pending],
            new_lengths[still_pending],
            new_signatures[still_pending],
        )
        if self._store_folder is not None:
            self._store.save(self._store_folder, self.params)
        logger.info(
            "%s: %d documents checked against %d stored signatures, %d near-duplicates marked, "
            "%d signatures stored",
            self.name,
            len(self._docs),
            len(stored),
            duplicates,
            len(self._store),
        )
        self._reset_run()

    # ---- clustering ---------------------------------------------------------------------------

    def _mark_duplicates(self, combined: SignatureStore, num_stored: int) -> int:
        """Mark every non-keeper of this run in each verified cluster and return their count."""
        signatures = combined.signatures
        bands, rows = optimal_bands(self.args.threshold, self.params.num_perm)
        pairs = candidate_pairs(band_keys(signatures, bands, rows), num_stored)
        similarities = pair_similarities(signatures, pairs)
        verified = pairs[similarities >= self.args.threshold]
        self.stats["candidate_pairs"] += len(pairs)
        self.stats["verified_pairs"] += len(verified)

        union_find = UnionFind(len(combined))
        for first, second in verified.tolist():
            union_find.union(first, second)

        marked = 0
        for members in union_find.clusters(set(verified.ravel().tolist())).values():
            stored_members = [m for m in members if m < num_stored]
            keeper = min(stored_members or members, key=lambda m: self._keeper_rank(combined, m))
            keeper_id = combined.doc_ids[keeper]
            for member in members:
                if member < num_stored or member == keeper:
                    continue
                doc = self._docs[member - num_stored]
                similarity = estimate_jaccard(signatures[member], signatures[keeper])
                doc.mark_duplicate(
                    keeper_id, f"near-duplicate of {keeper_id}", similarity=similarity
                )
                marked += 1
                if stored_members:
                    self.stats["duplicates_of_stored"] += 1
        return marked

    def _keeper_rank(self, combined: SignatureStore, row: int) -> tuple:
        """Return the sort key of a cluster member. The smallest key belongs to the keeper."""
        sequence = int(combined.sequence[row])
        doc_id = combined.doc_ids[row]
        if self.args.keep == "longest":
            return (-int(combined.lengths[row]), sequence, doc_id)
        if self.args.keep == "earliest":
            return (sequence, doc_id)
        return (doc_id,)
