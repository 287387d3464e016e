"""Security checks (issue 9 part 5).

- A worker given a canary Telegram token (and a Telegram API that refuses connections, so that error paths with
  URLs run too) never writes the canary to stdout, stderr or any file under its state directory.
- The worker's HTTP server refuses oversized bodies (413) and oversized headers; its WebSocket feed closes a
  client that sends an oversized message (1009) and keeps serving others.
- The Telegram command handler ignores unauthorised chats: tests/observability/test_telegram.py
  (``test_commands_from_authorised_chat_only``), not repeated here.
- The chart and the operator-rendered worker StatefulSet run as non-root with a read-only root filesystem, no
  privilege escalation and all capabilities dropped; RBAC has no wildcard verbs, resources or API groups.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websockets

from papertrader_operator.children import render_children

CANARY = "7777777777:AAcanary-SECRET-d41d8cd98f00b204e980"
CHART_TESTS = Path(__file__).resolve().parents[1] / "chart"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A worker (synthetic, real-time pace) with the canary token; yields (http_url, ws_url, state_dir, process)."""
    state = tmp_path_factory.mktemp("secure-worker")
    http_port, ws_port, dead_port = _free_port(), _free_port(), _free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
    env.update({"TELEGRAM_BOT_TOKEN": CANARY, "TELEGRAM_CHAT_ID": "4242",
                "TELEGRAM_API_URL": f"http://127.0.0.1:{dead_port}", "HTTP_HOST": "127.0.0.1",
                "LOG_LEVEL": "DEBUG"})
    out = open(state.parent / "worker-out.txt", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "papertrader.cli", "run", "--source", "synthetic", "--speed", "200", "--state-dir",
         str(state), "--http-port", str(http_port), "--ws-port", str(ws_port), "--max-candles", "100000"],
        env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{http_port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", http_port), timeout=0.2):
                break
        except OSError:
            if process.poll() is not None:
                raise AssertionError((state.parent / "worker-out.txt").read_text()[-2000:]) from None
            time.sleep(0.2)
    yield url, f"ws://127.0.0.1:{ws_port}", state, process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    out.close()


async def test_http_rejects_oversized_input(worker: Any) -> None:
    url = worker[0]
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/control/halt", data=b"{" + b" " * (1 << 20) + b"}",
                                headers={"Content-Type": "application/json"}) as response:
            assert response.status == 413
        async with session.get(f"{url}/healthz", headers={"X-Big": "a" * (64 << 10)}) as response:
            assert response.status in (400, 431)
        async with session.get(f"{url}/healthz") as response:  # still serving
            assert response.status in (200, 503)


async def test_ws_feed_rejects_oversized_messages(worker: Any) -> None:
    ws_url = worker[1]
    async with websockets.connect(ws_url, max_size=None) as bystander:
        await asyncio.wait_for(bystander.recv(), 10)  # the snapshot
        async with websockets.connect(ws_url, max_size=None) as attacker:
            await asyncio.wait_for(attacker.recv(), 10)
            await attacker.send("x" * (1 << 20))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                for _ in range(10_000):
                    await asyncio.wait_for(attacker.recv(), 10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        await asyncio.wait_for(bystander.recv(), 10)  # the others keep their feed


def test_worker_never_logs_the_token(worker: Any) -> None:
    state, process = worker[2], worker[3]
    time.sleep(3.0)  # trades and notifications (which fail: the Telegram API refuses connections)
    process.send_signal(signal.SIGTERM)
    process.wait(30)
    texts = {path: path.read_bytes() for path in state.rglob("*") if path.is_file()}
    texts[state.parent / "worker-out.txt"] = (state.parent / "worker-out.txt").read_bytes()
    assert len(texts) >= 3
    log = (state / "logs" / "enhanced_paper_trader.log").read_text(errors="replace")
    assert "telegram send failed" in log or "telegram getUpdates failed" in log  # the error paths ran ...
    leaked = [str(path) for path, data in texts.items() if CANARY.encode() in data
              or CANARY.split(":")[1].encode() in data]
    assert not leaked, leaked  # ... and the token is nowhere


def test_config_show_masks_the_token() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
    env["TELEGRAM_BOT_TOKEN"] = CANARY
    result = subprocess.run([sys.executable, "-m", "papertrader.cli", "config", "show"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "TELEGRAM_BOT_TOKEN" in result.stdout.upper()
    assert CANARY not in result.stdout + result.stderr and CANARY.split(":")[1] not in result.stdout


def test_operator_never_puts_the_token_in_children() -> None:
    """The operator renders secretKeyRefs, never values (it never reads the Secret)."""
    trader = {"metadata": {"name": "sec", "namespace": "ns", "uid": "u"},
              "spec": {"symbols": ["BTC-EUR"], "source": "synthetic",
                       "telegram": {"secretName": "tg", "tokenKey": "token", "chatIdKey": "chat"}}}
    children = render_children(trader)
    (statefulset,) = [c for c in children if c["kind"] == "StatefulSet"]
    env = statefulset["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in env if "valueFrom" in e} == {
        "TELEGRAM_BOT_TOKEN": "tg", "TELEGRAM_CHAT_ID": "tg"}
    assert all("value" not in e for e in env if e["name"].startswith("TELEGRAM"))


def _assert_hardened(pod_spec: dict[str, Any], where: str) -> None:
    pod_ctx = pod_spec.get("securityContext") or {}
    for container in pod_spec["containers"] + pod_spec.get("initContainers", []):
        ctx = container.get("securityContext") or {}
        assert ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is True, f"{where}: runAsNonRoot"
        user = ctx.get("runAsUser", pod_ctx.get("runAsUser"))
        assert user is None or user != 0, f"{where}: runAsUser 0"
        assert ctx.get("readOnlyRootFilesystem") is True, f"{where}/{container['name']}: readOnlyRootFilesystem"
        assert ctx.get("allowPrivilegeEscalation") is False, f"{where}/{container['name']}: privilege escalation"
        assert "ALL" in (ctx.get("capabilities") or {}).get("drop", []), f"{where}/{container['name']}: caps"
        assert not ctx.get("privileged"), where


def _chart(*extra: str) -> list[dict[str, Any]]:
    sys.path.insert(0, str(CHART_TESTS))
    try:
        from chart_helpers import ALL_FEATURES, render
    finally:
        sys.path.remove(str(CHART_TESTS))
    return render(*extra) + render("-f", str(ALL_FEATURES))


def test_containers_run_as_non_root_with_read_only_root() -> None:
    docs = _chart()
    workloads = [d for d in docs if d.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "Job")]
    assert workloads
    for doc in workloads:
        _assert_hardened(doc["spec"]["template"]["spec"], f"chart {doc['kind']}/{doc['metadata']['name']}")
    trader = {"metadata": {"name": "sec", "namespace": "ns", "uid": "u"},
              "spec": {"symbols": ["BTC-EUR"], "source": "synthetic"}}
    for child in render_children(trader):
        if child["kind"] == "StatefulSet":
            _assert_hardened(child["spec"]["template"]["spec"], "operator-rendered worker StatefulSet")


def test_rbac_has_no_wildcards() -> None:
    docs = _chart()
    roles = [d for d in docs if d.get("kind") in ("Role", "ClusterRole")]
    assert roles
    for role in roles:
        for rule in role.get("rules") or []:
            where = f"{role['kind']}/{role['metadata']['name']}: {rule}"
            assert "*" not in rule.get("verbs", []), where
            assert "*" not in rule.get("resources", []), where
            assert "*" not in rule.get("apiGroups", []), where
            assert not any("*" in r for r in rule.get("resources", [])), where
            assert "nonResourceURLs" not in rule or "*" not in rule["nonResourceURLs"], where
        assert not role.get("aggregationRule"), role["metadata"]["name"]
