"""Pipeline configuration: one YAML file per pipeline, validated before any work starts.

Relative paths resolve against the folder of the config file. Every error names the key path
(for example `pipeline[3].chunk.max_tokens`), the bad value and what is allowed.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from operators.base import Operator, OperatorArgs, RegistryError, get_operator_class, registered_names

DEFAULT_MODEL = "all-MiniLM-L6-v2"


class ConfigError(ValueError):
    """A pipeline config is invalid. The message names the key path and what is allowed."""


class _Strict(BaseModel):
    # Strict types: `workers: true` or `max_delete_fraction: "0.5"` is an error, not a coercion.
    # Path fields opt out, because YAML gives them as strings.
    model_config = ConfigDict(extra="forbid", strict=True)


class FilesSource(_Strict):
    type: Literal["files"] = "files"
    name: str | None = Field(None, description="Source name used in document ids; defaults to the folder name.")
    path: Path = Field(strict=False, description="Folder of documents, relative to the config file.")
    include: list[str] = Field(default_factory=lambda: ["**/*"], description="Glob patterns of files to read.")
    exclude: list[str] = Field(default_factory=list, description="Glob patterns of files to skip.")


class JsonlSource(_Strict):
    type: Literal["jsonl"] = "jsonl"
    name: str | None = Field(None, description="Source name used in document ids; defaults to the file stem.")
    path: Path = Field(strict=False, description="JSON Lines file, one document per line.")
    id_field: str = Field("id", description="Field holding each record's unique id.")
    text_fields: list[str] = Field(default_factory=lambda: ["text"], description="Fields joined into the text.")
    metadata_fields: list[str] = Field(default_factory=list, description="Fields copied into metadata.")


SourceConfig = Annotated[FilesSource | JsonlSource, Field(discriminator="type")]


class LocalExecutorConfig(_Strict):
    type: Literal["local"] = "local"
    workers: int = Field(2, ge=1, le=256, description="Worker processes for CPU operators.")
    batch_size: int = Field(16, ge=1, le=10_000, description="Documents per worker task.")


class RayExecutorConfig(_Strict):
    type: Literal["ray"] = "ray"
    address: str | None = Field(None, description="null starts a local Ray; 'auto' or ray://host:port joins one.")
    batch_size: int = Field(16, ge=1, le=10_000, description="Documents per Ray Data block batch.")
    num_cpus: int | None = Field(None, ge=1, description="CPUs for a local Ray started by the run.")
    embed_actors: int = Field(1, ge=1, le=1024, description="Actors in the embedding pool; each loads the model once.")
    embed_num_gpus: float = Field(0.0, ge=0.0, description="GPUs per embedding actor.")
    include_dashboard: bool = Field(False, description="Start the Ray dashboard with a local Ray.")

    @field_validator("address")
    @classmethod
    def _check_address(cls, address: str | None) -> str | None:
        from rag_pipeline.executors.ray_runtime import validate_address

        validate_address(address)
        return address


ExecutorConfig = Annotated[LocalExecutorConfig | RayExecutorConfig, Field(discriminator="type")]


class RefreshConfig(_Strict):
    max_delete_fraction: float = Field(
        0.5, ge=0.0, le=1.0,
        description="Deleting more than this share of indexed documents in one run needs --allow-mass-delete.",
    )


class RetentionConfig(_Strict):
    keep_versions: int = Field(10, ge=1, description="Untagged table versions to keep; older ones are removed.")


class PipelineConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Pipeline name.")
    workspace: Path = Field(strict=False, description="Folder (or object-store URI) for Lance tables and analytics.duckdb.")
    sources: list[SourceConfig] = Field(min_length=1)
    executor: ExecutorConfig = Field(default_factory=LocalExecutorConfig)
    pipeline: list[dict[str, Any]] = Field(min_length=1)
    custom_operators: list[str] = Field(default_factory=list, description="Python modules that register operators.")
    refresh: RefreshConfig = Field(default_factory=RefreshConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)

    # Set by load_config: the config file's folder, and the operators built from `pipeline`.
    config_path: Path | None = Field(None, exclude=True)

    @field_validator("pipeline")
    @classmethod
    def _one_key_per_step(cls, steps: list[Any]) -> list[Any]:
        for index, step in enumerate(steps):
            if not isinstance(step, dict) or len(step) != 1:
                raise ValueError(
                    f"pipeline[{index}] must be a mapping with exactly one operator name, "
                    f"e.g. `- chunk: {{max_tokens: 256}}`; got {redact_secrets(step)!r}"
                )
        return steps

    def source_names(self) -> list[str]:
        return [source_name(s) for s in self.sources]

    def build_operators(self) -> list[Operator]:
        return build_operators(self.pipeline)


def source_name(source: FilesSource | JsonlSource) -> str:
    if source.name:
        return source.name
    return source.path.stem if source.type == "jsonl" else source.path.name


# ---- loading ----------------------------------------------------------------------------------


def load_config(path: str | Path) -> PipelineConfig:
    """Read, validate and resolve a pipeline YAML file. Raise `ConfigError` on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping with keys name, workspace, sources, pipeline")
    return config_from_dict(raw, base_dir=path.resolve().parent, config_path=path.resolve())


def config_from_dict(raw: dict[str, Any], base_dir: Path, config_path: Path | None = None) -> PipelineConfig:
    """Validate a config mapping; relative paths resolve against `base_dir`."""
    for module in raw.get("custom_operators") or []:
        import_custom_operators(module)
    try:
        config = PipelineConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err)) from None
    config.config_path = config_path
    config.workspace = _resolve(config.workspace, base_dir)
    for source in config.sources:
        source.path = _resolve(source.path, base_dir)
    names = config.source_names()
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ConfigError(f"sources: names must be unique, {sorted(duplicates)} used twice; set `name:` on each source")
    config.pipeline = validate_pipeline(config.pipeline)
    return config


def import_custom_operators(module: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError as err:
        raise ConfigError(
            f"custom_operators: cannot import module {module!r} ({err}); "
            "make sure it is installed or on PYTHONPATH"
        ) from err


def _resolve(path: Path, base_dir: Path) -> Path:
    text = str(path)
    if "://" in text:  # object-store URI such as s3://bucket/prefix
        return path
    path = path.expanduser()
    return path if path.is_absolute() else (base_dir / path).resolve()


def format_validation_error(err: ValidationError) -> str:
    lines = ["invalid config:"]
    for item in err.errors():
        key = _key_path(item["loc"])
        message = item["msg"]
        if item["type"] == "union_tag_invalid" or item["type"] == "literal_error":
            message = f"{message}"
        if item["type"] == "value_error":
            # Our own validators put the offending value in the message already.
            message = message.removeprefix("Value error, ")
            detail = ""
        elif item["type"] == "missing":
            detail = ""
        else:
            detail = f" (got {_format_input(item)}){_type_hint(item)}"
        if item["type"] == "extra_forbidden" and len(item["loc"]) == 1:
            detail += "; allowed top-level keys: " + ", ".join(sorted(set(PipelineConfig.model_fields) - {"config_path"}))
        elif item["type"] == "extra_forbidden":
            detail += _nested_allowed_keys(item["loc"])
        lines.append(f"  {key}: {message}{detail}")
    return "\n".join(lines)


def _nested_allowed_keys(loc: tuple[Any, ...]) -> str:
    """List the keys allowed where an unknown nested key sits, such as under `executor` (ray)."""
    models = {
        "local": LocalExecutorConfig, "ray": RayExecutorConfig, "files": FilesSource,
        "jsonl": JsonlSource, "refresh": RefreshConfig, "retention": RetentionConfig,
    }
    for part in reversed(loc[:-1]):
        if isinstance(part, str) and part in models:
            return "; allowed keys: " + ", ".join(sorted(models[part].model_fields))
    return ""


_HIDDEN = "<hidden>"


def _names_secret(text: Any) -> bool:
    return isinstance(text, str) and "password" in text.lower()


def redact_secrets(value: Any) -> Any:
    """Return `value` with every value under a key naming a password replaced by "<hidden>".

    A list or string that mentions a password without being a mapping (a mistyped
    `parse: [pdf_passwords, secret]`) is hidden whole, because the secret in it cannot be located.
    """
    if isinstance(value, dict):
        return {key: _HIDDEN if _names_secret(key) else redact_secrets(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        if any(_names_secret(item) for item in value):
            return _HIDDEN
        return [redact_secrets(item) for item in value]
    if _names_secret(value):
        return _HIDDEN
    return value


def _format_input(item: Any) -> str:
    """Format the invalid value for an error message. A key naming a password shows only the type."""
    value = item.get("input")
    if any(_names_secret(str(part)) for part in item["loc"]):
        return f"a value of type {type(value).__name__}, hidden"
    return repr(redact_secrets(value))


_SCALAR_TYPE_ERRORS = {"int_type": "an integer", "float_type": "a number", "bool_type": "true or false"}


def _type_hint(item: Any) -> str:
    """Return how to write a scalar that failed strict validation, or "" for other errors."""
    expected = _SCALAR_TYPE_ERRORS.get(item["type"])
    value = item.get("input")
    if item["type"] == "string_type" and isinstance(value, (int, float)):
        return "; put the value in quotes"
    if item["type"] == "list_type" and not isinstance(value, dict):
        return "; write a YAML list, for example [first, second]"
    if expected is None:
        return ""
    if isinstance(value, str):
        return f"; write {expected} without quotes"
    if isinstance(value, bool):
        return f"; true and false are not numbers, write {expected}"
    if item["type"] == "int_type" and isinstance(value, float):
        return "; write a whole number without a decimal point"
    return f"; write {expected}"


def _key_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in ("files", "jsonl", "local", "ray"):
            continue  # discriminator tags pydantic inserts into the location
        else:
            path += f".{part}" if path else str(part)
    return path or "(top level)"


# ---- pipeline steps ---------------------------------------------------------------------------

# Order constraints between built-in steps: (earlier, later).
_ORDER_RULES = [
    ("parse", "clean"),
    ("parse", "chunk"),
    ("clean", "chunk"),
    ("dedupe_exact", "chunk"),
    ("dedupe_minhash", "chunk"),
    ("chunk", "embed"),
    ("embed", "dedupe_semantic"),
]


def validate_pipeline(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Check each step's operator name and arguments; return the steps with validated args."""
    validated: list[dict[str, Any]] = []
    names: list[str] = []
    for index, step in enumerate(steps):
        (name, args), = step.items()
        try:
            cls = get_operator_class(name)
        except RegistryError as err:
            raise ConfigError(f"pipeline[{index}]: {err}") from None
        try:
            parsed = cls.Args.model_validate(args or {})
        except ValidationError as err:
            details = []
            for item in err.errors():
                key = _key_path((f"pipeline[{index}]", name, *item["loc"]))
                key = key.replace(".[", "[")
                allowed = _allowed_fields(cls.Args) if item["type"] == "extra_forbidden" else ""
                detail = "" if item["type"] == "missing" else f" (got {_format_input(item)}){_type_hint(item)}"
                message = item["msg"]
                if item["type"] == "model_type" and not item["loc"]:
                    # pydantic names the internal Args class here, which means nothing in YAML.
                    message = "the arguments must be a mapping of names to values, or {} for none"
                    allowed = _allowed_fields(cls.Args)
                details.append(f"  {key}: {message}{detail}{allowed}")
            raise ConfigError("invalid config:\n" + "\n".join(details)) from None
        validated.append({name: parsed})
        names.append(name)
    _check_order(names)
    _link_tokenizer(validated)
    return validated


def _allowed_fields(args_model: type[OperatorArgs]) -> str:
    fields = ", ".join(sorted(args_model.model_fields)) or "none"
    return f"; allowed keys: {fields}"


def _check_order(names: list[str]) -> None:
    if names[0] != "parse":
        raise ConfigError(f"pipeline[0]: the first step must be `parse`, got `{names[0]}`")
    for required in ("chunk", "embed"):
        if required not in names:
            raise ConfigError(f"pipeline: a `{required}` step is required (known operators: {', '.join(registered_names())})")
    for earlier, later in _ORDER_RULES:
        if earlier in names and later in names and names.index(earlier) > names.index(later):
            raise ConfigError(
                f"pipeline[{names.index(earlier)}]: `{earlier}` must come before `{later}` "
                f"(pipeline[{names.index(later)}])"
            )
    seen = set()
    for index, name in enumerate(names):
        if name in seen:
            raise ConfigError(f"pipeline[{index}]: operator `{name}` appears twice")
        seen.add(name)


def _link_tokenizer(steps: list[dict[str, Any]]) -> None:
    """Make `chunk` count tokens with the embedding model's own tokenizer, unless set explicitly."""
    embed_args = next((s["embed"] for s in steps if "embed" in s), None)
    if embed_args is None:
        return
    model = getattr(embed_args, "model", DEFAULT_MODEL)
    for index, step in enumerate(steps):
        if "chunk" not in step:
            continue
        chunk_args = step["chunk"]
        args_type = type(chunk_args)
        if "tokenizer" not in args_type.model_fields or "tokenizer" in chunk_args.model_fields_set:
            continue
        # Re-validate from the user's own keys only, so defaults derived from the old tokenizer
        # (such as the max_tokens cap) are derived again for the embedding model.
        user_keys = chunk_args.model_dump(include=chunk_args.model_fields_set)
        try:
            step["chunk"] = args_type.model_validate({**user_keys, "tokenizer": model})
        except ValidationError as err:
            details = "; ".join(item["msg"] for item in err.errors())
            raise ConfigError(f"invalid config:\n  pipeline[{index}].chunk: {details}") from None


def build_operators(steps: list[dict[str, Any]]) -> list[Operator]:
    operators = []
    for step in steps:
        (name, args), = step.items()
        operators.append(get_operator_class(name)(args))
    return operators
