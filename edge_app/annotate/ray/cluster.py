"""Ray itself: import it (or say how to install it), connect to a cluster or start one here, plan the pool."""

from __future__ import annotations

import os
import socket
from typing import Any

from edge_app.errors import UserError

# Ray is an optional extra (`pip install edge_app[ray]`): core is enough, no dashboard, no Ray Data.
RAY_INSTALL = "pip install ray==2.60.0"  # or: pip install edge_app[ray]


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError(
            f"--ray needs Ray, which is not installed here; install it with `{RAY_INSTALL}` "
            "(on every node of the cluster)"
        ) from None
    return ray


def _check_reachable(address: str) -> None:
    """HOST:PORT must accept a TCP connection: one sentence instead of Ray's minute of retries."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5.0).close()
    except OSError as e:
        raise UserError(
            f"cannot reach a Ray cluster at '{address}' ({e.strerror or e}); start one with `ray start --head` "
            "on the head node and pass the address it prints, or leave out the address to run on this machine"
        ) from None


def connect(address: str | None) -> bool:
    """``ray.init`` a local instance (address None; returns True: this run owns it) or join ``address``."""
    import logging

    ray = import_ray()
    if address is None:
        ray.init(
            num_cpus=os.cpu_count() or 1, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=True
        )
        return True
    if address != "auto":
        _check_reachable(address)
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
    except (ConnectionError, RuntimeError, TimeoutError) as e:
        raise UserError(
            f"cannot join the Ray cluster at '{address}' ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
            "start one with `ray start --head` and pass its address, or leave out the address to run on this machine"
        ) from None
    return False


def plan_workers(nodes: list[dict[str, Any]], workers: int) -> list[tuple[str, dict[str, float], bool]]:
    """(node id, resources per actor, spinning) for each actor: spread round-robin over ``nodes``, each node's
    CPUs (and GPUs) split evenly among the actors it gets, so the pool never oversubscribes a node's cores."""
    alive = [n for n in nodes if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]
    if not alive:
        raise UserError("the Ray cluster has no live node with CPUs; check it with `ray status`")
    n = workers or len(alive)
    per_node = [0] * len(alive)
    for i in range(n):
        per_node[i % len(alive)] += 1
    plan = []
    for i in range(n):
        node = alive[i % len(alive)]
        k = per_node[i % len(alive)]
        res = node["Resources"]
        r = {"num_cpus": round(res["CPU"] / k, 4)}
        if res.get("GPU", 0) > 0:
            r["num_gpus"] = round(res["GPU"] / k, 4)
        # ONNX Runtime's spinning threads steal cores from a neighbour; alone on a node they cut latency.
        plan.append((node["NodeID"], r, k == 1))
    return plan
