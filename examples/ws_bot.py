"""A bot that keeps one live view of the market over the WebSocket, and prints it as it changes.

    pip install websockets
    python examples/ws_bot.py --url ws://localhost:8000/ws --sort price_change --window 5m --limit 10
    python examples/ws_bot.py --tokens <mint>,<mint>          # a watchlist instead of a view
    python examples/ws_bot.py --json --updates 5               # one JSON line per update, stop after 5

How it keeps the view (docs/API.md, "Keeping a view"): the server sends a `snapshot` (every row, in view
order), then a `delta` per version that changes the view. A delta's `remove` drops rows, each `upsert` item
is merged into its row as a DEEP merge (nested objects such as `stats` are merged key by key; a row new to
the view comes whole), and `order`, when present, is the new order. A delta whose `prev_seq` is below the
seq the bot holds, or of another epoch, means state was lost: the bot subscribes again for a snapshot. After
a dropped connection it reconnects with `since` and gets one delta bridging the gap (or a snapshot).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

Row = dict[str, Any]


def deep_merge(row: Row, patch: Row) -> None:
    """Merge `patch` into `row`: objects key by key, anything else (numbers, strings, null) replaces."""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(row.get(key), dict):
            deep_merge(row[key], value)
        else:
            row[key] = value


class View:
    """One subscription's rows as the server means them, at `seq` of `epoch`."""

    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}
        self.order: list[str] = []
        self.epoch: str | None = None
        self.seq = -1  # the version the rows are at
        self.resume_seq = -1  # the latest seq the view is known current at (heartbeats too): resume from here
        self.sol_usd: float | None = None

    def apply(self, message: dict[str, Any]) -> bool:
        """Apply a snapshot or delta. False when it cannot be applied: subscribe again for a snapshot."""
        kind = message.get("type")
        if kind == "snapshot":
            self.rows = {row["token_address"]: row for row in message["rows"]}
            self.order = [row["token_address"] for row in message["rows"]]
            self.epoch, self.seq = message["epoch"], message["seq"]
            self.sol_usd = message.get("sol_usd", self.sol_usd)
        elif kind == "delta":
            if self.epoch is None:
                return True  # subscribed again after lost state: waiting for the snapshot
            if message["epoch"] != self.epoch or message["prev_seq"] < self.seq:
                return False
            for address in message.get("remove", ()):
                self.rows.pop(address, None)
            for item in message.get("upsert", ()):
                row = self.rows.get(item["token_address"])
                if row is None:
                    self.rows[item["token_address"]] = item  # new to the view: it comes whole
                else:
                    deep_merge(row, item)
            if "order" in message:
                self.order = list(message["order"])
            self.seq = message["seq"]
            self.sol_usd = message.get("sol_usd", self.sol_usd)
        elif kind == "heartbeat" and message.get("epoch") == self.epoch:
            self.resume_seq = max(self.resume_seq, message["seq"])
            return True
        else:
            return True
        self.resume_seq = max(self.resume_seq, self.seq)
        return True

    def table(self) -> list[Row]:
        return [self.rows[address] for address in self.order]


def subscribe_command(args: argparse.Namespace, view: View) -> dict[str, Any]:
    command: dict[str, Any] = {"op": "subscribe", "id": "bot"}
    if args.tokens:
        command["tokens"] = [t.strip() for t in args.tokens.split(",") if t.strip()]
    else:
        command["view"] = {"sort": args.sort, "window": args.window, "order": args.order, "limit": args.limit}
        if args.min_liquidity_usd is not None:
            command["view"]["min_liquidity_usd"] = args.min_liquidity_usd
    if view.epoch is not None:
        command["since"] = f"{view.epoch}:{view.resume_seq}"  # resume: one bridging delta, or a snapshot
    return command


def show(view: View, args: argparse.Namespace) -> None:
    if args.json:
        print(json.dumps({"type": "view", "epoch": view.epoch, "seq": view.seq, "rows": view.table()}), flush=True)
        return
    print(f"\n-- seq {view.seq}  SOL ${view.sol_usd or 0:,.2f}")
    for row in view.table():
        change = row["stats"][args.window]["price_change"]
        volume = row["stats"][args.window]["volume_usd"]
        print(f"{(row['token_ticker'] or '?')[:10]:<10} {row['price_usd'] or 0:>14.8g} $  "
              f"{'' if change is None else f'{change:+.2f}%':>9}  vol {volume or 0:>14,.0f} $  {row['protocol'] or ''}")
    sys.stdout.flush()


def show_alert(alert: dict[str, Any], args: argparse.Namespace) -> None:
    if args.json:
        print(json.dumps(alert), flush=True)
    else:
        print(f"!! {alert['alert_type']} {alert['token_ticker']}: {alert['value']} (threshold {alert['threshold']})",
              flush=True)


async def run(args: argparse.Namespace) -> int:
    view = View()
    updates = 0
    backoff = 0.5
    while True:
        try:
            async with connect(args.url, open_timeout=10, max_size=None) as ws:
                await ws.send(json.dumps(subscribe_command(args, view)))
                backoff = 0.5
                async for raw in ws:
                    message = json.loads(raw)
                    kind = message.get("type")
                    if kind == "error":
                        print(f"error from the server: {message['message']}", file=sys.stderr)
                        return 2
                    if kind == "alert":
                        show_alert(message, args)
                        continue
                    if not view.apply(message):  # state lost: a fresh snapshot
                        view.epoch = None
                        await ws.send(json.dumps(subscribe_command(args, view)))
                        continue
                    if kind in ("snapshot", "delta"):
                        show(view, args)
                        updates += 1
                        if args.updates and updates >= args.updates:
                            return 0
        except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError) as exc:
            print(f"connection lost ({exc.__class__.__name__}); reconnecting in {backoff:.1f} s", file=sys.stderr)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)


def main() -> int:
    parser = argparse.ArgumentParser(description="Keep one live view of the market over the WebSocket.")
    parser.add_argument("--url", default="ws://localhost:8000/ws")
    parser.add_argument("--sort", default="volume")
    parser.add_argument("--window", default="24h")
    parser.add_argument("--order", default="desc")
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--min-liquidity-usd", type=float, default=None)
    parser.add_argument("--tokens", help="comma list of mints: a watchlist instead of a view")
    parser.add_argument("--json", action="store_true", help="one JSON line per update (and per alert)")
    parser.add_argument("--updates", type=int, default=0, help="stop after this many updates (0: never)")
    args = parser.parse_args()
    if args.tokens:
        args.window = "24h"
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
