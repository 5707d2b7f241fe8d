"""The workspace's MinHash signatures of indexed documents, kept between runs in a Parquet file.

Each row contains a doc_id, its first-seen sequence number, its text length in characters and its
signature. The file's schema metadata records the `MinHashParams` it was computed with, and a
store computed with other parameters is ignored on load.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from operators.minhash.signature import SIGNATURE_DTYPE, MinHashParams

logger = logging.getLogger(__name__)

STORE_FILE_NAME = "signatures.parquet"
_PARAMS_KEY = b"ragpipe.minhash.params"


@dataclass
class SignatureStore:
    """Signatures of indexed documents, row-aligned with their ids, sequence numbers and lengths."""

    doc_ids: list[str]
    sequence: np.ndarray  # int64, the order in which documents were first seen across runs
    lengths: np.ndarray  # int64, text length in characters
    signatures: np.ndarray  # (documents, num_perm) uint32

    @classmethod
    def empty(cls, num_perm: int) -> SignatureStore:
        return cls(
            [],
            np.empty(0, dtype=np.int64),
            np.empty(0, dtype=np.int64),
            np.empty((0, num_perm), dtype=SIGNATURE_DTYPE),
        )

    def __len__(self) -> int:
        return len(self.doc_ids)

    def next_sequence(self) -> int:
        """Return the sequence number for the next new document."""
        return int(self.sequence.max()) + 1 if len(self) else 0

    def without(self, doc_ids: set[str]) -> SignatureStore:
        """Return a store without the rows of `doc_ids`."""
        if not doc_ids or not len(self):
            return self
        keep = np.fromiter(
            (doc_id not in doc_ids for doc_id in self.doc_ids), dtype=bool, count=len(self)
        )
        return self.select(keep)

    def select(self, mask: np.ndarray) -> SignatureStore:
        return SignatureStore(
            [doc_id for doc_id, kept in zip(self.doc_ids, mask, strict=True) if kept],
            self.sequence[mask],
            self.lengths[mask],
            self.signatures[mask],
        )

    def extend(
        self, doc_ids: list[str], sequence: np.ndarray, lengths: np.ndarray, signatures: np.ndarray
    ) -> SignatureStore:
        """Return a store with the given rows appended."""
        return SignatureStore(
            self.doc_ids + list(doc_ids),
            np.concatenate((self.sequence, sequence)),
            np.concatenate((self.lengths, lengths)),
            np.concatenate((self.signatures, signatures.reshape(-1, self.signatures.shape[1]))),
        )

    # ---- persistence --------------------------------------------------------------------------

    @classmethod
    def load(cls, folder: Path, params: MinHashParams) -> SignatureStore:
        """Read the store in `folder`, or return an empty one when absent or made with other params.

        Raises `ValueError` when the file exists but cannot be read as a signature store.
        """
        path = folder / STORE_FILE_NAME
        if not path.exists():
            return cls.empty(params.num_perm)
        try:
            table = pq.read_table(path)
            stored_params = (table.schema.metadata or {}).get(_PARAMS_KEY, b"").decode()
            if stored_params != params.to_json():
                logger.warning(
                    "ignoring the MinHash signatures in %s: they were computed with parameters %s, "
                    "this run uses %s, so documents indexed before are not checked for "
                    "near-duplicates until they are processed again",
                    path,
                    stored_params or "(none recorded)",
                    params.to_json(),
                )
                return cls.empty(params.num_perm)
            signatures = (
                table.column("signature").combine_chunks().flatten().to_numpy(zero_copy_only=False)
            )
            return cls(
                table.column("doc_id").to_pylist(),
                table.column("sequence").to_numpy().astype(np.int64),
                table.column("length").to_numpy().astype(np.int64),
                signatures.astype(SIGNATURE_DTYPE).reshape(table.num_rows, params.num_perm),
            )
        except (OSError, KeyError, ValueError, pa.ArrowException) as err:
            raise ValueError(
                f"cannot read the MinHash signature store {path}: {err}; delete the file to start "
                "an empty store (documents indexed before are then not checked for near-duplicates "
                "until they are processed again)"
            ) from err

    def save(self, folder: Path, params: MinHashParams) -> Path:
        """Write the store to `folder` atomically (a temporary file renamed over the old one)."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / STORE_FILE_NAME
        num_perm = params.num_perm
        flat = pa.array(self.signatures.reshape(-1), type=pa.uint32())
        table = pa.table(
            {
                "doc_id": pa.array(self.doc_ids, type=pa.string()),
                "sequence": pa.array(self.sequence, type=pa.int64()),
                "length": pa.array(self.lengths, type=pa.int64()),
                "signature": pa.FixedSizeListArray.from_arrays(flat, num_perm),
            }
        ).replace_schema_metadata({_PARAMS_KEY: params.to_json().encode()})
        temporary = folder / f".{STORE_FILE_NAME}.{os.getpid()}.tmp"
        try:
            pq.write_table(table, temporary)
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
        return path
