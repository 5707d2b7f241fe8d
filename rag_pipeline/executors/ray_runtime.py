"""Start a quiet local Ray for a run, or join a running Ray cluster.

A local Ray started here sends nothing beyond loopback and reports no usage statistics. Ray 2.60
needs four settings for that, found by reading its source and by tracing connect(2) during
`ray.init` on Linux:

- `RAY_USAGE_STATS_ENABLED=0` turns off usage reporting.
- `ray.init(_node_ip_address="127.0.0.1")` alone is not enough: `ray.init` replaces a loopback
  address by the address of the default-route interface, which it finds with a UDP connect to
  8.8.8.8, unless `ray._private.ray_constants.ENABLE_RAY_CLUSTER` is false (the single-machine
  mode Ray uses on macOS and Windows). Every Ray port then binds to 127.0.0.1. Ray workers look
  up the node address the same way, so Ray's processes also start with
  `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, the variable that sets that constant.
- Even with `include_dashboard=False` Ray starts its dashboard process with only the usage-stats
  module, which reads `~/ray_bootstrap_config.yaml` and, when the file is missing, probes the
  cloud metadata address 169.254.169.254 and resolves metadata.google.internal. Ray's processes
  therefore start with HOME set to a private folder that contains a bootstrap config naming the
  `local` provider; Ray workers get the real HOME back through the job's `runtime_env`.
- A new local Ray turns on token authentication and writes `~/.ray/auth_token` unless
  `RAY_AUTH_MODE` is set. Here a random token for this process is passed in `RAY_AUTH_TOKEN`, so
  other users of the machine cannot submit work to it and nothing is written to HOME.

Settings that the user made in the environment (`RAY_AUTH_MODE`, `RAY_AUTH_TOKEN`) are kept.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import socket
import tempfile
import warnings
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

logger = logging.getLogger(__name__)

ADDRESS_KEY = "executor.address"
_REACHABILITY_TIMEOUT_S = 5.0
_ADDRESS_PATTERN = re.compile(r"^(?:ray://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})$")
# Read by Ray at import into ray_constants.ENABLE_RAY_CLUSTER, in each Ray worker too.
_CLUSTER_MODE_VARIABLE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_START_ONLY_VARIABLES = ("HOME", _CLUSTER_MODE_VARIABLE)
_BOOTSTRAP_CONFIG = "# Written by ragpipe: a local Ray, so Ray does not probe cloud metadata.\nprovider:\n  type: local\n"


class RayConnectionError(RuntimeError):
    """Ray could not be started or reached. The message names the `executor.address` setting."""


def validate_address(address: str | None) -> None:
    """Raise ValueError unless `address` is None, 'auto', 'ray://host:port' or 'host:port'."""
    if address is None or address == "auto":
        return
    match = _ADDRESS_PATTERN.match(address)
    if match is None or not 0 < int(match.group("port")) < 65536:
        raise ValueError(
            "must be null (start a local Ray), 'auto' (join the Ray running on this "
            "machine), 'ray://host:port' (Ray Client, port 10001 by default) or 'host:port' (the "
            "head's GCS, port 6379 by default)"
        )


def check_reachable(address: str, timeout_s: float = _REACHABILITY_TIMEOUT_S) -> None:
    """Open and close a TCP connection to a 'ray://host:port' or 'host:port' address.

    Raise RayConnectionError naming `executor.address` when it fails, so an unreachable cluster is
    reported in seconds instead of after Ray's own connection retries.
    """
    match = _ADDRESS_PATTERN.match(address)
    if match is None:
        return
    host, port = match.group("host").strip("[]"), int(match.group("port"))
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as err:
        raise RayConnectionError(
            f"{ADDRESS_KEY}: cannot reach the Ray cluster at {address!r} ({err.strerror or err}); "
            "check that the head node is running and that the host and port are right "
            "(Ray Client listens on 10001, the GCS on 6379)"
        ) from err


@dataclass
class RaySession:
    """A connection of this process to Ray.

    `owned` is true when this session called `ray.init` (to start a local Ray or to join a
    cluster), so `shutdown` ends it. A session that reuses an existing connection is not owned.
    """

    owned: bool
    address: str | None
    local: bool = False  # this session started a local Ray
    _saved_env: dict[str, str | None] = field(default_factory=dict)
    _private_home: str | None = None

    def shutdown(self) -> None:
        """Stop the local Ray this session started, or disconnect from the cluster it joined."""
        import ray

        if not self.owned:
            return
        if ray.is_initialized():
            ray.shutdown()
            if self.local:
                logger.info("stopped the local Ray")
            else:
                logger.info("disconnected from the Ray cluster at %s", self.address)
        _restore_environment(self._saved_env)
        if self._private_home is not None:
            shutil.rmtree(self._private_home, ignore_errors=True)
            self._private_home = None


def connect(
    address: str | None,
    num_cpus: int | None = None,
    include_dashboard: bool = False,
    object_store_memory: int | None = None,
    py_modules: list[ModuleType] | None = None,
) -> RaySession:
    """Join the Ray at `address`, or start a local Ray when `address` is None.

    With `address` None and the RAY_ADDRESS environment variable set (as `ray job submit` and
    KubeRay's RayJob do for their entrypoint), the run joins that cluster instead, as `ray.init()`
    does. `py_modules` are shipped to every worker of the job (custom operator modules). When this
    process is already connected to Ray (a test fixture or a notebook called `ray.init`), that
    connection is used and left open, and `py_modules` must already be importable there.
    """
    import ray

    try:
        validate_address(address)
    except ValueError as err:
        raise RayConnectionError(f"{ADDRESS_KEY} {err}; got {address!r}") from None
    if ray.is_initialized():
        if address not in (None, "auto"):
            check_reachable(address)
            logger.warning(
                "this process is already connected to Ray, so the run uses that connection, which "
                "may not be the cluster at %s=%r; call ray.shutdown() first to join that one",
                ADDRESS_KEY, address,
            )
        else:
            logger.info("using this process's existing Ray connection")
        return RaySession(owned=False, address=address)
    if address is None and os.environ.get("RAY_ADDRESS"):
        address = os.environ["RAY_ADDRESS"]
        logger.info("%s is null but RAY_ADDRESS is set, so the run joins the Ray cluster at %s", ADDRESS_KEY, address)
        try:
            validate_address(address)
        except ValueError as err:
            raise RayConnectionError(f"the RAY_ADDRESS environment variable {err}; got {address!r}") from None
    if address is None:
        return start_local_ray(num_cpus, include_dashboard, object_store_memory, py_modules)
    if num_cpus is not None or include_dashboard:
        logger.warning(
            "executor.num_cpus and executor.include_dashboard apply only to a local Ray "
            "(executor.address: null); they are ignored when joining %s",
            address,
        )
    return _join_cluster(address, py_modules)


def _join_cluster(address: str, py_modules: list[ModuleType] | None = None) -> RaySession:
    import ray

    if address != "auto":
        check_reachable(address)
    saved = _set_environment({"RAY_USAGE_STATS_ENABLED": "0"})
    try:
        runtime_env = {"py_modules": py_modules} if py_modules else None
        ray.init(address=address, runtime_env=runtime_env, logging_level=logging.WARNING)
    except Exception as err:
        _restore_environment(saved)
        hint = ""
        if "auth" in str(err).lower() or "token" in str(err).lower():
            hint = "; the cluster uses token authentication: set RAY_AUTH_TOKEN to its token"
        elif address == "auto":
            hint = "; 'auto' needs a Ray started on this machine with `ray start`"
        raise RayConnectionError(
            f"{ADDRESS_KEY}: cannot connect to the Ray cluster at {address!r}: {type(err).__name__}: {err}{hint}"
        ) from err
    logger.info("joined the Ray cluster at %s: %s", address, _describe_resources())
    return RaySession(owned=True, address=address, _saved_env=saved)


def start_local_ray(
    num_cpus: int | None = None,
    include_dashboard: bool = False,
    object_store_memory: int | None = None,
    py_modules: list[ModuleType] | None = None,
) -> RaySession:
    """Start a Ray instance on this machine bound to 127.0.0.1, with no telemetry."""
    import ray
    from ray._private import ray_constants

    real_home = os.path.expanduser("~")
    private_home = tempfile.mkdtemp(prefix="ragpipe-ray-home-")
    with open(os.path.join(private_home, "ray_bootstrap_config.yaml"), "w", encoding="utf-8") as handle:
        handle.write(_BOOTSTRAP_CONFIG)

    wanted = {"RAY_USAGE_STATS_ENABLED": "0", "HOME": private_home, _CLUSTER_MODE_VARIABLE: "0"}
    if "RAY_AUTH_MODE" not in os.environ:
        wanted["RAY_AUTH_MODE"] = "token"
    if os.environ.get("RAY_AUTH_MODE", "token") == "token" and "RAY_AUTH_TOKEN" not in os.environ:
        token_file = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.join(real_home, ".ray", "auth_token")
        if "RAY_AUTH_MODE" in os.environ and os.path.isfile(token_file):
            wanted["RAY_AUTH_TOKEN_PATH"] = token_file  # the user's token, found under the real HOME
        else:
            wanted["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    saved = _set_environment(wanted)
    _reload_ray_auth_settings()
    # These matter only to the processes that ray.init starts (Ray workers inherit them from the
    # raylet); the driver gets its own values back at once.
    saved_for_start = {name: saved.pop(name) for name in _START_ONLY_VARIABLES}

    runtime_env: dict[str, Any] = {"env_vars": {"HOME": real_home}}
    if py_modules:
        runtime_env["py_modules"] = py_modules
    init_args: dict[str, Any] = {
        "num_cpus": num_cpus,
        "include_dashboard": include_dashboard,
        "dashboard_host": "127.0.0.1",
        "_node_ip_address": "127.0.0.1",
        "object_store_memory": object_store_memory,
        "runtime_env": runtime_env,
        "logging_level": logging.WARNING,
    }
    # NOTE: a private Ray constant (see the module docstring); if a Ray upgrade renames it, the
    # check after start-up reports a non-loopback node address.
    cluster_mode = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        with warnings.catch_warnings():
            # lancedb warns on every fork; ray.init forks only to exec Ray's own programs.
            warnings.filterwarnings("ignore", message="lancedb fork support", category=RuntimeWarning)
            ray.init(**init_args)
    except Exception as err:
        _restore_environment(saved)
        shutil.rmtree(private_home, ignore_errors=True)
        raise RayConnectionError(
            f"{ADDRESS_KEY} is null, so ragpipe starts a local Ray, which failed: {type(err).__name__}: {err}"
        ) from err
    finally:
        if cluster_mode is not None:
            ray_constants.ENABLE_RAY_CLUSTER = cluster_mode
        _restore_environment(saved_for_start)

    node_ip = ray.util.get_node_ip_address()
    if node_ip != "127.0.0.1":
        logger.warning("the local Ray listens on %s, not on loopback; its ports may be reachable from the network", node_ip)
    logger.info("started a local Ray on %s: %s", node_ip, _describe_resources())
    return RaySession(owned=True, address=None, local=True, _saved_env=saved, _private_home=private_home)


def _describe_resources() -> str:
    import ray

    resources = ray.cluster_resources()
    return f"{len(ray.nodes())} node(s), {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs"


def _set_environment(values: dict[str, str]) -> dict[str, str | None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    return saved


def _restore_environment(saved: dict[str, str | None]) -> None:
    if not saved:
        return
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if any(name.startswith("RAY_AUTH") for name in saved):
        _reload_ray_auth_settings()


def _reload_ray_auth_settings() -> None:
    # Ray caches the authentication mode and token in its C++ core; refresh them so a later
    # connection in this process sees the restored environment.
    try:
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
    except (ImportError, AttributeError) as err:
        logger.debug("could not refresh Ray's authentication settings: %s", err)
