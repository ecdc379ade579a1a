"""``pica bot create|list|key|delete``: bot accounts, straight on the store like the other admin commands
(:mod:`pica.cli.admin`), with the server running or not.

A bot's key and its webhook secret are shown once, when made: the store keeps the key's hash only. What these
commands change reaches running nodes through the store: a new or rotated key works at once, an old one is refused
at once and its sockets are closed within ``auth.revocation_poll``; a bot's webhook is taken up by every node within
``jobs.endpoint_refresh``. The webhook URL given here is the operator's, so it may point anywhere (as the TOML
file's ``[[webhooks]]``), unlike ``pica webhook add``'s, which are SSRF-checked.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, Final

from pica.cli.admin import AdminError, open_store
from pica.cli.render import stamp, table
from pica.config import Config, ConfigError, load_config, valid_secret
from pica.core.bots import BotService
from pica.core.ports import SystemClock
from pica.errors import PicaError
from pica.logs import configure
from pica.store.base import Store
from pica.webhooks.signing import new_secret

COMMANDS: Final = ("bot",)


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    bot = sub.add_parser("bot", help="bot accounts: API keys, webhooks (directly in the store)")
    actions = bot.add_subparsers(dest="action", required=True)
    p = actions.add_parser("create", parents=[common], help="create a bot (its API key is shown once)")
    p.add_argument("name")
    p.add_argument("--webhook", metavar="URL", default="",
                   help="deliver the bot's messages to this URL (signed; default: the bot reads a socket)")
    p.add_argument("--secret", help="the webhook's whsec_<base64> signing secret (default: a new one)")
    actions.add_parser("list", parents=[common], help="list bots")
    p = actions.add_parser("key", parents=[common], help="rotate a bot's API key (the old one stops working)")
    p.add_argument("name")
    p = actions.add_parser("delete", parents=[common], help="delete a bot's account and key")
    p.add_argument("name")


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(config_file=args.config, overrides={"data_dir": args.data_dir, "store": args.store})
        configure("WARNING", config.log.format)  # the audit records only, as the other admin commands
        _check(args)
        print(asyncio.run(_open_and_dispatch(args, config)))
    except ConfigError as exc:
        print(f"pica: configuration error: {exc}", file=sys.stderr)
        return 2
    except (AdminError, PicaError) as exc:
        print(f"pica: {exc}", file=sys.stderr)
        return 1
    return 0


async def _open_and_dispatch(args: argparse.Namespace, config: Config) -> str:
    async with open_store(config, creating=args.action == "create") as store:
        return await _dispatch(args, store)


def _check(args: argparse.Namespace) -> None:
    if args.action != "create":
        return
    if args.webhook and not args.webhook.startswith(("http://", "https://")):
        raise AdminError(f"--webhook: expected an http:// or https:// URL, got {args.webhook!r}")
    if args.secret is not None and (not args.webhook or not valid_secret(args.secret)):
        raise AdminError("--secret: expected whsec_ followed by the base64 of at least 16 bytes, with --webhook")


async def _dispatch(args: argparse.Namespace, store: Store) -> str:
    bots = BotService(store, SystemClock())
    if args.action == "create":
        secret = (args.secret or new_secret()) if args.webhook else ""
        new = await bots.create(args.name, args.webhook, secret)
        out = f"created bot {new.username} (#{new.user_id})\nkey: {new.key}"
        if args.webhook:
            out += f"\nwebhook: {args.webhook}\nsecret: {secret}"
        return out + "\n(shown once: keep them now)"
    if args.action == "list":
        rows = [(b.user_id, b.username, b.webhook_url or "(socket)", stamp(b.created_at), stamp(b.key_created_at))
                for b in await bots.list()]
        return table(("ID", "NAME", "WEBHOOK", "CREATED", "KEY SINCE"), rows) if rows else "no bots"
    bot = await bots.by_name(args.name)
    if args.action == "key":
        key = await bots.rotate(bot.user_id)
        return f"new key for {bot.username} (#{bot.user_id}): {key}\n(the old key is refused from now on)"
    await bots.delete(bot.user_id)
    return f"deleted bot {bot.username} (#{bot.user_id}); its key is refused from now on"
