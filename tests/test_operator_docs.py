"""The operator reference: `ragpipe operators` and docs/operators.md."""

from __future__ import annotations

import json
from pathlib import Path

from rag_pipeline.cli import main
from rag_pipeline.operator_docs import describe_operators, render_markdown

REPO = Path(__file__).resolve().parents[1]


def test_operators_doc_is_current():
    expected = render_markdown(describe_operators())
    current = (REPO / "docs" / "operators.md").read_text(encoding="utf-8")
    assert current == expected, "docs/operators.md is stale; run `ragpipe operators --markdown > docs/operators.md`"


def test_operators_lists_limits_and_choices(capsys):
    assert main(["operators", "--json", "dedupe_minhash"]) == 0
    (described,) = json.loads(capsys.readouterr().out)
    arguments = {argument["name"]: argument for argument in described["arguments"]}

    assert described["kind"] == "global"
    assert arguments["threshold"]["default"] == "0.8"
    assert arguments["threshold"]["limits"] == "> 0.0, <= 1.0"
    assert arguments["keep"]["limits"] == "one of 'longest', 'earliest', 'first_by_id'"
    assert "Jaccard" in arguments["threshold"]["description"]


def test_operators_unknown_name_exits_2(capsys):
    assert main(["operators", "no_such_operator"]) == 2
    error = capsys.readouterr().err
    assert "unknown operator 'no_such_operator'" in error
    assert "dedupe_minhash" in error
