"""Per-operator Ray `runtime_env` declarations: checks for the local executor, merging for Ray.

An operator may declare `runtime_env` (a Ray runtime environment: pip packages, environment
variables, a container image). The Ray executor passes it to the workers of that operator's stage.
The local executor runs every operator in the current Python environment, so it can honour a
declaration only where that environment already satisfies it. `check_runtime_envs_local` logs
which parts it cannot honour. This module does not import Ray.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import sys
from typing import Any, Iterable

from packaging.requirements import InvalidRequirement, Requirement

from operators.base import Operator

logger = logging.getLogger(__name__)

# Modules of ragpipe itself; every Ray node must have ragpipe installed, so they are never shipped.
_PROJECT_PACKAGES = ("operators", "rag_pipeline")


def check_runtime_envs_local(operators: Iterable[Operator], runner: str = "the local executor") -> list[str]:
    """Log a warning for each operator whose `runtime_env` cannot be honoured in this process.

    `runner` names what runs the operators here, for the message. An operator that runs
    in-process gets no environment of its own: pip and uv requirements count as honoured when the
    installed distributions satisfy them, and environment variables when the current process
    already has those values. Everything else (container images, conda, working_dir, py_modules)
    is ignored. Return the warning messages, one per operator.
    """
    messages = []
    for op in operators:
        env = op.runtime_env
        if not env:
            continue
        problems = _unmet_parts(env)
        if not problems:
            logger.debug("operator %s: its runtime_env %r is satisfied by this environment", op.name, env)
            continue
        message = (
            f"operator {op.name!r} declares runtime_env {env!r}, which {runner} cannot honour "
            f"({'; '.join(problems)}); it runs in this Python process as it is, so provide what it "
            "needs here"
        )
        if runner == "the local executor":
            message += ", or run the pipeline with `executor: {type: ray}`"
        logger.warning(message)
        messages.append(message)
    return messages


def _unmet_parts(env: dict[str, Any]) -> list[str]:
    problems = []
    for key, value in env.items():
        if key in ("pip", "uv"):
            unmet = unmet_requirements(_requirement_list(value))
            if unmet:
                problems.append(f"{key} requirements not installed here: {', '.join(unmet)}")
        elif key == "env_vars":
            differing = sorted(name for name, wanted in (value or {}).items() if os.environ.get(name) != str(wanted))
            if differing:
                problems.append(f"environment variables not set here: {', '.join(differing)}")
        elif key in ("config", "excludes"):
            continue  # settings of Ray's own environment set-up, with no meaning outside Ray
        else:
            problems.append(f"{key!r} is ignored outside Ray")
    return problems


def _requirement_list(value: Any) -> list[str]:
    if isinstance(value, dict):
        value = value.get("packages", [])
    if isinstance(value, str):
        # Ray reads a string as the path of a requirements file.
        return [f"-r {value}"]
    return [str(item) for item in value or []]


def unmet_requirements(requirements: list[str]) -> list[str]:
    """Return the requirement strings that the installed distributions do not satisfy.

    A line that is not a plain requirement (a file path, a URL, an option) cannot be checked and
    counts as unmet.
    """
    unmet = []
    for line in requirements:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            unmet.append(line)
            continue
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            installed = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            unmet.append(line)
            continue
        if requirement.specifier and not requirement.specifier.contains(installed, prereleases=True):
            unmet.append(f"{line} (installed: {installed})")
    return unmet


# ---- merging for the Ray executor -------------------------------------------------------------


def code_modules_to_ship(operators: Iterable[Operator]) -> list[str]:
    """Return the top-level modules of custom operators that Ray workers may not have installed.

    A custom operator defined in a plain source file or folder (not under site-packages or
    dist-packages) is shipped to the workers with the job's `py_modules`, so a `custom_operators:`
    module on the driver's path also runs on a remote cluster. Ray accepts local paths there only
    for the whole job, not per task.
    """
    modules: list[str] = []
    for op in operators:
        top_level = type(op).__module__.split(".")[0]
        if top_level in _PROJECT_PACKAGES or top_level == "__main__" or top_level in modules:
            continue
        path = getattr(sys.modules.get(top_level), "__file__", None)
        if path is None:
            continue
        parts = os.path.normpath(path).split(os.sep)
        if "site-packages" in parts or "dist-packages" in parts:
            continue
        modules.append(top_level)
    return modules


def runtime_env_identity(op: Operator) -> str:
    """Return a string that is equal for operators whose declared `runtime_env` is equal."""
    return repr(sorted((op.runtime_env or {}).items(), key=lambda item: item[0]))
