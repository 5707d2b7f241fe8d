"""The `ragpipe` command line.

Exit codes: 0 success, 2 config or usage error, 1 run failure. Messages go to stderr in plain words;
`--json` output goes to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad command-line usage; exits with code 2."""


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _load(path: str):
    from rag_pipeline.config import load_config

    return load_config(path)


# ---- commands ---------------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    from rag_pipeline.config import ConfigError

    config = _load(args.config)
    for index, source in enumerate(config.sources):
        exists = source.path.is_dir() if source.type == "files" else source.path.is_file()
        if not exists and "://" not in str(source.path):
            kind = "folder" if source.type == "files" else "file"
            raise ConfigError(
                f"sources[{index}].path: {kind} {source.path} does not exist "
                "(relative paths resolve against the config file's folder)"
            )
    steps = [next(iter(step)) for step in config.pipeline]
    print(f"{args.config}: valid; pipeline: {' -> '.join(steps)}; workspace: {config.workspace}", file=sys.stderr)
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from rag_pipeline.runner import RunOptions, run_pipeline

    config = _load(args.config)
    options = RunOptions(allow_mass_delete=args.allow_mass_delete, show_progress=not args.quiet)
    summary = run_pipeline(config, options)
    _report(summary, args.json)
    return EXIT_OK


def cmd_backfill(args: argparse.Namespace) -> int:
    from rag_pipeline.changes import BackfillSelection
    from rag_pipeline.runner import RunOptions, run_pipeline

    if not (args.paths or args.since or args.all):
        raise UsageError("backfill needs one of --paths GLOB, --since ISO_TIME or --all")
    since = None
    if args.since:
        try:
            since = datetime.fromisoformat(args.since)
        except ValueError as err:
            raise UsageError(f"--since {args.since!r} is not an ISO 8601 time such as 2026-01-31T12:00:00") from err
        if since.tzinfo is None:
            since = since.astimezone()
    config = _load(args.config)
    selection = BackfillSelection(paths=args.paths or [], since=since, everything=args.all)
    options = RunOptions(
        kind="backfill", backfill=selection, reason=args.reason,
        allow_mass_delete=args.allow_mass_delete, show_progress=not args.quiet,
    )
    summary = run_pipeline(config, options)
    _report(summary, args.json)
    if summary.changes.get("backfill", 0) == 0:
        print("warning: the backfill selection matched no document; check --paths, --since or use --all",
              file=sys.stderr)
    return EXIT_OK


def _report(summary, as_json: bool) -> None:
    status = summary.to_status()
    if as_json:
        _print_json(status)
        return
    docs, chunks, changes = status["documents"], status["chunks"], status["changes"]
    print(
        f"run {status['run_id']} ({status['kind']}): version {status['version']} in {status['wall_seconds']:.1f} s\n"
        f"  documents: {docs['seen']} seen, {docs['indexed']} indexed, {docs['unchanged']} unchanged, "
        f"{docs['duplicate']} duplicate, {docs['filtered']} filtered, {docs['quarantined']} quarantined, "
        f"{docs['deleted']} deleted\n"
        f"  changes: {changes}\n"
        f"  chunks: {chunks['total']} in the table, {chunks['embedded']} embedded, {chunks['reused']} reused",
        file=sys.stderr,
    )


def _require_index(config, config_path: str) -> None:
    from rag_pipeline.runner import workspace_for

    if not (workspace_for(config).lance_dir / "chunks.lance").exists():
        raise NothingIndexedError(
            f"nothing is indexed in {config.workspace} yet; run `ragpipe run {config_path}` first"
        )


class NothingIndexedError(Exception):
    """The workspace has no chunks table yet; exits with code 1."""


def cmd_status(args: argparse.Namespace) -> int:
    from rag_pipeline.analytics import Analytics
    from rag_pipeline.runner import workspace_for

    config = _load(args.config)
    last = Analytics(workspace_for(config).analytics_path).last_run()
    if last is None:
        print(f"no run recorded in {config.workspace}; run `ragpipe run {args.config}` first", file=sys.stderr)
        return EXIT_FAILURE
    status = {"run_id": last["run_id"], "status": last["status"], **last["summary"]}
    status.setdefault("version", last["version"])
    if last["status"] != "completed":
        status["error"] = last["error"]
    if args.json:
        _print_json(status)
    else:
        for key, value in status.items():
            print(f"{key}: {value}")
    return EXIT_OK


def cmd_documents(args: argparse.Namespace) -> int:
    from rag_pipeline.analytics import Analytics
    from rag_pipeline.runner import workspace_for
    from rag_pipeline.state import Manifest

    config = _load(args.config)
    workspace = workspace_for(config)
    if not workspace.lance_dir.exists():
        print(f"no run recorded in {config.workspace}; run `ragpipe run {args.config}` first", file=sys.stderr)
        return EXIT_FAILURE
    entries = Manifest(workspace.connect()).load()
    rows = [
        {
            "uri": e.uri, "doc_id": e.doc_id, "state": e.state, "reason": e.reason,
            "duplicate_of": e.duplicate_of, "similarity": e.similarity, "chunks": e.chunks,
            "error_class": e.error_class, "fix": e.fix, "format": e.format,
            "depends_on": e.extra.get("depends_on", []),
        }
        for e in sorted(entries.values(), key=lambda e: e.doc_id)
    ]
    last = Analytics(workspace.analytics_path).last_run()
    if last is not None:
        for row in Analytics(workspace.analytics_path).run_document_states(last["run_id"], "deleted"):
            rows.append({"uri": row["uri"], "doc_id": row["doc_id"], "state": "deleted", "reason": "deleted from the source",
                         "duplicate_of": None, "similarity": None, "chunks": 0, "error_class": None, "fix": None,
                         "format": None, "depends_on": []})
    if args.state:
        rows = [r for r in rows if r["state"] == args.state]
    if args.json:
        _print_json(rows)
    else:
        for row in rows:
            detail = row["reason"] or ""
            if row["similarity"] is not None:
                detail += f" (estimated similarity {row['similarity']:.2f})"
            print(f"{row['state']:<12} {row['chunks']:>5}  {row['uri']}  {detail}")
    return EXIT_OK


def cmd_operators(args: argparse.Namespace) -> int:
    from operators.base import RegistryError
    from rag_pipeline.operator_docs import describe_operators, render_markdown, render_text

    try:
        docs = describe_operators(args.names)
    except RegistryError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        _print_json([dataclasses.asdict(doc) for doc in docs])
    elif args.markdown:
        print(render_markdown(docs), end="")
    else:
        print(render_text(docs), end="")
    return EXIT_OK


def cmd_search(args: argparse.Namespace) -> int:
    _require_index(_load(args.config), args.config)
    from rag_pipeline.search import search

    config = _load(args.config)
    if not args.query.strip():
        raise UsageError("the search query is empty; pass the text to search for")
    if args.k < 1:
        raise UsageError(f"-k must be at least 1, got {args.k}")
    result = search(config, args.query, k=args.k, version=args.version)
    if args.json:
        _print_json(result)
        return EXIT_OK
    print(f"version {result['version']}: {len(result['hits'])} hits for {args.query!r}")
    for rank, hit in enumerate(result["hits"], start=1):
        snippet = " ".join(hit["text"].split())[:200]
        print(f"{rank}. [{hit['score']:.3f}] {hit['uri']}\n   {snippet}")
    return EXIT_OK


def cmd_versions(args: argparse.Namespace) -> int:
    _require_index(_load(args.config), args.config)
    from dataclasses import asdict

    from rag_pipeline.index import ChunkIndex
    from rag_pipeline.runner import workspace_for

    config = _load(args.config)
    index = ChunkIndex(workspace_for(config).lance_dir)
    rows = []
    for info in index.versions():
        row = asdict(info)
        if info.run_id is not None or info.served:
            row["documents"] = index.count_documents(info.version)
        rows.append(row)
    if args.json:
        _print_json(rows)
    else:
        for row in rows:
            mark = "*" if row["served"] else " "
            print(f"{mark} v{row['version']:<4} {row['created_at']}  run={row['run_id']}  chunks={row['chunks']}  tags={row['tags']}")
    return EXIT_OK


def cmd_rollback(args: argparse.Namespace) -> int:
    _require_index(_load(args.config), args.config)
    from rag_pipeline.index import ChunkIndex
    from rag_pipeline.runner import workspace_for

    config = _load(args.config)
    served = ChunkIndex(workspace_for(config).lance_dir).rollback(args.version)
    print(f"served version is now {served}", file=sys.stderr)
    return EXIT_OK


def cmd_tag(args: argparse.Namespace) -> int:
    _require_index(_load(args.config), args.config)
    from rag_pipeline.index import ChunkIndex
    from rag_pipeline.runner import workspace_for

    config = _load(args.config)
    ChunkIndex(workspace_for(config).lance_dir).tag(args.version, args.name)
    print(f"version {args.version} tagged {args.name!r}; retention keeps it", file=sys.stderr)
    return EXIT_OK


def cmd_retention(args: argparse.Namespace) -> int:
    _require_index(_load(args.config), args.config)
    from rag_pipeline.index import ChunkIndex
    from rag_pipeline.runner import workspace_for

    config = _load(args.config)
    keep = args.keep if args.keep is not None else config.retention.keep_versions
    if keep < 1:
        raise UsageError(f"--keep must be at least 1, got {keep}")
    result = ChunkIndex(workspace_for(config).lance_dir).apply_retention(keep)
    _print_json(result)
    return EXIT_OK


# ---- parser -----------------------------------------------------------------------------------


def _version_or_tag(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ragpipe", description="RAG data pipeline engine.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, handler, help_text: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.add_argument("config", help="pipeline YAML file")
        command.set_defaults(handler=handler)
        return command

    add("validate", cmd_validate, "Check a config without running it.")
    run = add("run", cmd_run, "Run the pipeline: process new and changed documents, commit one version.")
    backfill = add("backfill", cmd_backfill, "Re-process chosen documents whatever their hashes.")
    for command in (run, backfill):
        command.add_argument("--json", action="store_true", help="print the run summary as JSON on stdout")
        command.add_argument("--quiet", action="store_true", help="no progress bar")
        command.add_argument("--allow-mass-delete", action="store_true",
                             help="allow deleting more than refresh.max_delete_fraction of the documents")
    backfill.add_argument("--paths", action="append", metavar="GLOB", help="doc_id, uri or relative-path glob; repeatable")
    backfill.add_argument("--since", metavar="ISO_TIME", help="documents modified at or after this time")
    backfill.add_argument("--all", action="store_true", help="every document")
    backfill.add_argument("--reason", help="why the backfill runs; stored with the run")

    status = add("status", cmd_status, "Show the last run's summary.")
    status.add_argument("--json", action="store_true")
    documents = add("documents", cmd_documents, "List every input document with its state.")
    documents.add_argument("--json", action="store_true")
    documents.add_argument("--state", choices=["indexed", "duplicate", "filtered", "quarantined", "deleted"])
    search = add("search", cmd_search, "Search the served version.")
    search.add_argument("query")
    search.add_argument("-k", type=int, default=5, help="number of hits (default 5)")
    search.add_argument("--version", type=int, help="search this table version instead of the served one")
    search.add_argument("--json", action="store_true")
    versions = add("versions", cmd_versions, "List table versions.")
    versions.add_argument("--json", action="store_true")
    rollback = add("rollback", cmd_rollback, "Point the served version at an earlier version.")
    rollback.add_argument("version", type=_version_or_tag, help="version number or tag name")
    tag = add("tag", cmd_tag, "Tag a version so retention keeps it.")
    tag.add_argument("version", type=int)
    tag.add_argument("name")
    operators_help = "List the operators and their arguments, defaults and limits."
    operators = sub.add_parser("operators", help=operators_help, description=operators_help)
    operators.add_argument("names", nargs="*", metavar="NAME", help="operators to show (default: all)")
    operators_format = operators.add_mutually_exclusive_group()
    operators_format.add_argument("--json", action="store_true", help="print JSON")
    operators_format.add_argument("--markdown", action="store_true", help="print Markdown, as in docs/operators.md")
    operators.set_defaults(handler=cmd_operators)
    retention = add("retention", cmd_retention, "Compact the table and remove old untagged versions.")
    retention.add_argument("--keep", type=int, help="versions to keep (default: retention.keep_versions)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return EXIT_USAGE if exit_.code not in (0, None) else EXIT_OK
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from rag_pipeline.config import ConfigError
    from rag_pipeline.index import IndexError_, InvalidVersionError
    from rag_pipeline.runner import RunError
    from rag_pipeline.sources import SourceError

    try:
        return args.handler(args)
    except (ConfigError, UsageError, InvalidVersionError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (RunError, SourceError, IndexError_, NothingIndexedError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FAILURE
    except BrokenPipeError:
        # The reader of our output (e.g. `| head`) went away; that is not an error.
        sys.stdout = open(os.devnull, "w")
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
