"""Config validation: every error names the key path, the bad value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rag_pipeline.cli import main
from rag_pipeline.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]


def _base() -> dict:
    return {
        "name": "t",
        "workspace": "ws",
        "sources": [{"type": "files", "path": "docs"}],
        "pipeline": [
            {"parse": {}},
            {"clean": {}},
            {"dedupe_exact": {}},
            {"chunk": {"max_tokens": 128, "overlap_tokens": 16}},
            {"embed": {"model": "all-MiniLM-L6-v2"}},
        ],
    }


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def test_quickstart_config_is_valid():
    config = load_config(REPO / "configs" / "quickstart.yaml")
    assert config.name == "quickstart"
    assert config.workspace.is_absolute()
    assert config.sources[0].path == (REPO / "examples" / "docs").resolve()


def test_relative_paths_resolve_against_config_folder(tmp_path):
    config = load_config(_write(tmp_path, _base()))
    assert config.workspace == (tmp_path / "ws").resolve()
    assert config.sources[0].path == (tmp_path / "docs").resolve()


def test_chunk_tokenizer_follows_embed_model(tmp_path):
    config = load_config(_write(tmp_path, _base()))
    chunk_args = next(step["chunk"] for step in config.pipeline if "chunk" in step)
    assert chunk_args.tokenizer == "all-MiniLM-L6-v2"


def _mutate(change):
    data = _base()
    change(data)
    return data


@pytest.mark.parametrize(
    ("change", "expected_fragments"),
    [
        (lambda d: d["pipeline"][3]["chunk"].update(max_tokens="many"), ["pipeline[3].chunk.max_tokens", "'many'"]),
        (lambda d: d["pipeline"][3]["chunk"].update(size=3), ["pipeline[3].chunk.size", "allowed keys"]),
        (lambda d: d["pipeline"].insert(1, {"shred": {}}), ["pipeline[1]", "unknown operator 'shred'", "known operators"]),
        (lambda d: d["executor"] if False else d.update(executor={"type": "cluster"}), ["executor", "'cluster'"]),
        (lambda d: d["sources"][0].update(type="s3"), ["sources[0]", "'s3'"]),
        (lambda d: d.pop("workspace"), ["workspace", "Field required"]),
        (lambda d: d["pipeline"].reverse(), ["pipeline[0]", "first step must be `parse`"]),
        (lambda d: d["pipeline"].pop(4), ["`embed` step is required"]),
        (lambda d: d["pipeline"].__setitem__(3, {"chunk": {}, "embed": {}}), ["pipeline[3]", "exactly one operator"]),
        (lambda d: d.update(name="bad name!"), ["name", "'bad name!'"]),
        (lambda d: d.update(executor={"type": "local", "workers": 0}), ["executor.workers", "greater than or equal to 1"]),
        (lambda d: d["pipeline"].__setitem__(3, {"chunk": [254]}), ["pipeline[3].chunk", "must be a mapping", "[254]", "max_tokens"]),
        (lambda d: d["sources"][0].update(include="**/*.md"), ["sources[0].include", "'**/*.md'", "write a YAML list"]),
        (lambda d: d.update(executor={"type": "ray", "workers": 2}), ["executor.workers", "allowed keys: address, batch_size"]),
        (lambda d: d.update(refresh={"max_delete": 0.2}), ["refresh.max_delete", "allowed keys: max_delete_fraction"]),
    ],
    ids=[
        "wrong-type", "unknown-arg", "unknown-operator", "unknown-executor", "unknown-source-type",
        "missing-workspace", "parse-not-first", "no-embed", "two-keys-in-step", "bad-name", "zero-workers",
        "args-not-mapping", "include-not-list", "ray-unknown-key", "refresh-unknown-key",
    ],
)
def test_config_error_names_key_and_value(tmp_path, change, expected_fragments):
    path = _write(tmp_path, _mutate(change))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    for fragment in expected_fragments:
        assert fragment in message


def test_chunk_overlap_must_be_below_max(tmp_path):
    data = _base()
    data["pipeline"][3]["chunk"] = {"max_tokens": 64, "overlap_tokens": 64}
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, data))
    assert "pipeline[3].chunk" in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert "config file not found" in str(info.value)


def test_invalid_yaml(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "invalid YAML" in str(info.value)


def test_unknown_custom_operator_module(tmp_path):
    data = _base()
    data["custom_operators"] = ["no_such_company.ops"]
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, data))
    assert "custom_operators" in str(info.value)
    assert "no_such_company.ops" in str(info.value)


def test_cli_validate_exit_codes(tmp_path, capsys):
    (tmp_path / "docs").mkdir()
    good = _write(tmp_path, _base())
    assert main(["validate", str(good)]) == 0
    bad_data = _base()
    bad_data["pipeline"][3]["chunk"]["max_tokens"] = -5
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(bad_data))
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "pipeline[3].chunk.max_tokens" in err


def test_cli_usage_error_exit_code():
    assert main(["no-such-command"]) == 2


def test_top_level_typo_lists_allowed_keys(tmp_path):
    data = _base()
    data["pipline"] = data.pop("pipeline")
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, data))
    assert "pipline" in str(info.value)
    assert "allowed top-level keys" in str(info.value)


def test_validate_rejects_missing_source_folder(tmp_path, capsys):
    data = _base()
    data["sources"][0]["path"] = "no-such-folder"
    assert main(["validate", str(_write(tmp_path, data))]) == 2
    assert "sources[0].path" in capsys.readouterr().err


_STRICT_YAML = """
name: t
workspace: ws
sources: [{{type: files, path: docs}}]
{executor}
pipeline:
  - parse: {{{parse}}}
  - dedupe_minhash: {{{minhash}}}
  - chunk: {{{chunk}}}
  - embed: {{}}
"""


@pytest.mark.parametrize(
    ("fields", "expected_fragments"),
    [
        ({"minhash": "threshold: true"}, ["pipeline[1].dedupe_minhash.threshold", "(got True)", "true and false are not numbers"]),
        ({"minhash": 'threshold: "0.9"'}, ["pipeline[1].dedupe_minhash.threshold", "(got '0.9')", "without quotes"]),
        ({"chunk": "max_tokens: 200.0"}, ["pipeline[2].chunk.max_tokens", "(got 200.0)", "whole number"]),
        ({"executor": "executor: {type: local, workers: yes}"}, ["executor.workers", "(got True)"]),
        ({"parse": "ocr: 'no'"}, ["pipeline[0].parse.ocr", "true or false without quotes"]),
        ({"parse": "pdf_passwords: [123456]"}, ["pipeline[0].parse.pdf_passwords[0]", "hidden", "in quotes"]),
    ],
    ids=["bool-as-float", "quoted-float", "float-as-int", "yes-as-int", "quoted-bool", "numeric-password"],
)
def test_scalar_types_are_strict(tmp_path, fields, expected_fragments):
    values = {"executor": "", "parse": "", "minhash": "", "chunk": "", **fields}
    path = tmp_path / "pipeline.yaml"
    path.write_text(_STRICT_YAML.format(**values))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    for fragment in expected_fragments:
        assert fragment in message
    assert "123456" not in message


@pytest.mark.parametrize(
    "parse_step",
    [
        '  - parse:\n      pdf_passwords: ["Hunter2secret"]\n    clean: {}\n',
        "  - parse: [pdf_passwords, Hunter2secret]\n",
        '  - parse: "pdf_passwords=Hunter2secret"\n',
    ],
    ids=["missing-dash", "list-args", "string-args"],
)
def test_malformed_step_hides_password(tmp_path, parse_step):
    text = "name: t\nworkspace: ws\nsources: [{type: files, path: docs}]\npipeline:\n" + parse_step
    text += "  - chunk: {}\n  - embed: {}\n"
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "pipeline" in message
    assert "Hunter2secret" not in message
    assert "<hidden>" in message
    assert "Value error" not in message


def test_integer_accepted_for_float(tmp_path):
    path = tmp_path / "pipeline.yaml"
    path.write_text(_STRICT_YAML.format(executor="", parse="max_file_mb: 5", minhash="threshold: 1", chunk=""))
    config = load_config(path)
    assert config.pipeline[0]["parse"].max_file_mb == 5.0
    assert config.pipeline[1]["dedupe_minhash"].threshold == 1.0
