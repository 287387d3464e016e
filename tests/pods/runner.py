"""A pod runner for tests: the part of Kubernetes between a StatefulSet in the API server and a running container.

It watches the StatefulSets the real operator wrote into kmock and, like the StatefulSet controller and the
kubelet together:
- runs pod `<name>-0` of each one with replicas >= 1 (backends.py: a podman container, or a plain process);
- runs the startup, liveness and readiness probes exactly as the pod spec sets them (initialDelaySeconds,
  periodSeconds, timeoutSeconds, failureThreshold, successThreshold; liveness and readiness wait for startup);
- restarts the container when liveness or startup fails (SIGTERM, SIGKILL after terminationGracePeriodSeconds) or
  when it exits (restartPolicy Always), with the kubelet's back-off (at once, then 10 s doubling to 5 min);
- replaces the pod when the template changes (a roll) and stops it when the StatefulSet goes or scales to 0;
- writes the Pod (phase, Ready condition, restartCount) and the StatefulSet's status back into kmock, so the
  operator's status follows;
- answers for the Services on 127.0.0.1 (`url_template`, for the operator's --worker-url-template).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import json
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
import kmock
from aiohttp import web

from tests.pods.backends import Backend, Container
from tests.pods.plan import PodPlan, PodSpecError, Probe, plan_pod, pod_dir, template_revision

logger = logging.getLogger(__name__)

STATEFULSETS = kmock.resource("apps/v1/statefulsets")
KINDS = {"ConfigMap": kmock.resource("v1/configmaps"), "Secret": kmock.resource("v1/secrets"),
         "Service": kmock.resource("v1/services"), "Pod": kmock.resource("v1/pods")}
BACKOFF_START, BACKOFF_MAX, BACKOFF_RESET = 10.0, 300.0, 600.0


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ProbeState:
    """Consecutive results of one probe, judged against its thresholds."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.successes = 0
        self.failures = 0

    def record(self, ok: bool) -> None:
        self.successes, self.failures = (self.successes + 1, 0) if ok else (0, self.failures + 1)

    @property
    def passed(self) -> bool:
        return self.successes >= self.probe.success_threshold

    @property
    def failed(self) -> bool:
        return self.failures >= self.probe.failure_threshold


async def probe_once(session: aiohttp.ClientSession, probe: Probe, port: int) -> bool:
    """One httpGet probe: a 2xx or 3xx answer within timeoutSeconds."""
    try:
        async with session.get(f"http://127.0.0.1:{port}{probe.path}", allow_redirects=False,
                               timeout=aiohttp.ClientTimeout(total=probe.timeout)) as response:
            return 200 <= response.status < 400
    except (TimeoutError, aiohttp.ClientError, OSError):
        return False


@dataclasses.dataclass
class PodEvent:
    at: float  # time.monotonic()
    what: str  # started, ready, unready, liveness-failed, startup-failed, exited, killed, stopped
    detail: str = ""


class RunningPod:
    """One pod: its container's restarts, probes and status."""

    def __init__(self, plan: PodPlan, backend: Backend, root: Path, publish: Any) -> None:
        self.plan = plan
        self.backend = backend
        self.root = root
        self._publish = publish
        self.container: Container | None = None
        self.restarts = 0
        self.ready = False
        self.started = False
        self.events: list[PodEvent] = []
        self.last_exit: int | None = None
        self.waiting: str | None = "ContainerCreating"
        self._stopping = False
        self._task: asyncio.Task[None] = asyncio.create_task(self._supervise())

    def _event(self, what: str, detail: str = "") -> None:
        self.events.append(PodEvent(time.monotonic(), what, detail))
        logger.info("pod %s/%s: %s %s", self.plan.namespace, self.plan.name, what, detail)

    def log_path(self, attempt: int) -> Path:
        return pod_dir(self.root, self.plan.namespace, self.plan.name) / "logs" / f"{attempt}.log"

    async def _supervise(self) -> None:
        backoff, attempt = 0.0, 0
        while not self._stopping:
            try:
                self.container = await self.backend.start(self.plan, attempt, self.log_path(attempt))
            except (OSError, RuntimeError) as exc:  # the kubelet's RunContainerError: retried with back-off
                self._event("failed-to-start", str(exc))
                self.waiting = "RunContainerError"
                await self._publish(self)
                await asyncio.sleep(backoff)
                backoff = min(max(backoff * 2, BACKOFF_START), BACKOFF_MAX)
                continue
            started_at, self.waiting, self.started = time.monotonic(), None, False
            self._event("started", f"attempt {attempt}")
            await self._publish(self)
            reason = await self._until_exit_or_failure(self.container)
            if reason != "exited":
                self._event(reason)
                await self.container.stop(self.plan.grace_seconds)
                self._event("killed")
            self.last_exit = await self.container.wait()
            self._event("exited", f"code {self.last_exit}")
            self.ready = self.started = False
            if self._stopping:
                break
            self.restarts += 1
            attempt += 1
            if time.monotonic() - started_at >= BACKOFF_RESET:
                backoff = 0.0
            self.waiting = "CrashLoopBackOff" if backoff else "ContainerCreating"
            await self._publish(self)
            await asyncio.sleep(backoff)
            backoff = min(max(backoff * 2, BACKOFF_START), BACKOFF_MAX)

    async def _until_exit_or_failure(self, container: Container) -> str:
        """"exited", or which probe failed ("startup-failed", "liveness-failed")."""
        exited = asyncio.create_task(container.wait())
        probes = asyncio.create_task(self._probe(container))
        done, _ = await asyncio.wait({exited, probes}, return_when=asyncio.FIRST_COMPLETED)
        probes.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await probes
        return "exited" if exited in done else probes.result()

    async def _probe(self, container: Container) -> str:
        async with aiohttp.ClientSession() as session:
            if self.plan.startup is not None:
                startup = ProbeState(self.plan.startup)
                await asyncio.sleep(startup.probe.initial_delay)
                while not startup.passed:
                    startup.record(await probe_once(session, startup.probe, container.ports[startup.probe.port]))
                    if startup.failed:
                        return "startup-failed"
                    if not startup.passed:
                        await asyncio.sleep(startup.probe.period)
            self.started = True
            await self._publish(self)
            tasks = []
            if self.plan.readiness is not None:
                tasks.append(asyncio.create_task(self._readiness(session, container, self.plan.readiness)))
            else:
                self.ready = True
                await self._publish(self)
            liveness = (asyncio.create_task(self._liveness(session, container, self.plan.liveness))
                        if self.plan.liveness is not None else asyncio.create_task(asyncio.Event().wait()))
            try:
                return await liveness
            finally:
                for task in tasks:
                    task.cancel()

    async def _liveness(self, session: aiohttp.ClientSession, container: Container, probe: Probe) -> str:
        state = ProbeState(probe)
        await asyncio.sleep(probe.initial_delay)
        while True:
            state.record(await probe_once(session, probe, container.ports[probe.port]))
            if state.failed:
                return "liveness-failed"
            await asyncio.sleep(probe.period)

    async def _readiness(self, session: aiohttp.ClientSession, container: Container, probe: Probe) -> None:
        state = ProbeState(probe)
        await asyncio.sleep(probe.initial_delay)
        while True:
            state.record(await probe_once(session, probe, container.ports[probe.port]))
            ready = self.ready
            if state.passed:
                ready = True
            elif state.failed:
                ready = False
            if ready != self.ready:
                self.ready = ready
                self._event("ready" if ready else "unready")
                await self._publish(self)
            await asyncio.sleep(probe.period)

    async def stop(self) -> None:
        """Delete the pod: stop its container (grace period, then SIGKILL) and its supervision."""
        self._stopping = True
        if self.container is not None and not self._task.done():
            await self.container.stop(self.plan.grace_seconds)
            self.last_exit = await self.container.wait()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._event("stopped")

    def status(self) -> dict[str, Any]:
        """The Pod's status as the kubelet reports it."""
        running = self.container is not None and self.waiting is None
        state: dict[str, Any] = ({"running": {"startedAt": _now()}} if running
                                 else {"waiting": {"reason": self.waiting or "ContainerCreating"}})
        container_status: dict[str, Any] = {
            "name": "worker", "image": self.plan.image, "ready": self.ready, "started": self.started,
            "restartCount": self.restarts, "state": state}
        if self.last_exit is not None:
            container_status["lastState"] = {"terminated": {"exitCode": self.last_exit,
                                                            "reason": "Completed" if self.last_exit == 0 else "Error"}}
        ready = "True" if self.ready else "False"
        return {"phase": "Running" if running else "Pending", "podIP": "127.0.0.1", "hostIP": "127.0.0.1",
                "conditions": [{"type": "Ready", "status": ready}, {"type": "ContainersReady", "status": ready}],
                "containerStatuses": [container_status]}


class PodRunner:
    """Runs the pods of every StatefulSet in a kmock emulator (see the module docstring)."""

    def __init__(self, mock: kmock.KubernetesEmulator, backend: Backend, root: Path, interval: float = 0.2) -> None:
        self.mock = mock
        self.backend = backend
        self.root = root
        self.interval = interval
        self.pods: dict[tuple[str, str], RunningPod] = {}
        self.errors: dict[tuple[str, str], str] = {}  # pods that cannot start: the reason (CreateContainerConfigError)
        self._terminating: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._published: dict[tuple[str, str], Any] = {}
        self._loop: asyncio.Task[None] | None = None
        self._proxy: web.AppRunner | None = None
        self.proxy_port = 0

    # --- the emulated cluster ---------------------------------------------------------------------------------------

    def _get(self, resource: kmock.resource, namespace: str, name: str) -> dict[str, Any] | None:
        key = (resource, namespace, name)
        if key not in self.mock.objects or self.mock.objects[key].deleted:
            return None
        return json.loads(json.dumps(self.mock.objects[key].raw))

    def lookup(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(KINDS[kind], namespace, name)

    def statefulsets(self) -> list[dict[str, Any]]:
        return [json.loads(json.dumps(obj.raw)) for (resource, _, _), obj in list(self.mock.objects.items())
                if resource == STATEFULSETS and not obj.deleted]

    async def _publish_pod(self, pod: RunningPod) -> None:
        plan = pod.plan
        base = f"/api/v1/namespaces/{plan.namespace}/pods"
        if self._get(KINDS["Pod"], plan.namespace, plan.name) is None:
            await self.mock.post(base, json={
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": plan.name, "namespace": plan.namespace,
                             "labels": {**plan.labels, "controller-revision-hash": plan.revision,
                                        "statefulset.kubernetes.io/pod-name": plan.name}},
                "spec": {"containers": [{"name": "worker", "image": plan.image}]}})
        await self.mock.patch(f"{base}/{plan.name}/status", json={"status": pod.status()})

    async def _delete_pod(self, namespace: str, name: str) -> None:
        if self._get(KINDS["Pod"], namespace, name) is not None:
            await self.mock.delete(f"/api/v1/namespaces/{namespace}/pods/{name}")

    async def _publish_statefulset(self, sts: dict[str, Any]) -> None:
        meta = sts["metadata"]
        namespace, name = meta.get("namespace") or "default", meta["name"]
        pod = self.pods.get((namespace, f"{name}-0"))
        current = pod is not None and pod.plan.revision == template_revision(sts)
        status = {"observedGeneration": meta.get("generation", 1), "replicas": int(pod is not None),
                  "readyReplicas": int(bool(pod and pod.ready)), "availableReplicas": int(bool(pod and pod.ready)),
                  "currentReplicas": int(current), "updatedReplicas": int(current),
                  "currentRevision": template_revision(sts), "updateRevision": template_revision(sts)}
        key = (namespace, name)
        if self._published.get(key) != status:
            self._published[key] = status
            await self.mock.patch(f"/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}/status",
                                  json={"status": status})

    # --- the controller loop --------------------------------------------------------------------------------------

    async def sync(self) -> None:
        """One pass: start, replace or stop pods so that they match the StatefulSets."""
        wanted = {}
        for sts in self.statefulsets():
            meta = sts["metadata"]
            if int(sts["spec"].get("replicas", 1)) >= 1 and not meta.get("deletionTimestamp"):
                wanted[(meta.get("namespace") or "default", f"{meta['name']}-0")] = sts
        for key, pod in list(self.pods.items()):
            sts = wanted.get(key)
            if sts is None or template_revision(sts) != pod.plan.revision:
                del self.pods[key]
                self._terminating[key] = asyncio.create_task(self._terminate(key, pod))
        for key, sts in wanted.items():
            if key in self.pods or key in self._terminating:
                continue  # OrderedReady, one replica: the new pod waits until the old one is gone
            try:
                plan = plan_pod(sts, self.root, self.lookup)
            except PodSpecError as exc:
                self.errors[key] = str(exc)
                continue
            self.errors.pop(key, None)
            self.pods[key] = RunningPod(plan, self.backend, self.root, self._publish_pod)
        for sts in self.statefulsets():
            await self._publish_statefulset(sts)

    async def _terminate(self, key: tuple[str, str], pod: RunningPod) -> None:
        try:
            await pod.stop()
            await self._delete_pod(*key)
        finally:
            self._terminating.pop(key, None)

    async def _run(self) -> None:
        while True:
            try:
                await self.sync()
            except Exception:  # keep running pods whatever one pass hit; the test sees the log
                logger.exception("pod runner pass failed")
            await asyncio.sleep(self.interval)

    # --- Services on 127.0.0.1 -----------------------------------------------------------------------------------

    @property
    def url_template(self) -> str:
        """The operator's --worker-url-template: `{name}.{namespace}.svc:8766` answered on 127.0.0.1."""
        return f"http://127.0.0.1:{self.proxy_port}/{{namespace}}/{{name}}/8766"

    def endpoint(self, namespace: str, service: str, port: int) -> int | None:
        """The host port behind a Service port (a pod matching its selector), or None."""
        svc = self.lookup("Service", namespace, service)
        if svc is None:
            return None
        spec = svc["spec"]
        target = next((p.get("targetPort", p["port"]) for p in spec.get("ports") or [] if p["port"] == port), None)
        for (ns, _), pod in self.pods.items():
            selected = ns == namespace and all(pod.plan.labels.get(k) == v for k, v in spec["selector"].items())
            if (selected and pod.container is not None and (pod.ready or spec.get("publishNotReadyAddresses"))
                    and target in pod.container.ports):
                return pod.container.ports[target]
        return None

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        info = request.match_info
        port = self.endpoint(info["namespace"], info["service"], int(info["port"]))
        if port is None:
            return web.Response(status=503, text="no endpoints")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        try:
            async with aiohttp.ClientSession() as session, session.request(
                    request.method, f"http://127.0.0.1:{port}/{info['tail']}", params=request.query,
                    data=await request.read(), headers=headers, allow_redirects=False) as response:
                body = await response.read()
                return web.Response(status=response.status, body=body,
                                    content_type=response.content_type)
        except aiohttp.ClientError as exc:
            return web.Response(status=502, text=str(exc))

    # --- lifecycle ---------------------------------------------------------------------------------------------------

    async def __aenter__(self) -> PodRunner:
        app = web.Application()
        app.router.add_route("*", "/{namespace}/{service}/{port:[0-9]+}/{tail:.*}", self._forward)
        self._proxy = web.AppRunner(app)
        await self._proxy.setup()
        site = web.TCPSite(self._proxy, "127.0.0.1", 0)
        await site.start()
        self.proxy_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # a started TCPSite has its server
        self._loop = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        await asyncio.gather(*(pod.stop() for pod in self.pods.values()), *self._terminating.values(),
                             return_exceptions=True)
        self.pods.clear()
        if self._proxy is not None:
            await self._proxy.cleanup()
