"""A run killed with SIGKILL at any point commits nothing partial, and the next run completes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import chunk_rows, pipeline_dict


def _corpus(folder: Path) -> None:
    folder.mkdir()
    for i in range(6):
        body = "\n\n".join(
            f"Document {i} section {j}: notes on refresh number {i * 10 + j} and rollback safety." for j in range(8)
        )
        (folder / f"doc{i}.txt").write_text(body, encoding="utf-8")


def _cli(config: Path, fault: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("RAGPIPE_FAULT_INJECT", None)
    if fault:
        env["RAGPIPE_FAULT_INJECT"] = fault
    return subprocess.run(
        [sys.executable, "-m", "rag_pipeline.cli", "run", str(config), "--quiet"],
        env=env, capture_output=True, text=True, timeout=600,
    )


def _write_config(tmp_path: Path, name: str, docs: Path) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(pipeline_dict(tmp_path / name, docs, batch_size=2)))
    return path


def _chunk_set(workspace: Path) -> list[tuple[str, str, str]]:
    return sorted((r["chunk_id"], r["doc_id"], r["text"]) for r in chunk_rows(workspace))


@pytest.fixture(scope="module")
def clean_result(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("clean")
    docs = tmp_path / "docs"
    _corpus(docs)
    result = _cli(_write_config(tmp_path, "ws", docs))
    assert result.returncode == 0, result.stderr
    return _chunk_set(tmp_path / "ws")


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["after_first_staged_document", "before_commit", "after_commit"])
def test_killed_run_then_rerun_equals_clean_run(tmp_path, clean_result, fault):
    docs = tmp_path / "docs"
    _corpus(docs)
    config = _write_config(tmp_path, "ws", docs)

    killed = _cli(config, fault)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    workspace = tmp_path / "ws"
    if fault != "after_commit":
        # Nothing may be visible from a run killed before its commit.
        lance = workspace / "lance" / "chunks.lance"
        assert not lance.exists() or not chunk_rows(workspace)

    rerun = _cli(config)
    assert rerun.returncode == 0, rerun.stderr
    rows = _chunk_set(workspace)
    assert rows == clean_result
    ids = [row[0] for row in rows]
    assert len(ids) == len(set(ids))
    assert not (workspace / "staging").exists() or not any((workspace / "staging").iterdir())
