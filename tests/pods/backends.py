"""Two ways to run a `PodPlan`: a podman container from the image (what proves the image), or a plain process on
this machine (for machines without podman).

A process has no namespaces of its own, so the process backend maps the pod's view onto the host: an argument or
env value that is a mount path (or below one) becomes the host directory, one that equals a declared container port
becomes the host port, and the working directory is the volume mounted at the image's WORKDIR. It runs as the
current user; the security context, read-only root and limits only apply in containers.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Protocol

from papertrader_operator.drift import parse_quantity
from tests.pods.plan import PodPlan

IMAGE_WORKDIR = "/var/lib/papertrader"  # the Dockerfile's WORKDIR
HACK = Path(__file__).resolve().parents[2] / "hack"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Container(Protocol):
    """One run of a pod's container."""

    ports: dict[int, int]  # container port -> host port on 127.0.0.1

    async def wait(self) -> int:
        """Wait until it exits; its exit code."""

    async def signal(self, sig: signal.Signals) -> None:
        """Send a signal to the container's main process."""

    async def stop(self, grace: float) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds, as the kubelet stops a container."""


class Backend(Protocol):
    name: str

    async def start(self, plan: PodPlan, attempt: int, log: Path) -> Container:
        """Start the container (attempt 0, then one more per restart); its output goes to `log`."""


class _Process:
    def __init__(self, proc: asyncio.subprocess.Process, ports: dict[int, int]) -> None:
        self.proc = proc
        self.ports = ports

    async def wait(self) -> int:
        return await self.proc.wait()

    async def signal(self, sig: signal.Signals) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(sig)

    async def stop(self, grace: float) -> None:
        if self.proc.returncode is not None:
            return
        self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), grace)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


class ProcessBackend:
    """Runs the container's command as a child process of the test (`papertrader` as `python -m papertrader.cli`)."""

    name = "process"

    def __init__(self, executables: dict[str, list[str]] | None = None) -> None:
        self.executables = executables or {"papertrader": [sys.executable, "-m", "papertrader.cli"]}

    async def start(self, plan: PodPlan, attempt: int, log: Path) -> Container:
        ports = {port: free_port() for port in plan.ports}
        mounts = sorted(plan.mounts, key=lambda m: len(m.container), reverse=True)

        def host_view(value: str) -> str:
            for mount in mounts:
                if value == mount.container or value.startswith(mount.container.rstrip("/") + "/"):
                    return str(mount.host) + value[len(mount.container.rstrip("/")):]
            if value.isdigit() and int(value) in ports:
                return str(ports[int(value)])
            return value

        if not plan.command:
            raise ValueError("the process backend needs the container's command (the image's ENTRYPOINT is unknown)")
        argv = [*self.executables.get(plan.command[0], plan.command[:1]), *plan.command[1:], *plan.args]
        argv = [argv[0], *map(host_view, argv[1:])]
        env = {**os.environ, **{key: host_view(value) for key, value in plan.env.items()}}
        workdir = next((m.host for m in plan.mounts if m.container == IMAGE_WORKDIR), log.parent)
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            proc = await asyncio.create_subprocess_exec(*argv, cwd=workdir, env=env, stdin=asyncio.subprocess.DEVNULL,
                                                        stdout=out, stderr=asyncio.subprocess.STDOUT,
                                                        start_new_session=True)
        return _Process(proc, ports)


async def _podman(*args: str, check: bool = True) -> str:
    proc = await asyncio.create_subprocess_exec("podman", *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, env=podman_env())
    out, err = await proc.communicate()
    if check and proc.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:2])} failed ({proc.returncode}): {err.decode().strip()}")
    return out.decode().strip()


def podman_env() -> dict[str, str]:
    """The environment for podman: this repository's containers.conf unless CONTAINERS_CONF names another."""
    return {**os.environ, "CONTAINERS_CONF": os.environ.get("CONTAINERS_CONF", str(HACK / "containers.conf"))}


class _PodmanContainer:
    def __init__(self, name: str, ports: dict[int, int], log: Path) -> None:
        self.name = name
        self.ports = ports
        self.log = log
        self._exit: asyncio.Task[int] = asyncio.create_task(self._wait())

    async def _wait(self) -> int:
        code = int((await _podman("wait", self.name)).splitlines()[-1])
        self.log.write_text(await _podman("logs", self.name, check=False))
        await _podman("rm", "-f", self.name, check=False)
        return code

    async def wait(self) -> int:
        return await asyncio.shield(self._exit)

    async def signal(self, sig: signal.Signals) -> None:
        await _podman("kill", "--signal", sig.name, self.name, check=False)

    async def stop(self, grace: float) -> None:
        if not self._exit.done():
            await _podman("stop", "-t", str(int(grace)), self.name, check=False)
        await self.wait()


PULL = {"Always": "always", "IfNotPresent": "missing", "Never": "never"}


def podman_run_args(plan: PodPlan, name: str, ports: dict[int, int]) -> list[str]:
    """`podman run` arguments for a plan: the pod's own network namespace with its ports published on 127.0.0.1."""
    args = ["run", "-d", "--name", name, "--pull", PULL.get(plan.pull_policy, "missing"),
            "--network", "slirp4netns", "--stop-signal", "SIGTERM"]
    for container_port, host_port in ports.items():
        args += ["-p", f"127.0.0.1:{host_port}:{container_port}"]
    if plan.read_only_root:
        args += ["--read-only", "--read-only-tmpfs=false"]
    if plan.run_as_user is not None:
        group = plan.run_as_group if plan.run_as_group is not None else 0
        args += ["--user", f"{plan.run_as_user}:{group}"]
    if plan.fs_group is not None:
        args += ["--group-add", str(plan.fs_group)]
    for cap in plan.drop_capabilities:
        args += ["--cap-drop", cap]
    if plan.no_new_privileges:
        args += ["--security-opt", "no-new-privileges"]
    if plan.cpu_limit:
        args += ["--cpus", str(parse_quantity(plan.cpu_limit))]
    if plan.memory_limit:
        args += ["--memory", str(int(parse_quantity(plan.memory_limit)))]
    for mount in plan.mounts:
        args += ["-v", f"{mount.host}:{mount.container}:{'ro' if mount.read_only else 'rw'}"]
    for key, value in sorted(plan.env.items()):
        args += ["-e", f"{key}={value}"]
    if plan.command:
        args += ["--entrypoint", json.dumps(plan.command)]
    return [*args, plan.image, *plan.args]


class PodmanBackend:
    """Runs the pod's container with podman (`podman run`, the pod spec translated flag by flag)."""

    name = "podman"

    def __init__(self, prefix: str = "pt") -> None:
        self.prefix = prefix

    async def start(self, plan: PodPlan, attempt: int, log: Path) -> Container:
        ports = {port: free_port() for port in plan.ports}
        name = f"{self.prefix}-{plan.namespace}-{plan.name}-{attempt}"
        await _podman("rm", "-f", name, check=False)
        log.parent.mkdir(parents=True, exist_ok=True)
        await _podman(*podman_run_args(plan, name, ports))
        return _PodmanContainer(name, ports, log)

    @staticmethod
    async def running(prefix: str) -> list[str]:
        """Names of the running containers whose name starts with `prefix`."""
        out = await _podman("ps", "--filter", f"name=^{prefix}", "--format", "{{.Names}}")
        return [line for line in out.splitlines() if line]
