"""Checks the Ray executor runs before the first document: settings and operators it cannot run.

Each check raises `ConfigError` with the config key it is about (`executor.embed_num_gpus`,
`executor.embed_actors`, an operator's `runtime_env`, `custom_operators`), so a run fails in
seconds and commits nothing.
"""

from __future__ import annotations

import logging

import ray

from operators.base import Operator
from rag_pipeline.config import ConfigError, RayExecutorConfig
from rag_pipeline.executors.ray_stages import StageSpec
from rag_pipeline.executors.runtime_envs import code_modules_to_ship

logger = logging.getLogger(__name__)


def check_runtime_env_syntax(operators: list[Operator]) -> None:
    """Reject a declared `runtime_env` that is not a dict Ray accepts."""
    from ray.runtime_env import RuntimeEnv

    for op in operators:
        if op.runtime_env is None:
            continue
        if not isinstance(op.runtime_env, dict):
            raise ConfigError(f"operator {op.name!r}: runtime_env must be a dict, got {type(op.runtime_env).__name__}")
        try:
            RuntimeEnv(**op.runtime_env)
        except Exception as err:  # noqa: BLE001 - Ray raises several types for a malformed runtime_env
            raise ConfigError(f"operator {op.name!r}: invalid runtime_env {op.runtime_env!r}: {err}") from err


def check_cluster(settings: RayExecutorConfig, stages: list, specs: list[StageSpec]) -> None:
    """Reject settings and operators the connected Ray cluster cannot run.

    `stages` are the executor's `RayStage`s and `specs` their `StageSpec`s, in the same order.
    """
    model_stages = [stage for stage in stages if stage.kind == "model"]
    if model_stages:
        check_gpus(settings.embed_num_gpus)
    for stage in model_stages:
        check_model_device(stage.stage.operators[0], settings.embed_num_gpus)
    check_cpus(settings.embed_actors if model_stages else 0, any(stage.kind == "map" for stage in stages))

    shipped = set(code_modules_to_ship([op for stage in stages for op in stage.stage.operators]))
    for stage, spec in zip(stages, specs):
        custom = any(type(op).__module__.split(".")[0] != "operators" for op in stage.stage.operators)
        if stage.kind != "global" and (stage.runtime_env or custom):
            probe_stage(spec, shipped)


def check_gpus(gpus_per_actor: float) -> None:
    if gpus_per_actor <= 0:
        return
    largest = max((node["Resources"].get("GPU", 0) for node in ray.nodes() if node["Alive"]), default=0)
    if largest >= gpus_per_actor:
        return
    found = f"the largest node has {largest:g}" if largest else "no node of the Ray cluster has a GPU"
    raise ConfigError(
        f"executor.embed_num_gpus: each embedding actor needs {gpus_per_actor:g} GPU(s), but {found}; "
        "set executor.embed_num_gpus: 0 to embed on CPUs, or add GPU nodes"
    )


def check_cpus(embed_actors: int, has_map: bool) -> None:
    """Reject more embedding actors than the cluster's CPUs leave room for next to the map tasks."""
    needed = embed_actors + (1 if has_map else 0)
    cpus = ray.cluster_resources().get("CPU", 0)
    if cpus >= needed:
        return
    raise ConfigError(
        f"executor.embed_actors: {embed_actors} embedding actors take one CPU each and the map "
        f"stages need at least one more, but the Ray cluster has {cpus:g} CPUs; lower "
        f"executor.embed_actors to at most {max(int(cpus) - 1, 1)} or add nodes"
    )


def check_model_device(op: Operator, gpus_per_actor: float) -> None:
    """Reject a GPU device when the actors get no GPU; warn when reserved GPUs would stay idle."""
    device = str(getattr(op.args, "device", "cpu"))
    if device.startswith("cuda") and gpus_per_actor <= 0:
        raise ConfigError(
            f"executor.embed_num_gpus is 0, so Ray gives the {op.name} actors no GPU, but {op.name}.device "
            f"is {device!r}; set executor.embed_num_gpus to the GPUs per actor (for example 1), or "
            f"{op.name}.device: cpu"
        )
    if device == "cpu" and gpus_per_actor > 0:
        logger.warning(
            "executor.embed_num_gpus reserves %g GPU(s) per %s actor, but %s.device is 'cpu', so "
            "the GPUs stay idle; set %s.device: cuda",
            gpus_per_actor, op.name, op.name, op.name,
        )


def probe_stage(spec: StageSpec, shipped: set[str]) -> None:
    """Load a stage's operators on a worker in the stage's runtime_env, or raise ConfigError."""
    try:
        probe = _load_operators.options(num_cpus=0, runtime_env=spec.runtime_env or None, max_retries=0)
        error = ray.get(probe.remote(spec.operators_ref))
    except Exception as err:  # RuntimeEnvSetupError, or a runtime_env that Ray rejects at submission
        detail = str(err).strip().splitlines()[-1] if str(err).strip() else "no details"
        raise ConfigError(
            f"operator(s) {spec.names}: Ray cannot set up their runtime_env {spec.runtime_env!r}: "
            f"{type(err).__name__}: {detail}"
        ) from err
    if error is None:
        return
    if shipped:
        hint = "the module was shipped with the job's py_modules, so one of its own imports is missing there"
    else:
        hint = "install the module on every Ray node, or put it on the driver's PYTHONPATH"
    raise ConfigError(f"custom_operators: operator(s) {spec.names} cannot be loaded on the Ray workers: {error}; {hint}")


@ray.remote
def _load_operators(operators_ref: tuple) -> str | None:
    try:
        ray.get(operators_ref[0])
    except (ImportError, AttributeError) as err:
        return f"{type(err).__name__}: {err}"
    return None
