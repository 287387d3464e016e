"""kmock fixtures: an in-memory Kubernetes API over real HTTP, the real kopf operator in its own thread, and a
fake worker fleet serving `/health` and `/control/*` on 127.0.0.1 (see shared/reference/kmock.md)."""

from __future__ import annotations

import asyncio
import base64
import collections
import datetime
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import kmock
import kubernetes.config.kube_config
import pytest
from aiohttp import web

from papertrader_operator.main import Operator, build_parser, config_from_args, configure_logging, kopf_options

PT_RESOURCE = "papertrader.io/v1alpha1/papertraders"
NAMESPACE = "default"
RESOURCES = {
    "StatefulSet": "apps/v1/statefulsets",
    "Service": "v1/services",
    "ConfigMap": "v1/configmaps",
    "Secret": "v1/secrets",
    "Pod": "v1/pods",
    "Event": "v1/events",
    "PaperTrader": PT_RESOURCE,
}


BUILTIN_GROUPS = frozenset({"", "apps", "policy"})  # kinds whose Go types drop empty lists (`omitempty`)


VERBS = {kmock.action.LIST: "list", kmock.action.WATCH: "watch", kmock.action.FETCH: "get",
         kmock.action.CREATE: "create", kmock.action.UPDATE: "patch", kmock.action.DELETE: "delete"}


def _plural(request: kmock.Request) -> str:
    if request.resource is None:
        return "-"
    plural = request.resource.plural or "?"
    return f"{plural}/{request.subresource}" if request.subresource else plural


def as_stored(value: Any, merging: bool) -> Any:
    """A built-in object (or merge patch) as the API server keeps it: empty lists are not stored.

    In a merge patch (`merging`), an empty list at a merged (dict) level removes the field, which is what the
    API server's stored result shows; inside a list (replaced whole) the field is simply absent.
    """
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            if isinstance(item, list) and not item:
                if merging:
                    result[key] = None
                continue
            result[key] = as_stored(item, merging)
        return result
    if isinstance(value, list):
        return [as_stored(item, merging=False) for item in value]
    return value


def apply_defaults(plural: str, body: dict[str, Any], created: bool) -> None:
    """Some of the defaults the API server fills into StatefulSets and Services it stores.

    On a merge patch (`created` false) only inside lists, which a patch replaces whole (the containers)."""
    if plural == "secrets" and created and body.get("stringData"):  # write-only: stored base64 in `data`
        data = body.setdefault("data", {})
        for key, value in body.pop("stringData").items():
            data[key] = base64.b64encode(str(value).encode()).decode()
    spec = body.get("spec")
    if not isinstance(spec, dict):
        return
    if plural == "statefulsets":
        if created:
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("persistentVolumeClaimRetentionPolicy",
                            {"whenDeleted": "Retain", "whenScaled": "Retain"})
        pod = (spec.get("template") or {}).get("spec") or {}
        if created:
            pod.setdefault("restartPolicy", "Always")
            pod.setdefault("dnsPolicy", "ClusterFirst")
            pod.setdefault("schedulerName", "default-scheduler")
        for container in pod.get("containers") or []:
            container.setdefault("terminationMessagePath", "/dev/termination-log")
            container.setdefault("terminationMessagePolicy", "File")
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                if probe in container:
                    container[probe].setdefault("successThreshold", 1)
                    container[probe]["httpGet"].setdefault("scheme", "HTTP")
    elif plural == "services" and created:
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if spec.get("clusterIP"):
            spec.setdefault("clusterIPs", [spec["clusterIP"]])


class Emulator(kmock.KubernetesEmulator):
    """kmock plus what kopf needs from a real API server: uid, resourceVersion, generation, names; built-in
    objects are stored as the API server stores them (empty lists dropped, some defaults filled in).

    kmock matches every request against its whole request log (quadratic in the number of requests); with
    `history_limit` set, the log keeps only the requests still being served plus the latest `history_limit`
    ones (for the benchmark, where nothing asserts on older requests).
    """

    history_limit: int | None = None

    @property
    def counts(self) -> collections.Counter[tuple[str, str]]:
        """Requests served, by (Kubernetes verb, resource plural[/subresource])."""
        return self.__dict__.setdefault("_counts", collections.Counter())

    async def _handle(self, request: kmock.Request) -> web.StreamResponse:
        if self.history_limit is None:
            return await self._emulate(request)
        inflight: set[kmock.Request] = self.__dict__.setdefault("_inflight", set())
        inflight.add(request)
        cut = len(self._requests) - self.history_limit
        self._requests[:] = [r for r in self._requests[:cut] if r in inflight] + self._requests[cut:]
        try:
            return await self._emulate(request)
        finally:
            inflight.discard(request)

    async def _emulate(self, request: kmock.Request) -> web.StreamResponse:
        data = request.data
        self.counts[(VERBS.get(request.action, str(request.method).lower()), _plural(request))] += 1
        if (request.resource is not None and isinstance(data, dict) and request.subresource is None
                and request.resource.group in BUILTIN_GROUPS
                and request.action in (kmock.action.CREATE, kmock.action.UPDATE)):
            stored = as_stored(data, merging=request.action == kmock.action.UPDATE)
            apply_defaults(request.resource.plural or "", stored, created=request.action == kmock.action.CREATE)
            data.clear()
            data.update(stored)
        if request.resource is not None and isinstance(data, dict):
            meta = data.setdefault("metadata", {})
            if request.action == kmock.action.CREATE:
                if not meta.get("name") and meta.get("generateName"):
                    meta["name"] = meta["generateName"] + uuid.uuid4().hex[:8]
                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault("resourceVersion", "1")
                meta.setdefault("generation", 1)
                meta.setdefault("creationTimestamp",
                                datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
            elif request.action == kmock.action.UPDATE and request.subresource is None and "spec" in data:
                key = (request.resource, request.namespace, request.name)
                if key in self.objects and not self.objects[key].deleted:
                    current = self.objects[key]
                    if current.get("spec") != {**current.get("spec", {}), **data["spec"]}:
                        meta["generation"] = int(current.get("metadata", {}).get("generation", 1)) + 1
        return await super()._handle(request)


@pytest.fixture()
def kmock_options() -> dict[str, Any]:
    return {"cls": Emulator}


class Cluster:
    """Test-side view of the emulated cluster."""

    def __init__(self, mock: Emulator) -> None:
        self.mock = mock

    def get(self, kind: str, name: str, namespace: str = NAMESPACE) -> dict[str, Any] | None:
        key = (kmock.resource(RESOURCES[kind]), namespace, name)
        if key in self.mock.objects and not self.mock.objects[key].deleted:
            return json.loads(json.dumps(self.mock.objects[key].raw))
        return None

    def names(self, kind: str, namespace: str = NAMESPACE) -> set[str]:
        res = kmock.resource(RESOURCES[kind])
        return {name for (r, ns, name), obj in list(self.mock.objects.items())
                if r == res and ns == namespace and not obj.deleted}

    def events(self, reason: str | None = None) -> list[dict[str, Any]]:
        res = kmock.resource(RESOURCES["Event"])
        found = [obj.raw for (r, _, _), obj in list(self.mock.objects.items()) if r == res and not obj.deleted]
        return [event for event in found if reason is None or event.get("reason") == reason]

    def count(self, action: kmock.action, kind: str) -> int:
        """How many requests of this action (kmock.action.CREATE, ...) the emulator served for this kind."""
        return len(list(self.mock[action, kmock.resource(RESOURCES[kind])]))  # len() of a view over-counts

    async def apply(self, name: str, spec: dict[str, Any], namespace: str = NAMESPACE) -> dict[str, Any]:
        body = {"apiVersion": "papertrader.io/v1alpha1", "kind": "PaperTrader",
                "metadata": {"name": name, "namespace": namespace}, "spec": spec}
        response = await self.mock.post(f"/apis/papertrader.io/v1alpha1/namespaces/{namespace}/papertraders",
                                        json=body)
        return await response.json()

    async def patch(self, kind: str, name: str, patch: dict[str, Any], namespace: str = NAMESPACE,
                    subresource: str = "") -> Any:
        group_version, plural = RESOURCES[kind].rsplit("/", 1)
        prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        suffix = f"/{subresource}" if subresource else ""
        return await self.mock.patch(f"{prefix}/namespaces/{namespace}/{plural}/{name}{suffix}", json=patch)

    async def delete(self, kind: str, name: str, namespace: str = NAMESPACE) -> Any:
        group_version, plural = RESOURCES[kind].rsplit("/", 1)
        prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        return await self.mock.delete(f"{prefix}/namespaces/{namespace}/{plural}/{name}")


async def eventually(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll `check` until it returns a truthy value (returned) or the timeout passes (assertion error)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (KeyError, TypeError, IndexError, AttributeError) as exc:
            last = exc
        else:
            if last:
                return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")


@pytest.fixture()
async def cluster(kmock: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cluster:
    kmock.resources.load_bundled()
    kmock.resources[PT_RESOURCE] = kmock.ResourceInfo(
        kind="PaperTrader", singular="papertrader", namespaced=True, subresources={"status"},
        shortnames={"pt"},
        verbs={"get", "list", "watch", "create", "update", "patch", "delete"})
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
        "clusters": [{"name": "kmock", "cluster": {"server": str(kmock.url)}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kmock"}}],
        "users": [{"name": "kmock", "user": {"token": "test-token"}}],
    }))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    return Cluster(kmock)


class FakeWorkers:
    """One HTTP server answering for every worker at `/<child name>/health` and `/<child name>/control/*`."""

    def __init__(self) -> None:
        self.healths: dict[str, dict[str, Any]] = {}
        self.controls: list[tuple[str, str, dict[str, Any]]] = []
        self.authorizations: list[str | None] = []  # the Authorization header of each control request
        self.health_reads = 0
        self.port = 0
        self._runner: web.AppRunner | None = None

    def report(self, name: str, *, equity: str = "10000.00", drawdown_pct: float = 0.0, ready: bool = True,
               level: str = "excellent", open_positions: int = 0, initial: str = "10000.00") -> None:
        halts = self.healths.get(name, {}).get("halts", {})
        self.healths[name] = {
            "symbol": name, "score": 95.0, "level": level, "ready": ready, "status": "running",
            "portfolio": {"initial_capital": initial, "cash": equity, "position_value": "0", "equity": equity,
                          "return_pct": round((float(equity) / float(initial) - 1) * 100, 4),
                          "drawdown_pct": drawdown_pct, "max_drawdown_pct": drawdown_pct,
                          "open_positions": open_positions, "trades": 3},
            "candles_processed": 120, "last_candle_ms": 1_700_000_000_000, "model_version": "v7",
            "entries_halted": bool(halts), "halt_reason": None, "halts": halts,
        }

    def halt_locally(self, name: str, kind: str, reason: str) -> None:
        """A halt the worker set itself (its own drawdown halt, say)."""
        self.healths[name]["halts"][kind] = reason
        self.healths[name]["entries_halted"] = True

    def unreachable(self, name: str) -> None:
        """The worker stops answering /health (its pod is gone or its network is cut)."""
        self.healths.pop(name, None)

    async def _health(self, request: web.Request) -> web.Response:
        self.health_reads += 1
        doc = self.healths.get(request.match_info["name"])
        return web.json_response(doc) if doc else web.json_response({"error": "unknown"}, status=404)

    async def _control(self, request: web.Request) -> web.Response:
        name, action = request.match_info["name"], request.match_info["action"]
        body = await request.json()
        self.controls.append((name, action, body))
        self.authorizations.append(request.headers.get("Authorization"))
        if name in self.healths:  # like the worker: halts by scope; lifting one leaves the others
            halts = self.healths[name]["halts"]
            if action == "halt":
                halts[body.get("scope") or "manual"] = body.get("reason")
            else:
                halts.pop(body.get("scope") or "manual", None)
            self.healths[name]["entries_halted"] = bool(halts)
        return web.json_response({"ok": True})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{name}/health", self._health)
        app.router.add_post("/{name}/control/{action}", self._control)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # a started TCPSite has its server

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    @property
    def url_template(self) -> str:
        return f"http://127.0.0.1:{self.port}/{{name}}"


@pytest.fixture()
async def workers() -> AsyncIterator[FakeWorkers]:
    fake = FakeWorkers()
    await fake.start()
    yield fake
    await fake.stop()


class OperatorThread:
    """The real operator, composed from parsed flags as `papertrader operator` does, running kopf in its own thread
    and event loop until `stop`; an error the operator ended with is raised by `stop`."""

    def __init__(self, args: Any, timeout: float = 30) -> None:
        self.operator = Operator(config_from_args(args))
        self._options = kopf_options(args)
        self._timeout = timeout
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._target, name="papertrader-operator", daemon=True)

    def _target(self) -> None:
        try:
            asyncio.run(self.operator.run(self._options, stop_flag=self._stop))
        except asyncio.CancelledError:
            pass  # stopped as asked (kopf.run does the same)
        except BaseException as exc:  # noqa: BLE001 - handed to the test through stop()
            self._error = exc

    def start(self) -> None:
        configure_logging(self._options)
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self._timeout)
        if self._thread.is_alive():
            raise RuntimeError("the operator did not stop")
        if self._error is not None:
            raise self._error


OperatorFactory = Callable[..., Awaitable[OperatorThread]]


@pytest.fixture()
async def start_operator(cluster: Cluster, workers: FakeWorkers) -> AsyncIterator[OperatorFactory]:
    """Start the real operator (kopf in its own thread and loop), as `papertrader operator` would."""
    runners: list[OperatorThread] = []

    async def start(*extra: str) -> OperatorThread:
        args = build_parser().parse_args(["-A", "--http-port", "0", "--resync-interval", "0.5",
                                          "--health-timeout", "1", "--log-format", "plain",
                                          "--worker-url-template", workers.url_template, *extra])
        watches_before = len(cluster.mock["watch", kmock.resource(PT_RESOURCE)])
        runner = OperatorThread(args)
        runner.start()
        runners.append(runner)
        await eventually(lambda: len(cluster.mock["watch", kmock.resource(PT_RESOURCE)]) > watches_before)
        return runner

    yield start
    for runner in runners:
        if runner.is_alive():
            await stop_operator(runner)


async def stop_operator(runner: OperatorThread) -> None:
    await asyncio.to_thread(runner.stop)
