"""The control credential: with CONTROL_TOKEN_FILE (the operator's mounted Secret) or CONTROL_TOKEN set, a control
request without the bearer token, or with another one, gets 401 and is logged; with it, halt and resume work."""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
import pytest

from papertrader.observability.control_auth import ControlCredential

from .helpers import ScriptedSource, Worker, settings_for, wait_for


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_control_needs_the_mounted_token(tmp_path: Path) -> None:
    token_file = tmp_path / "control" / "token"
    token_file.parent.mkdir()
    token_file.write_text("s3cret-one\n", encoding="utf-8")
    source = ScriptedSource()
    source.release(100)
    worker = await Worker(settings_for(tmp_path / "w", CONTROL_TOKEN_FILE=str(token_file)), source).start()
    try:
        await wait_for(lambda: worker.runner.engine.items >= 100)
        for headers in (None, _bearer("wrong"), {"Authorization": "Basic s3cret-one"}, _bearer("")):
            status, body = await worker.post("/control/halt", {"reason": "intruder"}, headers)
            assert status == 401 and "credential" in body["error"], (headers, status, body)
        log = (tmp_path / "w" / "logs" / "enhanced_paper_trader.log").read_text(encoding="utf-8")
        refused = [line for line in log.splitlines() if "no valid control credential" in line]
        assert len(refused) == 4 and "POST /control/halt from 127.0.0.1" in refused[0], refused
        assert not worker.runner.engine.risk.state.halts  # nothing refused took effect
        async with aiohttp.ClientSession() as session, session.post(worker.http + "/control/resume") as response:
            assert response.status == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")

        status, body = await worker.post("/control/halt", {"reason": "maintenance"}, _bearer("s3cret-one"))
        assert status == 200 and body["halts"] == {"manual": "maintenance"}
        status, body = await worker.post("/control/resume", {}, _bearer("s3cret-one"))
        assert status == 200 and not body["entries_halted"]

        token_file.write_text("s3cret-two-rotated", encoding="utf-8")  # the kubelet updates a rotated Secret
        status, _ = await worker.post("/control/halt", {"reason": "old"}, _bearer("s3cret-one"))
        assert status == 401
        status, body = await worker.post("/control/halt", {"reason": "new"}, _bearer("s3cret-two-rotated"))
        assert status == 200 and body["halts"] == {"manual": "new"}
        status, _ = await worker.get("/healthz")  # probes and metrics need no credential
        assert status == 200
    finally:
        await worker.stop()


async def test_control_token_from_the_environment(tmp_path: Path) -> None:
    source = ScriptedSource()
    source.release(50)
    worker = await Worker(settings_for(tmp_path / "w", CONTROL_TOKEN="env-token"), source).start()
    try:
        await wait_for(lambda: worker.runner.engine.items >= 50)
        assert (await worker.post("/control/halt", {"reason": "x"}))[0] == 401
        status, body = await worker.post("/control/halt", {"reason": "x"}, _bearer("env-token"))
        assert status == 200 and body["entries_halted"]
    finally:
        await worker.stop()


def test_an_unreadable_or_empty_token_file_refuses_every_request(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """Fail closed: a missing or empty mounted Secret never opens control."""
    missing = ControlCredential(token_file=tmp_path / "absent")
    assert missing.required and not missing.allows("Bearer anything") and not missing.allows(None)
    empty = tmp_path / "empty"
    empty.write_text("\n", encoding="utf-8")
    assert not ControlCredential(token_file=empty).allows("Bearer ")
    assert any("the file is empty" in r.getMessage() for r in caplog.records)
    good = tmp_path / "good"
    good.write_text("t", encoding="utf-8")
    credential = ControlCredential("env-loses", token_file=good)
    assert credential.allows("Bearer t") and not credential.allows("Bearer env-loses")
    os.unlink(good)
    assert not credential.allows("Bearer t")  # the Secret went away: refused again
    assert ControlCredential().allows(None)  # nothing configured (a laptop run): open, as documented


async def test_the_operators_client_halts_a_real_worker_only_with_the_token(tmp_path: Path) -> None:
    """The operator's own HTTP client against a real worker: the portfolio halt goes through with the trader's
    token and is refused (False, the halt not set) with any other."""
    from papertrader_operator.health_client import HealthClient

    token_file = tmp_path / "token"
    token_file.write_text("trader-token", encoding="utf-8")
    source = ScriptedSource()
    source.release(50)
    worker = await Worker(settings_for(tmp_path / "w", CONTROL_TOKEN_FILE=str(token_file)), source).start()
    client = HealthClient(timeout=5)
    try:
        await wait_for(lambda: worker.runner.engine.items >= 50)
        assert not await client.control(worker.http, "halt", "drawdown", scope="portfolio", token="guess")
        assert not worker.runner.engine.risk.state.halts
        assert await client.control(worker.http, "halt", "drawdown", scope="portfolio", token="trader-token")
        assert worker.runner.engine.risk.state.halts == {"portfolio": "drawdown"}
        assert await client.control(worker.http, "resume", "lifted", scope="portfolio", token="trader-token")
        assert not worker.runner.engine.risk.state.halts
    finally:
        await client.close()
        await worker.stop()
