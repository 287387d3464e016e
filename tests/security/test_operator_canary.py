"""The operator process never logs secrets: a canary as its own Kubernetes bearer token (kubeconfig) and as a
Telegram token in its environment, a PaperTrader that references a Telegram Secret holding the canary, debug
logging on -- the canary appears nowhere in its output (the cluster is kmock, as in tests/operator)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.operator.conftest import Cluster, cluster, eventually, kmock_options  # noqa: F401 (fixtures)

CANARY = "canary-k8s-token-5f4dcc3b5aa765d61d8327deb882cf99"


async def test_operator_never_logs_secrets(cluster: Cluster) -> None:  # noqa: F811 - `cluster` is the imported fixture, requested by name
    kubeconfig = Path(os.environ["KUBECONFIG"])
    config = json.loads(kubeconfig.read_text())
    config["users"][0]["user"]["token"] = CANARY
    kubeconfig.write_text(json.dumps(config))
    env = dict(os.environ, TELEGRAM_BOT_TOKEN=CANARY + "-telegram")
    log_path = kubeconfig.parent / "operator-output.txt"
    log_file = open(log_path, "wb")  # a file, not a pipe: debug logs would fill an unread pipe and block it
    proc = subprocess.Popen([sys.executable, "-m", "papertrader_operator", "-A", "--http-port", "0", "-v",
                             "--worker-url-template", "http://127.0.0.1:9/{name}", "--log-format", "full"],
                            env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        await cluster.mock.post("/api/v1/namespaces/default/secrets", json={
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tg", "namespace": "default"},
            "stringData": {"token": CANARY, "chat": "42"}})
        await cluster.apply("sec", {"symbols": ["BTC-EUR"], "source": "synthetic",
                                    "telegram": {"secretName": "tg", "tokenKey": "token", "chatIdKey": "chat"}})
        await eventually(lambda: (cluster.get("PaperTrader", "sec").get("status") or {}).get("observedGeneration"))
        await eventually(lambda: cluster.get("StatefulSet", "sec-btc-eur"))
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(proc.wait, 30)
        log_file.close()
    output = log_path.read_text(errors="replace")
    assert proc.returncode == 0, output[-2000:]
    assert "DEBUG" in output and "sec-btc-eur" in output  # debug logs were written ...
    assert CANARY not in output  # ... and neither token was in them
