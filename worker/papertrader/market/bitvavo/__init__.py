"""Bitvavo public market-data client: REST, WebSocket stream, parsing, rate limits, exchange clock, markets.

Small focused modules, composed by :class:`papertrader.market.sources.bitvavo.BitvavoSource`:

- :mod:`.parse`: wire formats (candle rows, WS events, errors, ``/markets``) -> typed values.
- :mod:`.clock`: the exchange clock (``/time`` offset and rate), used for every decision about time.
- :mod:`.ratelimit`: weight budget from the ``bitvavo-ratelimit-*`` headers, waits until ``resetat``.
- :mod:`.rest`: the aiohttp REST client (timeouts, errors, rate limits, paginated candle fetches).
- :mod:`.stream`: the WebSocket connection (subscribe, receive, watchdog).
"""
