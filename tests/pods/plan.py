"""What one pod of a StatefulSet needs to run, resolved from the objects the operator wrote into kmock.

`plan_pod` turns the pod template into a `PodPlan`: command and args, env (values, Secret and ConfigMap keys, envFrom),
one host directory per volume (a PersistentVolumeClaim's directory outlives the pod, an emptyDir lives as long as
the pod, ConfigMap and Secret volumes hold their keys as files), the security context, resource limits, ports and
probes. The backends (backends.py) run a plan as a podman container or as a plain process.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

# (kind, namespace, name) -> the stored object or None; kind is "ConfigMap" or "Secret"
Lookup = Callable[[str, str, str], dict[str, Any] | None]


class PodSpecError(Exception):
    """The pod cannot start as specified (a missing ConfigMap or Secret key, an unknown volume): the kubelet's
    CreateContainerConfigError."""


@dataclasses.dataclass(frozen=True)
class Probe:
    """An httpGet probe with the kubelet's defaults."""

    path: str
    port: int
    period: float = 10.0
    timeout: float = 1.0
    failure_threshold: int = 3
    success_threshold: int = 1
    initial_delay: float = 0.0

    @classmethod
    def from_spec(cls, spec: dict[str, Any] | None) -> Probe | None:
        if not spec:
            return None
        http = spec.get("httpGet")
        if not http or not isinstance(http.get("port"), int):
            raise PodSpecError(f"only httpGet probes with a numeric port are supported: {spec}")
        return cls(path=http.get("path", "/"), port=http["port"],
                   period=float(spec.get("periodSeconds", 10)), timeout=float(spec.get("timeoutSeconds", 1)),
                   failure_threshold=int(spec.get("failureThreshold", 3)),
                   success_threshold=int(spec.get("successThreshold", 1)),
                   initial_delay=float(spec.get("initialDelaySeconds", 0)))


@dataclasses.dataclass(frozen=True)
class Mount:
    host: Path
    container: str
    read_only: bool


@dataclasses.dataclass(frozen=True)
class PodPlan:
    namespace: str
    name: str
    labels: dict[str, str]
    revision: str  # hash of the pod template: a new one means a new pod (a StatefulSet roll)
    image: str
    pull_policy: str
    command: list[str]
    args: list[str]
    env: dict[str, str]
    mounts: list[Mount]
    ports: list[int]
    run_as_user: int | None
    run_as_group: int | None
    fs_group: int | None
    read_only_root: bool
    drop_capabilities: list[str]
    no_new_privileges: bool
    cpu_limit: str | None
    memory_limit: str | None
    liveness: Probe | None
    readiness: Probe | None
    startup: Probe | None
    grace_seconds: float


def template_revision(statefulset: dict[str, Any]) -> str:
    """The StatefulSet's current pod revision (the controller-revision-hash of its template)."""
    template = statefulset["spec"]["template"]
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
    return f"{statefulset['metadata']['name']}-{digest}"


def claim_dir(root: Path, namespace: str, claim: str) -> Path:
    """The host directory standing in for a PersistentVolumeClaim (kept until the test's root goes)."""
    return root / "pvc" / namespace / claim


def pod_dir(root: Path, namespace: str, pod: str) -> Path:
    """The host directory of one pod's emptyDir, ConfigMap and Secret volumes and its logs."""
    return root / "pods" / namespace / pod


def _key(lookup: Lookup, kind: str, namespace: str, name: str, key: str | None, optional: bool) -> dict[str, str]:
    obj = lookup(kind, namespace, name)
    if obj is None:
        if optional:
            return {}
        raise PodSpecError(f'{kind.lower()} "{name}" not found')
    data = dict(obj.get("data") or {})
    if kind == "Secret":
        data = {k: base64.b64decode(v).decode() for k, v in data.items()}
        data.update(obj.get("stringData") or {})
    if key is None:
        return data
    if key not in data:
        if optional:
            return {}
        raise PodSpecError(f'couldn\'t find key {key} in {kind} {namespace}/{name}')
    return {key: data[key]}


def _env(container: dict[str, Any], namespace: str, lookup: Lookup) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind, field in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            if field in source:
                ref = source[field]
                values = _key(lookup, kind, namespace, ref["name"], None, bool(ref.get("optional")))
                env.update({prefix + k: v for k, v in values.items()})
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = str(item["value"])
            continue
        source = item.get("valueFrom") or {}
        for kind, field in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
            if field in source:
                ref = source[field]
                values = _key(lookup, kind, namespace, ref["name"], ref["key"], bool(ref.get("optional")))
                if values:
                    env[item["name"]] = values[ref["key"]]
    return env


def _write_keys(directory: Path, values: dict[str, str], items: list[dict[str, Any]] | None) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    for item in items or [{"key": k, "path": k} for k in values]:
        if item["key"] in values:
            target = directory / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(values[item["key"]])
    for path in [directory, *directory.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def _prepare_dir(path: Path, fs_group: int | None) -> Path:
    """A writable volume directory, owned by the pod's fsGroup as the kubelet makes it (group-writable, setgid)."""
    path.mkdir(parents=True, exist_ok=True)
    if fs_group is not None and os.geteuid() == 0:
        os.chown(path, -1, fs_group)
        path.chmod(0o2775)
    return path


def _volumes(pod: dict[str, Any], statefulset: dict[str, Any], namespace: str, pod_name: str, root: Path,
             lookup: Lookup, fs_group: int | None) -> dict[str, Path]:
    hosts: dict[str, Path] = {}
    for claim in statefulset["spec"].get("volumeClaimTemplates") or []:
        claim_name = claim["metadata"]["name"]
        hosts[claim_name] = _prepare_dir(claim_dir(root, namespace, f"{claim_name}-{pod_name}"), fs_group)
    base = pod_dir(root, namespace, pod_name)
    for volume in pod.get("volumes") or []:
        name = volume["name"]
        if "emptyDir" in volume:
            hosts[name] = _prepare_dir(base / "empty" / name, fs_group)
        elif "persistentVolumeClaim" in volume:
            hosts[name] = _prepare_dir(claim_dir(root, namespace, volume["persistentVolumeClaim"]["claimName"]),
                                       fs_group)
        elif "configMap" in volume or "secret" in volume:
            kind, ref = ("ConfigMap", volume["configMap"]) if "configMap" in volume else ("Secret", volume["secret"])
            ref_name = ref.get("name") or ref.get("secretName")
            values = _key(lookup, kind, namespace, ref_name, None, bool(ref.get("optional")))
            hosts[name] = base / kind.lower() / name
            _write_keys(hosts[name], values, ref.get("items"))
        else:
            raise PodSpecError(f"volume {name}: only persistentVolumeClaim, emptyDir, configMap and secret volumes "
                               "are supported")
    return hosts


def plan_pod(statefulset: dict[str, Any], root: Path, lookup: Lookup) -> PodPlan:
    """The plan for pod 0 of a StatefulSet; volume directories are created (and ConfigMap files written) under root."""
    meta = statefulset["metadata"]
    namespace = meta.get("namespace") or "default"
    pod_name = f"{meta['name']}-0"
    template = statefulset["spec"]["template"]
    pod = template["spec"]
    if len(pod.get("containers") or []) != 1 or pod.get("initContainers"):
        raise PodSpecError("the pod runner runs pods of exactly one container and no init containers")
    container = pod["containers"][0]
    pod_security = pod.get("securityContext") or {}
    security = {**pod_security, **(container.get("securityContext") or {})}
    fs_group = pod_security.get("fsGroup")
    hosts = _volumes(pod, statefulset, namespace, pod_name, root, lookup, fs_group)
    mounts = []
    for mount in container.get("volumeMounts") or []:
        if mount["name"] not in hosts:
            raise PodSpecError(f'volumeMount {mount["name"]}: no such volume')
        mounts.append(Mount(hosts[mount["name"]], mount["mountPath"], bool(mount.get("readOnly"))))
    limits = (container.get("resources") or {}).get("limits") or {}
    return PodPlan(
        namespace=namespace, name=pod_name, labels=dict((template.get("metadata") or {}).get("labels") or {}),
        revision=template_revision(statefulset), image=container["image"],
        pull_policy=container.get("imagePullPolicy", "IfNotPresent"),
        command=list(container.get("command") or []), args=list(container.get("args") or []),
        env=_env(container, namespace, lookup), mounts=mounts,
        ports=[port["containerPort"] for port in container.get("ports") or []],
        run_as_user=security.get("runAsUser"), run_as_group=security.get("runAsGroup"), fs_group=fs_group,
        read_only_root=bool(security.get("readOnlyRootFilesystem")),
        drop_capabilities=list((security.get("capabilities") or {}).get("drop") or []),
        no_new_privileges=security.get("allowPrivilegeEscalation") is False,
        cpu_limit=limits.get("cpu"), memory_limit=limits.get("memory"),
        liveness=Probe.from_spec(container.get("livenessProbe")),
        readiness=Probe.from_spec(container.get("readinessProbe")),
        startup=Probe.from_spec(container.get("startupProbe")),
        grace_seconds=float(pod.get("terminationGracePeriodSeconds", 30)))
