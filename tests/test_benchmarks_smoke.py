"""Run the side-by-side benchmark machinery on 20 tiny documents and check the report it writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

HAND_WRITTEN_INTRO = "# Benchmarks\n\nMeasured numbers, with the command behind each.\n\n"
HAND_WRITTEN_ABOVE = HAND_WRITTEN_INTRO + "## Parse\n\nWritten by hand; must survive every run.\n"
HAND_WRITTEN_BELOW = "\n## Executors\n\n| executor | docs/s |\n|---|---|\n| local | 12 |\n"

TOPICS = [
    "protein folding", "T cell activation", "insulin resistance", "gut microbiota", "DNA repair",
    "tumour suppressors", "vaccine response", "stem cell niches", "lipid metabolism", "neural crest",
]


def write_tiny_corpus(folder: Path, count: int = 20) -> None:
    folder.mkdir()
    for number in range(count):
        topic = TOPICS[number % len(TOPICS)]
        text = (
            f"Study {number} on {topic}\n\n"
            f"We measured {topic} in {number + 3} mice over {number + 2} weeks. "
            f"The effect size in cohort {number} was small but consistent.\n"
        )
        (folder / f"doc-{number:02d}.txt").write_text(text, encoding="utf-8")


@pytest.fixture
def bench(monkeypatch):
    # benchmarks/ is not an installed package, so it is imported from the repository root.
    monkeypatch.syspath_prepend(str(REPO))
    from benchmarks import peers, run

    return run, peers


def test_report_on_tiny_corpus(tmp_path, bench):
    run, peers = bench
    corpus = tmp_path / "corpus"
    write_tiny_corpus(corpus)
    importable_peers = [peer for peer in run.PEERS if not peers.missing_packages(peer)]
    args = run.parse_args(["--suite", "incremental", "--repetitions", "1", "--peer-repetitions", "1",
                           "--workers", "1", "--peers", *importable_peers])
    settings = run.Settings.from_args(args)
    corpus_info = {"title": "tiny test corpus", "name": "20 generated abstracts", "source": "the test"}
    section = run.run_corpus_section(settings, "pytest", corpus, corpus_info, list(peers.SCENARIOS),
                                     tmp_path / "runs")

    output = tmp_path / "docs"
    output.mkdir()
    (output / "benchmarks.md").write_text(HAND_WRITTEN_ABOVE + HAND_WRITTEN_BELOW, encoding="utf-8")
    run.write_outputs(output, {"scifact": section, "serve": run.serve_section("pytest")}, "pytest")

    markdown = (output / "benchmarks.md").read_text(encoding="utf-8")
    assert markdown.startswith(HAND_WRITTEN_INTRO + run.BEGIN_MARKER)
    assert markdown.count(run.BEGIN_MARKER) == 1
    assert markdown.count(run.END_MARKER) == 1
    assert "## Parse\n\nWritten by hand; must survive every run.\n" in markdown
    assert markdown.endswith(HAND_WRITTEN_BELOW)
    generated = markdown.split(run.BEGIN_MARKER)[1].split(run.END_MARKER)[0]
    assert "### Targets" in generated
    assert "### tiny test corpus" in generated
    assert "| tool | wall s | documents/s |" in generated
    assert "Not available: ragpipe has no search service yet" in generated

    # A second write replaces the generated block instead of adding another.
    run.write_outputs(output, {"serve": run.serve_section("pytest again")}, "pytest again")
    rewritten = (output / "benchmarks.md").read_text(encoding="utf-8")
    assert rewritten.count(run.BEGIN_MARKER) == 1
    assert rewritten.endswith(HAND_WRITTEN_BELOW)

    report = json.loads((output / "benchmarks.json").read_text(encoding="utf-8"))
    assert report["last_command"] == "pytest again"
    saved = report["sections"]["scifact"]
    assert saved["command"] == "pytest"
    assert {"cores", "cpu", "memory", "load_average_start", "load_average_end"} <= set(saved["machine"])
    assert saved["versions"]["torch"] != "not installed"
    assert saved["corpus"]["documents"] == 20
    assert saved["changes"] == {"edited": 1, "deleted": 1}
    assert len(report["targets"]) == 4
    for target in report["targets"]:
        assert target["result"] in {"met", "missed", "not measured"}, target

    ours = saved["tools"]["ragpipe"]
    assert ours["status"] == "ok", ours.get("reason")
    assert list(ours["scenarios"]) == list(peers.SCENARIOS)
    full = ours["scenarios"]["full_build"]
    assert full["chunks_embedded"]["median"] == 20
    assert full["seconds"]["min"] <= full["seconds"]["median"] <= full["seconds"]["max"]
    assert full["encode_seconds"]["median"] > 0
    assert ours["scenarios"]["no_change"]["chunks_embedded"]["median"] == 0
    assert ours["scenarios"]["edit_1pct"]["chunks_embedded"]["median"] == 1
    assert ours["scenarios"]["delete_1pct"]["chunks_stored"]["median"] == 19
    assert ours["scenarios"]["delete_1pct"]["stale_chunks"]["median"] == 0
    assert ours["peak_tree_rss_mib"]["median"] >= ours["peak_rss_mib"]["median"] > 0
    assert ours["ratios"]["full_build"]["to_ragpipe"]["median"] == pytest.approx(1.0)
    assert ours["ratios"]["no_change"]["to_own_full_build"]["median"] < 1

    floor = saved["tools"]["floor"]
    assert floor["status"] == "ok", floor.get("reason")
    assert floor["scenarios"]["full_build"]["chunks_embedded"]["median"] == 20
    # The floor encodes exactly ragpipe's chunk texts, so both count the same tokens.
    assert full["tokens_embedded"]["median"] > 20
    assert floor["scenarios"]["full_build"]["tokens_embedded"]["median"] == full["tokens_embedded"]["median"]
    assert floor["ratios"]["full_build"]["to_floor"]["median"] == pytest.approx(1.0)

    for peer in run.PEERS:
        if peer not in importable_peers:
            assert peer not in saved["tools"]
            continue
        result = saved["tools"][peer]
        assert result["status"] == "ok", result.get("reason")
        assert result["scenarios"]["full_build"]["chunks_embedded"]["median"] == 20
        assert result["scenarios"]["no_change"]["chunks_embedded"]["median"] == 0
        assert result["scenarios"]["delete_1pct"]["stale_chunks"]["median"] == 0
        assert result["ratios"]["full_build"]["to_ragpipe"]["median"] > 0


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ("", "# Benchmarks\n\nBLOCK\n"),
        ("# Benchmarks\n\nIntro.\n", "# Benchmarks\n\nIntro.\n\nBLOCK\n"),
        ("## Parse\n\nText.\n", "BLOCK\n\n## Parse\n\nText.\n"),
        ("# Benchmarks\n\n## Parse\n", "# Benchmarks\n\nBLOCK\n\n## Parse\n"),
    ],
)
def test_generated_block_placement(bench, document, expected):
    run, _ = bench
    block = f"{run.BEGIN_MARKER}\nnew\n{run.END_MARKER}"
    assert run.replace_generated_block(document, "new") == expected.replace("BLOCK", block)


def test_generated_block_needs_both_markers(bench):
    run, _ = bench
    with pytest.raises(SystemExit, match="only one of the markers"):
        run.replace_generated_block(f"# Benchmarks\n\n{run.BEGIN_MARKER}\nold\n", "new")
