"""A progress bar over documents and chunks, on stderr."""

from __future__ import annotations

import sys

from tqdm import tqdm

from operators.records import Document


class Progress:
    def __init__(self, total: int | None, enabled: bool = True) -> None:
        self.chunks = 0
        self._bar = tqdm(
            total=total, unit="doc", desc="documents", file=sys.stderr,
            disable=not enabled, dynamic_ncols=True, mininterval=0.5,
        )

    def update(self, batch: list[Document]) -> None:
        top_level = sum(1 for doc in batch if doc.parent_id is None)
        self.chunks += sum(len(doc.chunks) for doc in batch)
        self._bar.update(top_level)
        self._bar.set_postfix(chunks=self.chunks, refresh=False)

    def close(self) -> None:
        self._bar.close()
