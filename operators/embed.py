"""The `embed` operator: compute a vector for every chunk with a sentence-transformers model.

Chunks of all documents in a batch are embedded together in one `model.encode` call. With an
`EmbeddingCache` attached, vectors are looked up first by (model fingerprint, chunk text sha256),
and only the misses are encoded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field, field_validator

from operators.base import Operator, OperatorArgs, register
from operators.context import EmbeddingCache
from operators.models import (
    BUNDLED_MODEL_NAMES,
    load_sentence_transformer,
    model_revision,
    resolve_model_path,
)
from operators.records import Chunk, Document

logger = logging.getLogger(__name__)

_DEVICE = re.compile(r"[a-z]+(:\d+)?")


class EmbedArgs(OperatorArgs):
    model: str = Field(
        "all-MiniLM-L6-v2",
        description="SentenceTransformer model: a bundled model name or a local folder saved with "
        "SentenceTransformer.save().",
    )
    batch_size: int = Field(64, gt=0, description="Chunks per forward pass of the model.")
    normalize: bool = Field(True, description="Scale every vector to unit L2 norm.")
    device: str = Field(
        "cpu", description='Torch device to run the model on, such as "cpu" or "cuda:0".'
    )

    @field_validator("model")
    @classmethod
    def _check_model_exists(cls, value: str) -> str:
        resolve_model_path(value)  # raises ModelNotFoundError, a ValueError, with the fix
        return value

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if _DEVICE.fullmatch(value) is None:
            raise ValueError(
                f"device {value!r} is not a torch device name. Use 'cpu', 'cuda' or 'cuda:0'."
            )
        return value


def _model_identity(name_or_path: str) -> str:
    # A bundled model is known by its hub name, and a local folder by its folder name, so moving
    # the folder keeps the fingerprint. The revision covers the folder's content.
    if name_or_path in BUNDLED_MODEL_NAMES:
        return BUNDLED_MODEL_NAMES[-1]
    return Path(name_or_path).expanduser().resolve().name


@register
class EmbedOperator(Operator):
    """Embed each chunk's text into `chunk.vector` (float32), reusing cached vectors."""

    name: ClassVar[str] = "embed"
    Args: ClassVar[type[OperatorArgs]] = EmbedArgs
    kind = "model"

    args: EmbedArgs

    def __init__(self, args: OperatorArgs | None = None, **kwargs: Any) -> None:
        super().__init__(args, **kwargs)
        self._cache: EmbeddingCache | None = None
        self._model = None
        self._dimension = 0
        self._fingerprint = ""
        self._metadata: dict[str, Any] = {}

    def attach_cache(self, cache: EmbeddingCache | None) -> None:
        """Look vectors up in `cache` before encoding, and store new ones there."""
        self._cache = cache

    def setup(self) -> None:
        self._model = load_sentence_transformer(self.args.model, self.args.device)
        self._dimension = int(self._model.get_embedding_dimension())
        identity = {
            "model": _model_identity(self.args.model),
            "revision": model_revision(self.args.model),
            "dimension": self._dimension,
            "normalized": self.args.normalize,
        }
        payload = json.dumps(identity, sort_keys=True).encode()
        self._fingerprint = hashlib.sha256(payload).hexdigest()[:16]
        self._metadata = {**identity, "fingerprint": self._fingerprint}

    def dimension(self) -> int:
        self.ensure_setup()
        return self._dimension

    def model_revision(self) -> str:
        """Return the content hash of the model folder (see `operators.models.model_revision`)."""
        return model_revision(self.args.model)

    def model_fingerprint(self) -> str:
        """Return a hash of the model identity, revision, vector dimension and normalization.

        Vectors with equal fingerprints are interchangeable, so the fingerprint is the first part of
        the embedding cache key.
        """
        self.ensure_setup()
        return self._fingerprint

    def embedding_metadata(self) -> dict[str, Any]:
        """Return how this operator's vectors are made: model, revision, dimension, normalization
        and fingerprint, as stored in each document's `metadata["embedding"]`."""
        self.ensure_setup()
        return dict(self._metadata)

    def process_batch(self, docs: list[Document]) -> list[Document]:
        self.ensure_setup()
        pending = [doc for doc in docs if doc.is_pending]
        self.stats["in"] += len(pending)

        chunks = [chunk for doc in pending for chunk in doc.chunks]
        if chunks:
            self._embed_chunks(chunks)

        for doc in pending:
            if doc.chunks:
                doc.metadata["embedding"] = dict(self._metadata)
            else:
                doc.mark_filtered("embed", "no chunks to embed")
            self.count_outcome(doc)
        return docs

    def _embed_chunks(self, chunks: list[Chunk]) -> None:
        hashes = [chunk.text_hash for chunk in chunks]
        cached: dict[str, Any] = {}
        if self._cache is not None:
            cached = self._cache.get_many(self._fingerprint, sorted(set(hashes)))

        # Identical texts within the batch are encoded once.
        texts_to_encode: dict[str, str] = {}
        for chunk, text_hash in zip(chunks, hashes):
            if text_hash not in cached:
                texts_to_encode.setdefault(text_hash, chunk.text)
        fresh = self._encode(texts_to_encode)
        if fresh and self._cache is not None:
            self._cache.put_many(self._fingerprint, fresh)

        for chunk, text_hash in zip(chunks, hashes):
            if text_hash in fresh:
                chunk.vector = fresh[text_hash]
                chunk.reused = False
                self.stats["chunks_embedded"] += 1
            else:
                chunk.vector = np.asarray(cached[text_hash], dtype=np.float32)
                chunk.reused = True
                self.stats["chunks_reused"] += 1

    def _encode(self, texts_by_hash: dict[str, str]) -> dict[str, np.ndarray]:
        if not texts_by_hash:
            return {}
        # Longest first, so each forward pass pads to a similar length.
        order = sorted(texts_by_hash, key=lambda text_hash: -len(texts_by_hash[text_hash]))
        vectors = self._model.encode(
            [texts_by_hash[text_hash] for text_hash in order],
            batch_size=self.args.batch_size,
            normalize_embeddings=self.args.normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        vectors = np.asarray(vectors, dtype=np.float32)
        return {text_hash: vectors[row] for row, text_hash in enumerate(order)}
