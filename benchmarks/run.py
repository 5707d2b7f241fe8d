"""Run ragpipe and its peers side by side and write docs/benchmarks.md and docs/benchmarks.json.

Suites:

- `ingest`: the full build of SciFact (one file per abstract) by every tool, and the synthetic
  scale series (ragpipe and the embedding floor only).
- `incremental`: the four refresh scenarios on SciFact by every tool: full build, no-change
  rerun, rerun after editing 1% of the files, rerun after deleting 1%.
- `scale`: the synthetic scale series alone.
- `dedupe`: runs benchmarks/dedupe.py and keeps its output.
- `serve`: ragpipe has no search service yet, so this suite only reports that.
- `all`: all of the above; SciFact runs once for both `ingest` and `incremental`.

Each tool runs every repetition of its scenario set in a fresh process (`benchmarks.peers`), on
its own fresh copy of the corpus. Repetitions interleave the tools, so a change in machine load
hits them alike. Every figure is the median over repetitions, with min and max.

The generated report replaces only the text between the BEGIN and END GENERATED markers in
docs/benchmarks.md. The JSON keeps one entry per section (scifact, scale, dedupe, serve). A run
replaces the sections it measured and keeps the others, each with the command that made it.

    python -m benchmarks.run --quick            # estimated 10 minutes on an idle 2-core machine
    python -m benchmarks.run --suite incremental
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, SCIFACT, machine, write_scifact_files
from benchmarks.peers import (
    BATCH_SIZE,
    CHUNK_MAX_TOKENS,
    CHUNK_OVERLAP_TOKENS,
    MODEL_NAME,
    SCENARIOS,
    TOOL_LABELS,
    library_versions,
    measure_corpus,
    median_seconds,
)
from benchmarks.scale import write_synthetic_files

logger = logging.getLogger("benchmarks.run")

BEGIN_MARKER = "<!-- BEGIN GENERATED: benchmarks.run -->"
END_MARKER = "<!-- END GENERATED: benchmarks.run -->"
SCHEMA_VERSION = 2  # 2: spreads keep their values and ratios are paired by repetition
SUITES = ("ingest", "incremental", "scale", "dedupe", "serve", "all")
PEERS = ("llamaindex", "langchain")

# Targets the report checks, with their limits.
FLOOR_RATIO_LIMIT = 1.15
LLAMAINDEX_THROUGHPUT_MIN = 2.0
NO_CHANGE_SHARE_LIMIT = 0.02
SCALE_COST_RATIO_LIMIT = 1.2


@dataclass
class Settings:
    """Run parameters of one invocation; `--quick` picks smaller values."""

    suites: list[str]
    scifact_docs: int
    repetitions: int  # ragpipe and the floor
    peer_repetitions: int
    scale_sizes: list[int]
    scale_repetitions: int
    dedupe_originals: int
    workers: int
    peers: list[str] = field(default_factory=lambda: list(PEERS))

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        quick = args.quick
        suites = ["ingest", "incremental", "dedupe", "serve"] if args.suite == "all" else [args.suite]
        return cls(
            suites=suites,
            scifact_docs=args.docs or (300 if quick else 5183),
            repetitions=args.repetitions or 3,
            peer_repetitions=args.peer_repetitions or (1 if quick else 3),
            scale_sizes=args.scale_sizes or ([100, 500] if quick else [1000, 5000, 20000]),
            scale_repetitions=1,
            dedupe_originals=1000 if quick else 3000,
            workers=args.workers,
            peers=args.peers if args.peers is not None else list(PEERS),
        )


# ---- sections --------------------------------------------------------------------------------


def section_header(command: str) -> dict[str, Any]:
    return {
        "command": command,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {**machine(), "load_average_start": [round(x, 2) for x in os.getloadavg()]},
        "versions": library_versions(),
        "commit": git_commit(),
        "settings": {
            "model": MODEL_NAME, "chunk_max_tokens": CHUNK_MAX_TOKENS,
            "chunk_overlap_tokens": CHUNK_OVERLAP_TOKENS, "batch_size": BATCH_SIZE,
        },
    }


def close_section(section: dict[str, Any], started: float) -> dict[str, Any]:
    section["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    section["duration_seconds"] = round(time.perf_counter() - started, 1)
    section["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return section


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head} (with uncommitted changes)" if dirty else head


def tool_plan(settings: Settings) -> tuple[list[str], dict[str, int]]:
    tools = ["ragpipe", "floor", *settings.peers]
    repetitions = {tool: settings.peer_repetitions if tool in PEERS else settings.repetitions for tool in tools}
    return tools, repetitions


def run_corpus_section(settings: Settings, command: str, corpus: Path, corpus_info: dict[str, Any],
                       scenarios: list[str], work: Path) -> dict[str, Any]:
    """Run ragpipe, the floor and the peers on `corpus` and return the report section."""
    started = time.perf_counter()
    section = section_header(command)
    tools, repetitions = tool_plan(settings)
    section["corpus"] = {
        **corpus_info,
        "documents": sum(1 for _ in corpus.iterdir()),
        "bytes": sum(path.stat().st_size for path in corpus.iterdir()),
    }
    section["scenarios"] = scenarios
    section["repetitions"] = repetitions
    section.update(measure_corpus(corpus, work, tools, scenarios, repetitions, settings.workers))
    return close_section(section, started)


def run_scifact_section(settings: Settings, command: str, scenarios: list[str], temp: Path) -> dict[str, Any]:
    corpus = temp / "scifact"
    # SciFact is for evaluation only: the files go to a temporary folder, never into the repository.
    count = write_scifact_files(corpus, settings.scifact_docs)
    corpus_info = {
        "title": f"SciFact, {count} documents",
        "name": "SciFact abstracts, one .txt file per abstract (title, blank line, abstract)",
        "source": "SciFact (Wadden et al., EMNLP 2020), BEIR layout, CC BY-NC 2.0, for evaluation only",
        "path": os.path.relpath(SCIFACT / "corpus.jsonl", REPO),
    }
    return run_corpus_section(settings, command, corpus, corpus_info, scenarios, temp / "scifact-runs")


def run_scale_section(settings: Settings, command: str, temp: Path) -> dict[str, Any]:
    started = time.perf_counter()
    section = section_header(command)
    section["corpus"] = {
        "name": "synthetic: SciFact titles and sentences recombined with a fixed seed (benchmarks/scale.py)",
        "sizes": settings.scale_sizes,
    }
    section["repetitions"] = settings.scale_repetitions
    section["sizes"] = {}
    for size in settings.scale_sizes:
        corpus = temp / f"synthetic-{size}"
        size_bytes = write_synthetic_files(corpus, size)
        logger.info("scale series: %d documents written (%.1f MiB)", size, size_bytes / 2**20)
        repetitions = {"ragpipe": settings.scale_repetitions, "floor": settings.scale_repetitions}
        measured = measure_corpus(
            corpus, temp / f"synthetic-{size}-runs", ["ragpipe", "floor"], ["full_build", "no_change"],
            repetitions, settings.workers,
        )
        section["sizes"][str(size)] = {"bytes": size_bytes, **measured}
        shutil.rmtree(corpus, ignore_errors=True)
    return close_section(section, started)


def run_dedupe_section(settings: Settings, command: str) -> dict[str, Any]:
    started = time.perf_counter()
    section = section_header(command)
    script = REPO / "benchmarks" / "dedupe.py"
    if not script.exists():
        section.update(status="unavailable", reason="benchmarks/dedupe.py does not exist")
        return close_section(section, started)
    dedupe_command = [sys.executable, "benchmarks/dedupe.py", "--originals", str(settings.dedupe_originals),
                      "--skip-memory"]
    logger.info("dedupe: %s", shlex.join(dedupe_command))
    completed = subprocess.run(dedupe_command, cwd=REPO, capture_output=True, text=True)
    section["dedupe_command"] = shlex.join(["python", *dedupe_command[1:]])
    if completed.returncode != 0:
        lines = [line for line in completed.stderr.splitlines() if line.strip()]
        section.update(status="failed", reason=" | ".join(lines[-3:]) or f"exit status {completed.returncode}")
    else:
        section.update(status="ok", output=completed.stdout.rstrip())
    return close_section(section, started)


def serve_section(command: str) -> dict[str, Any]:
    return {
        "command": command,
        "status": "unavailable",
        "reason": "ragpipe has no search service yet (only `ragpipe search` on the command line), "
                  "so there is nothing to measure",
    }


# ---- targets -------------------------------------------------------------------------------


def ratio_median(result: dict[str, Any], scenario: str, kind: str) -> float | None:
    """Median of a paired ratio (`to_floor`, `to_ragpipe` or `to_own_full_build`), or None."""
    if result.get("status") != "ok" or scenario not in result.get("ratios", {}):
        return None
    ratio = result["ratios"][scenario][kind]
    return ratio["median"] if ratio else None


def evaluate_targets(sections: dict[str, Any]) -> list[dict[str, Any]]:
    """Check each target against the measured sections; a target without data is `not measured`."""
    targets = []
    tools = sections.get("scifact", {}).get("tools", {})
    floor_ratio = ratio_median(tools.get("ragpipe", {}), "full_build", "to_floor")
    llama_ratio = ratio_median(tools.get("llamaindex", {}), "full_build", "to_ragpipe")
    no_change_share = ratio_median(tools.get("ragpipe", {}), "no_change", "to_own_full_build")

    def target(name: str, measured: float | None, limit: float, at_most: bool, unit: str, note: str = "") -> None:
        if measured is None:
            result = "not measured"
        else:
            result = "met" if (measured <= limit if at_most else measured >= limit) else "missed"
        targets.append({"target": name, "measured": measured, "limit": limit, "at_most": at_most,
                        "unit": unit, "result": result, "note": note})

    target("ragpipe full build time / embedding floor time", floor_ratio, FLOOR_RATIO_LIMIT, True, "x")
    note = "" if llama_ratio is not None else tools.get("llamaindex", {}).get("reason", "LlamaIndex was not run")
    target("ragpipe full-build throughput / LlamaIndex throughput", llama_ratio,
           LLAMAINDEX_THROUGHPUT_MIN, False, "x", note)
    target("ragpipe no-change rerun time / ragpipe full build time", no_change_share,
           NO_CHANGE_SHARE_LIMIT, True, "%")

    sizes = sections.get("scale", {}).get("sizes", {})
    costs = {}
    for size, entry in sizes.items():
        seconds = median_seconds(entry["tools"].get("ragpipe", {}), "full_build")
        if seconds:
            costs[int(size)] = seconds / int(size)
    measured, note = None, ""
    if len(costs) >= 2:
        small, large = min(costs), max(costs)
        measured = costs[large] / costs[small]
        if (small, large) != (1000, 20000):
            note = f"measured at {large} vs {small} documents; the target is defined at 20000 vs 1000"
    target("ragpipe seconds per document at the largest size / at the smallest", measured,
           SCALE_COST_RATIO_LIMIT, True, "x", note)
    return targets


# ---- the JSON file and the markdown file ------------------------------------------------


def load_report(path: Path) -> dict[str, Any]:
    """Return the existing JSON report, or an empty one when it is missing or of another schema."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {"schema": SCHEMA_VERSION, "sections": {}}
    if report.get("schema") != SCHEMA_VERSION or not isinstance(report.get("sections"), dict):
        return {"schema": SCHEMA_VERSION, "sections": {}}
    return report


def replace_generated_block(document: str, block: str) -> str:
    """Put `block` between the markers, leaving everything outside them as it was.

    Without markers, the block goes before the first `## ` heading, so it follows the page title
    and introduction but precedes every hand-written section. A page without such a heading gets
    the block at its end, and an empty page gets a title first.
    """
    generated = f"{BEGIN_MARKER}\n{block.strip()}\n{END_MARKER}"
    begin = document.find(BEGIN_MARKER)
    end = document.find(END_MARKER)
    if begin != -1 and end != -1 and begin < end:
        return document[:begin] + generated + document[end + len(END_MARKER):]
    if begin != -1 or end != -1:
        raise SystemExit(
            "docs/benchmarks.md has only one of the markers, or END before BEGIN; fix the markers "
            f"by hand ({BEGIN_MARKER} ... {END_MARKER}) and run again"
        )
    if not document.strip():
        return f"# Benchmarks\n\n{generated}\n"
    if document.startswith("## "):
        return f"{generated}\n\n{document}"
    heading = document.find("\n## ")
    if heading == -1:
        return f"{document.rstrip()}\n\n{generated}\n"
    return f"{document[:heading + 1]}{generated}\n\n{document[heading + 1:]}"


def write_outputs(output_dir: Path, sections: dict[str, Any], command: str | None) -> tuple[Path, Path]:
    """Merge `sections` into the JSON report and rewrite the generated block of the markdown.

    A `command` of None keeps the JSON's `last_command`, for re-rendering without new sections.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    json_path = output_dir / "benchmarks.json"
    markdown_path = output_dir / "benchmarks.md"
    report = load_report(json_path)
    report["sections"].update(sections)
    if command is not None:
        report["last_command"] = command
    report["targets"] = evaluate_targets(report["sections"])
    json_path.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n", encoding="utf-8")

    existing = markdown_path.read_text(encoding="utf-8") if markdown_path.exists() else ""
    markdown_path.write_text(replace_generated_block(existing, render_markdown(report)), encoding="utf-8")
    return markdown_path, json_path


# ---- the markdown section ------------------------------------------------------------------

SCENARIO_LABELS = {
    "full_build": "full build",
    "no_change": "no-change rerun",
    "edit_1pct": "rerun after editing 1%",
    "delete_1pct": "rerun after deleting 1%",
}


def plural(count: float, noun: str) -> str:
    return f"{count:.0f} {noun}" + ("" if round(count) == 1 else "s")


def fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def fmt_spread(values: dict[str, float], digits: int = 2) -> str:
    """Median, followed by (min-max) when the runs differ."""
    text = f"{values['median']:.{digits}f}"
    if values["runs"] > 1 and values["min"] != values["max"]:
        text += f" ({values['min']:.{digits}f}-{values['max']:.{digits}f})"
    return text


def fmt_ratio(values: dict[str, Any] | None) -> str:
    return "n/a" if values is None else fmt_spread(values)


def fmt_share(values: dict[str, Any] | None) -> str:
    if values is None:
        return "n/a"
    text = f"{values['median']:.1%}"
    if values["runs"] > 1 and values["min"] != values["max"]:
        text += f" ({values['min']:.1%}-{values['max']:.1%})"
    return text


def fmt_count(values: dict[str, float]) -> str:
    text = f"{values['median']:.0f}"
    if values["min"] != values["max"]:
        text += f" ({values['min']:.0f}-{values['max']:.0f})"
    return text


def setup_lines() -> list[str]:
    return [
        f"Every tool embeds with the bundled {MODEL_NAME} on the CPU (batch size {BATCH_SIZE}, unit-length "
        f"vectors, loaded offline before any timing starts) and splits text into chunks of at most "
        f"{CHUNK_MAX_TOKENS} tokens of that model's tokenizer, with {CHUNK_OVERLAP_TOKENS} tokens of overlap. "
        "Each tool runs its scenarios in order in a fresh process, on its own copy of the corpus; the "
        "edit and delete scenarios change the same files for every tool. A figure is the median over "
        "repetitions, followed by (min-max) when the repetitions differ. A ratio (x floor, x ragpipe, "
        "share of own full build) is the median of per-repetition ratios. Repetition i of every tool "
        "runs in the same round, minutes apart, so pairing by repetition cancels much of a machine load "
        "that drifts between rounds. Peak memory is the summed RSS of the tool's process and its "
        "descendants, sampled every 0.2 s.",
        "",
        "- **ragpipe**: `run_pipeline` with parse, clean, dedupe_exact, chunk and embed "
        "(`benchmarks.common.quickstart_pipeline`), local executor; it reopens its Lance workspace "
        "from disk on every run.",
        "- **embedding floor**: the model alone encoding exactly the chunk texts of ragpipe's full build "
        "in one `encode` call; its documents/s counts ragpipe's documents.",
        "- **LlamaIndex IngestionPipeline**: `SentenceSplitter` counting tokens with the model's tokenizer, "
        "`HuggingFaceEmbedding` on the same folder, `SimpleDocumentStore` with "
        "`DocstoreStrategy.UPSERTS_AND_DELETE`, `SimpleVectorStore`; defaults otherwise (one process).",
        "- **LangChain index()**: `RecursiveCharacterTextSplitter.from_huggingface_tokenizer`, "
        "`HuggingFaceEmbeddings` from langchain-huggingface on the same folder, `SQLRecordManager` on "
        "SQLite, `InMemoryVectorStore`, `cleanup=\"incremental\"`, batches of 64 chunks. Incremental "
        "cleanup never removes the chunks of files that are gone, so the delete run uses "
        "`cleanup=\"full\"`. In langchain-core 1.8.3, incremental cleanup also deletes, after each "
        "batch, the older records of every source in that batch. A document whose chunks straddle two "
        "batches therefore loses the chunks of the second batch and has them embedded again on every "
        "run, no-change reruns included.",
        "- The peers read each file with `Path.read_text`, use its name as the document id, and keep "
        "their docstore and vector store in memory between runs, so their reruns pay no load or "
        "persist cost.",
    ]


def provenance_lines(section: dict[str, Any], reference_versions: dict[str, str] | None = None) -> list[str]:
    """Command, machine and library versions; versions equal to `reference_versions` are not repeated."""
    info = section["machine"]
    if reference_versions is not None and section["versions"] == reference_versions:
        versions = "as in the first section above"
    else:
        versions = ", ".join(f"{name} {version}" for name, version in section["versions"].items())
    load_start = info.get("load_average_start", ["?"])[0]
    load_end = info.get("load_average_end", ["?"])[0]
    return [
        f"Command: `{section['command']}`, started {section['started_at']}, took "
        f"{section.get('duration_seconds', 0) / 60:.1f} min, commit {section.get('commit', 'unknown')}.",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory']}, Python {info['python']}; "
        f"1-minute load average {load_start} at the start and {load_end} at the end.",
        f"Versions: {versions}.",
    ]


def load_warning(section: dict[str, Any]) -> list[str]:
    info = section["machine"]
    cores = int(info["cores"]) if str(info["cores"]).isdigit() else 0
    loads = [info.get("load_average_start", [0])[0], info.get("load_average_end", [0])[0]]
    # The benchmark keeps about two cores busy itself (torch threads, ragpipe's workers), so only a
    # load above cores + 1 shows other work competing with it.
    if cores and max(loads) > cores + 1:
        return [
            "",
            f"**Other processes were using the machine during this run** (load average up to {max(loads)} "
            f"on {cores} cores), so every absolute time above is inflated. The tools ran interleaved, "
            "but contention changes from minute to minute: treat the ratios as rough and rerun on an "
            "idle machine before quoting a number.",
        ]
    return []


def targets_table(targets: list[dict[str, Any]]) -> list[str]:
    lines = ["| target | limit | measured | result |", "|---|---|---|---|"]
    for item in targets:
        if item["unit"] == "%":
            limit = f"{'at most' if item['at_most'] else 'at least'} {item['limit']:.0%}"
            measured = "n/a" if item["measured"] is None else f"{item['measured']:.2%}"
        else:
            limit = f"{'at most' if item['at_most'] else 'at least'} {item['limit']:.2f}x"
            measured = "n/a" if item["measured"] is None else f"{item['measured']:.2f}x"
        result = f"**{item['result']}**" if item["result"] != "met" else "met"
        if item["note"]:
            result += f" ({item['note']})"
        lines.append(f"| {item['target']} | {limit} | {measured} | {result} |")
    return lines


def unavailable_lines(tools: dict[str, Any]) -> list[str]:
    return [
        f"- {TOOL_LABELS.get(tool, tool)}: {result['status']}: {result['reason']}"
        for tool, result in tools.items() if result.get("status") != "ok"
    ]


def full_build_table(tools: dict[str, Any]) -> list[str]:
    lines = [
        "| tool | wall s | documents/s | chunks embedded | tokens embedded | s inside encode | x floor "
        "| x ragpipe | peak RSS MiB (process tree) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for tool, result in tools.items():
        label = TOOL_LABELS.get(tool, tool)
        if result.get("status") != "ok":
            lines.append(f"| {label} | {result['status']} | | | | | | | |")
            continue
        full = result["scenarios"]["full_build"]
        ratios = result["ratios"]["full_build"]
        tokens = fmt_count(full["tokens_embedded"]) if "tokens_embedded" in full else "n/a"
        lines.append(
            f"| {label} | {fmt_spread(full['seconds'])} | {fmt_spread(full['documents_per_second'], 1)} "
            f"| {fmt_count(full['chunks_embedded'])} | {tokens} | {fmt_spread(full['encode_seconds'])} "
            f"| {fmt_ratio(ratios['to_floor'])} | {fmt_ratio(ratios['to_ragpipe'])} "
            f"| {fmt_spread(result['peak_tree_rss_mib'], 0)} |"
        )
    return lines


def refresh_table(tools: dict[str, Any]) -> list[str]:
    lines = [
        "| tool | scenario | wall s | share of own full build | chunks embedded | chunks stored after | x ragpipe |",
        "|---|---|---|---|---|---|---|",
    ]
    for tool, result in tools.items():
        if tool == "floor" or result.get("status") != "ok":
            continue
        for scenario in ("no_change", "edit_1pct", "delete_1pct"):
            if scenario not in result["scenarios"]:
                continue
            values = result["scenarios"][scenario]
            ratios = result["ratios"][scenario]
            stored = fmt_count(values["chunks_stored"])
            if "stale_chunks" in values and values["stale_chunks"]["max"] > 0:
                stored += f", {fmt_count(values['stale_chunks'])} of deleted files"
            lines.append(
                f"| {TOOL_LABELS.get(tool, tool)} | {SCENARIO_LABELS[scenario]} | {fmt_spread(values['seconds'], 3)} "
                f"| {fmt_share(ratios['to_own_full_build'])} | {fmt_count(values['chunks_embedded'])} "
                f"| {stored} | {fmt_ratio(ratios['to_ragpipe'])} |"
            )
    return lines


def render_scifact(section: dict[str, Any], reference_versions: dict[str, str] | None) -> list[str]:
    tools = section["tools"]
    corpus = section["corpus"]
    lines = [
        f"### {corpus['title']}",
        "",
        f"{corpus['name']}, {corpus['documents']} files, {corpus['bytes'] / 2**20:.1f} MiB, from {corpus['source']}. Repetitions: "
        + ", ".join(f"{TOOL_LABELS.get(tool, tool)} {count}" for tool, count in section["repetitions"].items())
        + f". The edit scenario appends a sentence to {plural(section['changes']['edited'], 'file')}; the "
        f"delete scenario removes {plural(section['changes']['deleted'], 'other file')}.",
        "",
        *provenance_lines(section, reference_versions),
        "",
        "Full build:",
        "",
        *full_build_table(tools),
    ]
    if len(section["scenarios"]) > 1:
        lines += ["", "Refresh:", "", *refresh_table(tools)]
    missing = unavailable_lines(tools)
    if missing:
        lines += ["", "Tools without numbers:", "", *missing]
    lines += ["", "Reading:", "", *read_scifact(section), *load_warning(section)]
    return lines


def outside_encode(result: dict[str, Any], scenario: str) -> float:
    values = result["scenarios"][scenario]
    return values["seconds"]["median"] - values["encode_seconds"]["median"]


def read_scifact(section: dict[str, Any]) -> list[str]:
    """Write the reading of the SciFact tables, one bullet per finding, from the measured medians."""
    tools = section["tools"]
    ours = tools.get("ragpipe", {})
    if ours.get("status") != "ok":
        return [f"- ragpipe has no numbers: {ours.get('reason', 'it was not run')}."]

    lines = read_full_build(tools)
    for peer in ("llamaindex", "langchain"):
        if tools.get(peer, {}).get("status") == "ok":
            lines.append(read_peer_full_build(tools, peer))
    lines += read_encode_rates(tools)
    if "no_change" in ours["scenarios"]:
        lines += [read_no_change(tools), *read_edit(tools), read_delete(tools)]
    lines.append(read_memory(tools))
    return lines


def ok_tools(tools: dict[str, Any], with_floor: bool = False) -> list[tuple[str, dict[str, Any]]]:
    return [
        (tool, result) for tool, result in tools.items()
        if result.get("status") == "ok" and (with_floor or tool != "floor")
    ]


def read_full_build(tools: dict[str, Any]) -> list[str]:
    full = tools["ragpipe"]["scenarios"]["full_build"]
    seconds = full["seconds"]["median"]
    encode = full["encode_seconds"]["median"]
    floor = median_seconds(tools.get("floor", {}), "full_build")
    ratio = ratio_median(tools["ragpipe"], "full_build", "to_floor")
    if not floor or ratio is None:
        return []
    return [
        f"- Full build: ragpipe took {seconds:.1f} s against the floor's {floor:.1f} s for the same "
        f"{plural(full['chunks_embedded']['median'], 'chunk')}, {ratio:.2f}x the floor by the paired ratio. "
        f"{encode:.1f} s of ragpipe's time was inside the model's encode and {seconds - encode:.1f} s "
        f"({(seconds - encode) / seconds:.0%}) outside it. The time outside encode covers listing, parsing, "
        "cleaning, dedupe and chunking in worker processes, cache lookups, staging and the Lance commit, "
        "which the run does not time one by one. The local executor passes the model groups of at least 1,024 chunks "
        "and keeps at most two batches per worker in flight while the model encodes, so parsing and encoding overlap "
        "only in part."
    ]


def embedded_volume(full: dict[str, Any]) -> str:
    """Describe the chunks (and tokens, when measured) one full build embedded."""
    text = plural(full["chunks_embedded"]["median"], "chunk")
    if "tokens_embedded" in full:
        text += f" with {full['tokens_embedded']['median']:,.0f} tokens"
    return text


def read_peer_full_build(tools: dict[str, Any], peer: str) -> str:
    ours = tools["ragpipe"]["scenarios"]["full_build"]
    seconds = ours["seconds"]["median"]
    encode = ours["encode_seconds"]["median"]
    peer_full = tools[peer]["scenarios"]["full_build"]
    peer_seconds = peer_full["seconds"]["median"]
    peer_encode = peer_full["encode_seconds"]["median"]

    throughput_ratio = ratio_median(tools[peer], "full_build", "to_ragpipe")
    # Within 3% the order can flip between repetitions on a shared machine, so call it a tie.
    if abs(throughput_ratio - 1) <= 0.03:
        faster = "about as fast"
    else:
        faster = "faster" if throughput_ratio > 1 else "slower"
    gap_outside = (seconds - encode) - (peer_seconds - peer_encode)
    gap_encode = encode - peer_encode
    larger = "outside encode" if abs(gap_outside) >= abs(gap_encode) else "inside encode"
    return (
        f"- Against {TOOL_LABELS[peer]}: ragpipe's full build was {faster} ({throughput_ratio:.2f}x its "
        f"throughput by the paired ratio). {TOOL_LABELS[peer]} embedded {embedded_volume(peer_full)} (ragpipe: "
        f"{embedded_volume(ours)}), spent {peer_encode:.1f} s inside encode and "
        f"{peer_seconds - peer_encode:.1f} s outside it, against ragpipe's {encode:.1f} s and "
        f"{seconds - encode:.1f} s, so most of the difference is {larger}. "
        f"{peer_encode / peer_seconds:.0%} of {TOOL_LABELS[peer]}'s time was the model's encode, so even with "
        f"nothing outside encode, ragpipe would reach {peer_seconds / encode:.2f}x its throughput while it "
        "embeds this many tokens with the same model."
    )


def read_encode_rates(tools: dict[str, Any]) -> list[str]:
    """Compare the model's speed per token across tools, which shows how steady the machine was."""
    rates = {}
    for tool, result in ok_tools(tools, with_floor=True):
        full = result["scenarios"]["full_build"]
        tokens = full.get("tokens_embedded", {}).get("median")
        if tokens:
            rates[tool] = 1000 * full["encode_seconds"]["median"] / tokens
    if len(rates) < 2:
        return []
    listed = ", ".join(f"{TOOL_LABELS.get(tool, tool)} {rate:.2f} ms" for tool, rate in rates.items())
    spread_ratio = max(rates.values()) / min(rates.values())
    return [
        f"- Encode time per 1,000 tokens in the full build: {listed}. Every tool runs the same model "
        f"with the same batch size, so a gap between these rates ({spread_ratio:.2f}x here) comes from the "
        "machine's load changing between runs or from how the texts are batched, not from the "
        "tool's own code."
    ]


def read_no_change(tools: dict[str, Any]) -> str:
    parts = []
    for tool, result in ok_tools(tools):
        value = median_seconds(result, "no_change")
        share = ratio_median(result, "no_change", "to_own_full_build")
        embedded = result["scenarios"]["no_change"]["chunks_embedded"]["median"]
        text = f"{TOOL_LABELS.get(tool, tool)} {value:.2f} s ({share:.1%} of its full build"
        text += f", re-embedding {plural(embedded, 'chunk')})" if embedded else ")"
        parts.append(text)
    return f"- No-change rerun: {', '.join(parts)}."


def read_edit(tools: dict[str, Any]) -> list[str]:
    ours = tools["ragpipe"]
    edit = ours["scenarios"]["edit_1pct"]
    seconds = edit["seconds"]["median"]
    share = ratio_median(ours, "edit_1pct", "to_own_full_build")
    lines = [
        f"- Edit rerun: ragpipe embedded {plural(edit['chunks_embedded']['median'], 'chunk')} in {seconds:.2f} s "
        f"({share:.1%} of its full build). {edit['encode_seconds']['median']:.2f} s of it was inside "
        f"encode and {outside_encode(ours, 'edit_1pct'):.2f} s outside, which includes starting the worker "
        "processes and loading the tokenizer in each."
    ]
    for tool, result in ok_tools(tools):
        if tool == "ragpipe":
            continue
        peer_edit = result["scenarios"]["edit_1pct"]
        lines.append(
            f"  {TOOL_LABELS[tool]} embedded {plural(peer_edit['chunks_embedded']['median'], 'chunk')} in "
            f"{peer_edit['seconds']['median']:.2f} s ({peer_edit['encode_seconds']['median']:.2f} s inside encode)."
        )
    return lines


def read_delete(tools: dict[str, Any]) -> str:
    times = ", ".join(
        f"{TOOL_LABELS.get(tool, tool)} {median_seconds(result, 'delete_1pct'):.2f} s"
        for tool, result in ok_tools(tools)
    )
    stale = [
        TOOL_LABELS.get(tool, tool) for tool, result in ok_tools(tools)
        if result["scenarios"]["delete_1pct"].get("stale_chunks", {}).get("max", 0) > 0
    ]
    if stale:
        return f"- Delete rerun: {times}. Chunks of deleted files were still stored by: {', '.join(stale)}."
    return f"- Delete rerun: {times}. No tool kept chunks of the deleted files."


def read_memory(tools: dict[str, Any]) -> str:
    memory = ", ".join(
        f"{TOOL_LABELS.get(tool, tool)} {result['peak_tree_rss_mib']['median']:.0f} MiB"
        for tool, result in ok_tools(tools, with_floor=True)
    )
    return f"- Peak memory: {memory}. ragpipe's figure includes its forkserver and worker processes."


def render_scale(section: dict[str, Any], reference_versions: dict[str, str] | None) -> list[str]:
    lines = [
        "### Scale series (ragpipe and the floor)",
        "",
        f"Corpus: {section['corpus']['name']}. Repetitions: {section['repetitions']} per size.",
        "",
        *provenance_lines(section, reference_versions),
        "",
        "| documents | chunks | ragpipe full build s | ms per document | floor s | x floor | no-change rerun s | peak RSS MiB (process tree) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    costs = {}
    for size, entry in section["sizes"].items():
        ours = entry["tools"].get("ragpipe", {})
        if ours.get("status") != "ok":
            lines.append(f"| {size} | {ours.get('status', 'not run')}: {ours.get('reason', '')} | | | | | | |")
            continue
        full = ours["scenarios"]["full_build"]
        seconds = full["seconds"]["median"]
        costs[int(size)] = seconds / int(size)
        floor = median_seconds(entry["tools"].get("floor", {}), "full_build")
        rerun = ours["scenarios"].get("no_change")
        lines.append(
            f"| {size} | {fmt_count(full['chunks_embedded'])} | {fmt_spread(full['seconds'])} "
            f"| {1000 * seconds / int(size):.1f} | {fmt(floor)} | {fmt_ratio(ours['ratios']['full_build']['to_floor'])} "
            f"| {fmt_spread(rerun['seconds'], 3) if rerun else 'n/a'} | {fmt_spread(ours['peak_tree_rss_mib'], 0)} |"
        )
    lines += ["", "Reading:", ""]
    if len(costs) >= 2:
        small, large = min(costs), max(costs)
        ratio = costs[large] / costs[small]
        trend = (
            "Per-run fixed costs, such as starting the worker processes, are spread over more documents at "
            "the larger size." if ratio < 1 else "The cost per document grew with the corpus."
        )
        lines.append(
            f"- ragpipe's cost per document was {1000 * costs[small]:.1f} ms at {small} documents and "
            f"{1000 * costs[large]:.1f} ms at {large} ({ratio:.2f}x). {trend}"
        )
    else:
        lines.append("- Fewer than two sizes have numbers, so there is no growth to read.")
    return lines + load_warning(section)


def render_dedupe(section: dict[str, Any], reference_versions: dict[str, str] | None) -> list[str]:
    lines = ["### Dedupe (benchmarks/dedupe.py)", ""]
    if section.get("status") != "ok":
        return lines + [f"Not available: {section.get('reason', 'not run')}."]
    return lines + [
        f"Output of `{section['dedupe_command']}`, one run (the script does not repeat itself, so there "
        "is no min or max):",
        "",
        *provenance_lines(section, reference_versions),
        "",
        "```text",
        section["output"],
        "```",
    ]


def render_markdown(report: dict[str, Any]) -> str:
    sections = report["sections"]
    lines = [
        "## Side-by-side benchmarks",
        "",
        "Generated by `benchmarks/run.py`: change the script and rerun it rather than editing this "
        "section. Raw numbers, machine and library versions: `docs/benchmarks.json`.",
        "",
        *setup_lines(),
        "",
        "### Targets",
        "",
        "The first three targets are read from the SciFact section below, the last from the scale series.",
        "",
        *targets_table(report["targets"]),
    ]
    renderers = (("scifact", render_scifact), ("scale", render_scale), ("dedupe", render_dedupe))
    reference_versions = None
    for name, render in renderers:
        if name in sections:
            lines += ["", *render(sections[name], reference_versions)]
            reference_versions = reference_versions or sections[name].get("versions")
    if "serve" in sections:
        lines += ["", "### Serve", "", f"Not available: {sections['serve']['reason']}."]
    return "\n".join(lines) + "\n"


# ---- command line --------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=SUITES, default="all", help="suite to run (default: all)")
    parser.add_argument("--quick", action="store_true",
                        help="300 SciFact documents, 1 repetition of the peers, scale sizes 100 and 500")
    parser.add_argument("--docs", type=int, help="SciFact documents to use (default 5183, quick 300)")
    parser.add_argument("--repetitions", type=int, help="repetitions of ragpipe and the floor (default 3)")
    parser.add_argument("--peer-repetitions", type=int, help="repetitions of each peer (default 3, quick 1)")
    parser.add_argument("--scale-sizes", type=lambda text: [int(part) for part in text.split(",")],
                        help="comma-separated document counts of the scale series (default 1000,5000,20000)")
    parser.add_argument("--peers", nargs="*", choices=PEERS,
                        help="peers to run (default: all); give none to run ragpipe and the floor only")
    parser.add_argument("--workers", type=int, default=2, help="ragpipe worker processes (default 2)")
    parser.add_argument("--output-dir", type=Path, default=REPO / "docs",
                        help="folder for benchmarks.md and benchmarks.json (default: docs/)")
    parser.add_argument("--render-only", action="store_true",
                        help="rewrite the generated part of benchmarks.md from benchmarks.json; run nothing")
    return parser.parse_args(argv)


def run(settings: Settings, command: str, output_dir: Path) -> dict[str, Any]:
    """Run the suites in `settings`, write the report files and return the new sections."""
    sections: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ragpipe-bench-") as temp_name:
        temp = Path(temp_name)
        if "incremental" in settings.suites:
            logger.info("SciFact: all four scenarios on %d documents", settings.scifact_docs)
            sections["scifact"] = run_scifact_section(settings, command, list(SCENARIOS), temp)
        elif "ingest" in settings.suites:
            logger.info("SciFact: full build on %d documents", settings.scifact_docs)
            sections["scifact"] = run_scifact_section(settings, command, ["full_build"], temp)
        if "ingest" in settings.suites or "scale" in settings.suites:
            logger.info("scale series: sizes %s", settings.scale_sizes)
            sections["scale"] = run_scale_section(settings, command, temp)
    if "dedupe" in settings.suites:
        sections["dedupe"] = run_dedupe_section(settings, command)
    if "serve" in settings.suites:
        sections["serve"] = serve_section(command)
        logger.warning("serve: %s", sections["serve"]["reason"])
    markdown_path, json_path = write_outputs(output_dir, sections, command)
    logger.info("wrote %s and %s", markdown_path, json_path)
    return sections


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.render_only:
        markdown_path, _ = write_outputs(args.output_dir, {}, None)
        logger.info("rewrote %s from the JSON report", markdown_path)
        return
    settings = Settings.from_args(args)
    command = shlex.join(["python", "-m", "benchmarks.run", *(sys.argv[1:] if argv is None else argv)])
    if set(settings.suites) & {"ingest", "incremental", "scale"} and not (SCIFACT / "corpus.jsonl").exists():
        raise SystemExit(f"SciFact corpus not found at {SCIFACT / 'corpus.jsonl'}; the ../shared folder is required")
    run(settings, command, args.output_dir)


if __name__ == "__main__":
    main()
