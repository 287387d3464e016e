"""``papertrader market-gateway``: one exchange connection for the whole fleet.

The gateway speaks the part of Bitvavo's public REST and WebSocket wire format that workers use (``/time``,
``/markets``, ``/{market}/candles``, WS ``subscribe``/``unsubscribe`` to ``candles``, errors and
``bitvavo-ratelimit-*`` headers), so a worker pointed at it with ``BITVAVO_REST_URL`` / ``BITVAVO_WS_URL`` needs no
new code path. Upstream it holds one WebSocket for every (market, interval) its clients subscribe to, a bounded
cache of closed candles per pair, and a shared REST weight budget with coalescing of identical requests.

Modules (one concern each): :mod:`.settings` (configuration), :mod:`.cache` (candle cache and coverage),
:mod:`.budget` (REST weight budget, 429s and bans), :mod:`.upstream_rest` (coalesced upstream REST),
:mod:`.upstream_ws` (the multiplexed upstream WebSocket), :mod:`.server` (the client-facing REST/WS server),
:mod:`.metrics` (Prometheus), :mod:`.main` (the command line).
"""
