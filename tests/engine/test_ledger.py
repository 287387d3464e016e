"""Money reconciles to the cent, the ledger derives the portfolio, and runs are byte-for-byte deterministic."""

from __future__ import annotations

import sqlite3
from decimal import Decimal

from tests.conftest import synthetic_candles, write_candle_file
from tests.engine.helpers import read_csv, run_replay


def test_trades_and_portfolio_reconcile_to_the_cent(tmp_path, real_sample):
    summary = run_replay(tmp_path / "s", real_sample, PORTFOLIO_SNAPSHOT_EVERY=7)
    trades = read_csv(tmp_path / "s" / "logs" / "trades.csv")
    portfolio = read_csv(tmp_path / "s" / "logs" / "portfolio.csv")
    assert len(trades) > 20 and len(portfolio) > 100
    cash = Decimal("10000.00")
    for trade in trades:
        quantity, price, fee, notional = (Decimal(trade[k]) for k in ("quantity", "price", "fee", "notional"))
        assert notional == (quantity * price).quantize(Decimal("0.01"), rounding="ROUND_CEILING" if
                                                         trade["side"] == "buy" else "ROUND_FLOOR")
        assert fee == (notional * Decimal("0.0025")).quantize(Decimal("0.01"), rounding="ROUND_CEILING")
        cash += -notional - fee if trade["side"] == "buy" else notional - fee
        assert Decimal(trade["cash_after"]) == cash
    buys = sum(Decimal(t["notional"]) for t in trades if t["side"] == "buy")
    sells = sum(Decimal(t["notional"]) for t in trades if t["side"] == "sell")
    fees = sum(Decimal(t["fee"]) for t in trades)
    assert Decimal("10000") - buys - fees + sells == cash
    assert Decimal(str(summary["cash"])) == cash
    for row in portfolio:
        assert Decimal(row["cash"]) + Decimal(row["position_value"]) == Decimal(row["equity"])
        for key in ("cash", "position_value", "equity"):
            assert Decimal(row[key]) == Decimal(row[key]).quantize(Decimal("0.01"))
    assert Decimal(portfolio[-1]["equity"]) == Decimal(str(summary["final_equity"]))
    realized = sum(Decimal(t["realized_pnl"]) for t in trades)
    if summary["open_positions"] == 0:
        assert Decimal("10000") + realized == cash


def test_ledger_tables_match_the_csv_logs(tmp_path, real_sample):
    run_replay(tmp_path / "s", real_sample)
    db = sqlite3.connect(tmp_path / "s" / "state.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    fills = db.execute("SELECT ts, side, quantity, price, fee FROM fills ORDER BY id").fetchall()
    trades = read_csv(tmp_path / "s" / "logs" / "trades.csv")
    assert [(int(t["timestamp_ms"]), t["side"], t["quantity"], t["price"], t["fee"]) for t in trades] == fills
    marks = db.execute("SELECT ts, equity FROM marks ORDER BY id").fetchall()
    portfolio = read_csv(tmp_path / "s" / "logs" / "portfolio.csv")
    assert [(int(p["timestamp_ms"]), p["equity"]) for p in portfolio] == marks


def test_two_runs_are_byte_identical(tmp_path):
    data = write_candle_file(tmp_path / "X-EUR.csv", synthetic_candles(8000, seed=21))
    run_replay(tmp_path / "a", data)
    run_replay(tmp_path / "b", data, COMMIT_EVERY_CANDLES=137)
    for name in ("trades.csv", "portfolio.csv"):
        assert (tmp_path / "a" / "logs" / name).read_bytes() == (tmp_path / "b" / "logs" / name).read_bytes()


def test_lost_csv_is_rebuilt_from_the_ledger_and_extra_rows_are_dropped(tmp_path, real_sample):
    run_replay(tmp_path / "s", real_sample, MAX_CANDLES=1500)
    logs = tmp_path / "s" / "logs"
    trades_before = (logs / "trades.csv").read_bytes()
    portfolio_before = (logs / "portfolio.csv").read_bytes()
    (logs / "trades.csv").unlink()
    with open(logs / "portfolio.csv", "ab") as handle:
        handle.write(b"1234,half-a-row")
    run_replay(tmp_path / "s", real_sample, MAX_CANDLES=1500)
    assert (logs / "trades.csv").read_bytes() == trades_before
    assert (logs / "portfolio.csv").read_bytes() == portfolio_before


def test_state_dir_refuses_another_symbol(tmp_path, real_sample, capsys):
    from papertrader.cli import main

    assert main(["run", "--http-port", "0", "--ws-port", "0", "--source", "replay", "--replay-file", str(real_sample),
                 "--state-dir", str(tmp_path / "s"), "--max-candles", "100"]) == 0
    capsys.readouterr()
    code = main(["run", "--http-port", "0", "--ws-port", "0", "--source", "replay", "--replay-file", str(real_sample),
                 "--state-dir", str(tmp_path / "s"), "--symbol", "ETH-EUR"])
    assert code == 2
    assert "belongs to SYMBOL=BTC-EUR, not ETH-EUR" in capsys.readouterr().err
