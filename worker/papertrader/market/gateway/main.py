"""``papertrader market-gateway``: run the gateway until SIGTERM / SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
import sys

from papertrader.market.gateway.settings import GatewayConfigError, GatewaySettings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="papertrader market-gateway",
                                     description="One Bitvavo market-data connection for a fleet of workers.")
    for field in dataclasses.fields(GatewaySettings):
        flag = "--" + field.name.removeprefix("gateway_").replace("_", "-")
        parser.add_argument(flag, dest=field.name, default=None,
                            help=f"(env {field.name.upper()}, default {field.default})")
    return parser


async def serve(settings: GatewaySettings) -> None:
    from papertrader.market.gateway.server import Gateway

    gateway = Gateway(settings)
    await gateway.start()
    print(f"market gateway listening on {settings.host}:{gateway.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await gateway.stop()


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = GatewaySettings.load(vars(args))
    except GatewayConfigError as exc:
        print(f"papertrader market-gateway: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(settings))
    return 0
