"""Getting a Ray cluster to score on: importing Ray, starting or joining one at an address
(one :class:`~pytest_masc.errors.DeviceError` line when none answers), and sizing the actor
pool to its resources."""
from __future__ import annotations

import contextlib
import re
import socket
from typing import Any, Iterator, Optional

from ..errors import DeviceError

INSTALL_HINT = 'Ray scoring needs Ray Data: pip install "pytest-masc[ray]"  (or: pip install "ray[data]>=2.40")'


def import_ray():
    """``ray`` (and ``ray.data``), or an ``ImportError`` that says what to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as error:
        raise ImportError(f"{INSTALL_HINT} ({error})") from None
    return ray


def start_ray(ray: Any, address: Optional[str], option: str = "--address") -> None:
    """``ray.init`` for ``address`` (``None`` or ``"local"``: start a local Ray), failing fast
    with one :class:`~pytest_masc.errors.DeviceError` line, naming ``option``, when no cluster
    answers: Ray raises a long ``ConnectionError`` for ``auto`` and retries a dead
    ``HOST:PORT`` for minutes."""
    if address not in (None, "local", "auto"):
        problem = _unanswered(address)
        if problem:
            raise DeviceError(
                f"no Ray cluster answers at {option}={address} ({problem}): check the address (the head "
                f"node's `ray status` prints it), start a cluster with `ray start --head`, or use "
                f"{option}=local to start a local Ray for this run"
            )
    try:
        ray.init(address=address or "local", include_dashboard=False)
    except ConnectionError as error:
        said = str(error).split(". ")[0].rstrip(".")
        raise DeviceError(
            f"no Ray cluster found for {option}={address} (Ray: {said}): start one on this machine with "
            f"`ray start --head` ({option}=auto then finds it), or use {option}=local to start a local "
            "Ray for this run"
        ) from None


@contextlib.contextmanager
def ray_running(ray: Any, address: Optional[str], option: str = "--address") -> Iterator[bool]:
    """Ray initialised for the ``with`` block: an already initialised Ray is used as it is;
    otherwise :func:`start_ray` starts or joins one at ``address`` and it is shut down after
    the block. Yields whether it was started here."""
    started = not ray.is_initialized()
    if started:
        start_ray(ray, address, option)
    try:
        yield started
    finally:
        if started:
            ray.shutdown()


def _unanswered(address: str, timeout: float = 5.0) -> Optional[str]:
    """Why nothing accepts a TCP connection at ``[ray://]HOST:PORT`` (``None``: something does,
    or the address is not of that form). A loopback host is also tried at this node's IP,
    where Ray itself connects."""
    match = re.fullmatch(r"(?:ray://)?\[?([^\[\]/]+?)\]?:(\d+)/?", address.strip())
    if not match:
        return None
    host, port = match.group(1), int(match.group(2))
    hosts = [host]
    if host in ("localhost", "127.0.0.1", "::1"):
        with contextlib.suppress(Exception):  # a private helper: the loopback probe still runs without it
            from ray._private.services import get_node_ip_address

            hosts.append(get_node_ip_address())
    problem = None
    for candidate in dict.fromkeys(hosts):
        try:
            with socket.create_connection((candidate, port), timeout=timeout):
                return None
        except OSError as error:
            problem = problem or f"{candidate}:{port}: {error.strerror or error}"
    return problem


def fitting_actors(ray: Any, *, num_gpus: float, num_cpus: float, batches: int) -> int:
    """How many actors of ``num_gpus``/``num_cpus`` each the cluster fits, at least one and at
    most one per batch."""
    resources = ray.cluster_resources()
    fits = (resources.get("GPU", 0) // num_gpus) if num_gpus > 0 else (resources.get("CPU", 1) // max(num_cpus, 1e-9))
    return int(max(1, min(fits, batches)))


def check_resources(ray: Any, *, actors: int, num_gpus: float, num_cpus: float, address: Optional[str]) -> None:
    """Fail before scheduling when the cluster cannot place the actors (Ray would wait forever)."""
    resources = ray.cluster_resources()
    where = f"the Ray cluster at {address}" if address else "the local Ray instance"
    have_gpus, have_cpus = float(resources.get("GPU", 0)), float(resources.get("CPU", 0))
    if num_gpus > 0 and have_gpus < num_gpus * actors:
        raise DeviceError(
            f"--num-gpus={num_gpus:g} per actor x {actors} actor(s) needs {num_gpus * actors:g} GPU(s), but "
            f"{where} has {have_gpus:g}; start GPU nodes first, lower --actors, or score on CPUs with --num-gpus=0"
        )
    if num_cpus > 0 and have_cpus < num_cpus * actors:
        raise DeviceError(
            f"{actors} actor(s) x {num_cpus:g} CPU(s) need {num_cpus * actors:g} CPUs, but {where} has "
            f"{have_cpus:g}; lower --actors or --num-cpus"
        )


__all__ = ["INSTALL_HINT", "check_resources", "fitting_actors", "import_ray", "ray_running", "start_ray"]
