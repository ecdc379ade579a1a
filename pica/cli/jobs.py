"""``pica jobs list|retry|drop``, ``pica webhook add|list|remove`` and ``pica worker``.

The first two work straight on the store, like the other admin commands (:mod:`pica.cli.admin`): they need no
running node, and what they change reaches the running ones through the store (a retried job is found at the
workers' next poll; an endpoint added or removed at their next ``jobs.endpoint_refresh``). ``pica worker`` runs a
process that only delivers jobs (:func:`pica.app.run_worker`).

Endpoints are registered through this command rather than an HTTP admin API: the admin commands already act on the
store with the operator's own access to it, so no admin credential has to exist, be configured, and leak; an HTTP
API can be put on the same store methods and the same SSRF check later.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from pica.cli.admin import AdminError, open_store
from pica.cli.render import stamp, table
from pica.config import Config, ConfigError, load_config, valid_secret
from pica.errors import PicaError, StartupError
from pica.logs import audit, configure
from pica.store.base import Store, WebhookEndpoint
from pica.store.job_rules import valid_pattern
from pica.webhooks.signing import new_secret
from pica.webhooks.ssrf import RefusedAddress, check_registration

COMMANDS = ("jobs", "webhook", "worker")


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    jobs = sub.add_parser("jobs", help="the durable job queue: dead jobs and their replay (directly in the store)")
    actions = jobs.add_subparsers(dest="action", required=True)
    p = actions.add_parser("list", parents=[common], help="list jobs (default: the dead ones)")
    p.add_argument("--state", choices=["queued", "running", "dead", "all"], default="dead")
    p.add_argument("--limit", type=int, default=100, help="most rows (default 100)")
    p.add_argument("--after", type=int, default=0, metavar="JOB_ID", help="start after this job id (paging)")
    for name, what in (("retry", "queue dead jobs again, attempts reset"), ("drop", "delete dead jobs")):
        p = actions.add_parser(name, parents=[common], help=what)
        p.add_argument("job_ids", nargs="*", type=int, metavar="JOB_ID")
        p.add_argument("--all", action="store_true", help="every dead job")

    hook = sub.add_parser("webhook", help="webhook endpoints registered in the store (SSRF-checked)")
    actions = hook.add_subparsers(dest="action", required=True)
    p = actions.add_parser("add", parents=[common], help="register an endpoint (its secret is shown once)")
    p.add_argument("url")
    p.add_argument("--events", required=True, help="comma-separated event types or families: message.created,group.*")
    p.add_argument("--secret", help="whsec_<base64> (default: a new one)")
    actions.add_parser("list", parents=[common], help="list registered endpoints")
    p = actions.add_parser("remove", parents=[common], help="remove an endpoint (its queued jobs are dropped)")
    p.add_argument("endpoint_id")

    worker = sub.add_parser("worker", parents=[common], help="run a job worker (webhook deliveries) until SIGTERM")
    worker.add_argument("--concurrency", type=int, help="jobs run at once (default jobs.concurrency)")
    worker.add_argument("--metrics-port", type=int, help="serve /metrics on this port (default metrics.worker_port: "
                        "none)")


def run(args: argparse.Namespace, runner: Callable[[Coroutine[Any, Any, None]], Any]) -> int:
    """``runner`` runs the worker's event loop (uvloop's, from :mod:`pica.cli.main`)."""
    overrides = {"data_dir": args.data_dir, "store": args.store}
    if args.command == "worker":
        overrides["jobs.concurrency"] = args.concurrency
        overrides["metrics.worker_port"] = args.metrics_port
    try:
        config = load_config(config_file=args.config, overrides=overrides)
    except ConfigError as exc:
        print(f"pica: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "worker":
        configure(config.log.level, config.log.format)
        return _worker(config, runner)
    configure("WARNING", config.log.format)
    try:
        out = asyncio.run(_dispatch(args, config))
    except (AdminError, PicaError, ValueError, RefusedAddress) as exc:
        print(f"pica: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0


def _worker(config: Config, runner: Callable[[Coroutine[Any, Any, None]], Any]) -> int:
    from pica.app import run_worker

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(config, stop)

    try:
        with contextlib.suppress(KeyboardInterrupt):
            runner(main())
    except StartupError as exc:  # a setting the operator must fix, in one line
        print(f"pica: cannot start: {exc}", file=sys.stderr)
        return 2
    except PicaError as exc:
        print(f"pica: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


async def _dispatch(args: argparse.Namespace, config: Config) -> str:
    if (args.command, args.action) == ("webhook", "add"):
        await _check_new(args, config)  # before opening the store: a refused URL changes nothing
    async with open_store(config, creating=False) as store:
        if args.command == "jobs":
            if args.action == "list":
                return await jobs_list(store, None if args.state == "all" else args.state, args.limit, args.after)
            ids = _ids(args)
            if args.action == "retry":
                count = await store.retry_jobs(ids, _now_ms())
                audit("jobs_retried", jobs=count, by="pica jobs retry")
                return f"queued {count} dead job(s) again"
            count = await store.drop_jobs(ids)
            audit("jobs_dropped", jobs=count, by="pica jobs drop")
            return f"dropped {count} dead job(s)"
        if args.action == "add":
            return await webhook_add(store, args)
        if args.action == "list":
            return await webhook_list(store)
        if not await store.remove_webhook(args.endpoint_id):
            raise AdminError(f"no webhook endpoint {args.endpoint_id!r} (pica webhook list)")
        audit("webhook_removed", endpoint_id=args.endpoint_id, by="pica webhook remove")
        return f"removed {args.endpoint_id}"


def _ids(args: argparse.Namespace) -> list[int] | None:
    if args.all == bool(args.job_ids):
        raise AdminError("give job ids or --all (not both)")
    return None if args.all else list(args.job_ids)


def _now_ms() -> int:
    from pica.jobs.worker import wall_ms

    return wall_ms()


async def jobs_list(store: Store, state: str | None, limit: int, after: int) -> str:
    jobs = await store.list_jobs(state, limit, after)
    if not jobs:
        return f"no {state or ''} jobs".replace("  ", " ")
    rows = [(j.job_id, j.kind, j.target, j.key, j.state, j.attempts, stamp(j.created_at), j.last_error[:60])
            for j in jobs]
    out = table(("ID", "KIND", "TARGET", "KEY", "STATE", "ATTEMPTS", "CREATED", "LAST ERROR"), rows)
    if len(jobs) == limit:
        out += f"\n(more: --after {jobs[-1].job_id})"
    return out


async def _check_new(args: argparse.Namespace, config: Config) -> None:
    events = tuple(e.strip() for e in args.events.split(",") if e.strip())
    unknown = [e for e in events if not valid_pattern(e)]
    if not events or unknown:
        raise AdminError(f"no event type matches {unknown[0] if unknown else args.events!r} (docs/webhooks.md)")
    if args.secret is not None and not valid_secret(args.secret):
        raise AdminError("--secret: expected whsec_ followed by the base64 of at least 16 bytes")
    if not args.url.startswith(("http://", "https://")):
        raise AdminError(f"expected an http:// or https:// URL, got {args.url!r}")
    if not config.jobs.webhook_allow_private:
        await check_registration(args.url)


async def webhook_add(store: Store, args: argparse.Namespace) -> str:
    events = tuple(e.strip() for e in args.events.split(",") if e.strip())
    secret = args.secret or new_secret()
    endpoint = WebhookEndpoint("wh_" + secrets.token_hex(8), args.url, secret, events, _now_ms())
    await store.add_webhook(endpoint)
    audit("webhook_added", endpoint_id=endpoint.endpoint_id, url=args.url, by="pica webhook add")
    return f"added {endpoint.endpoint_id} for {', '.join(events)}\nsecret: {secret}"


async def webhook_list(store: Store) -> str:
    endpoints = await store.list_webhooks()
    if not endpoints:
        return "no registered webhook endpoints (those of the configuration file are not listed)"
    rows = [(e.endpoint_id, e.url, ",".join(e.events), stamp(e.created_at), "disabled" if e.disabled else "active")
            for e in endpoints]
    return table(("ID", "URL", "EVENTS", "CREATED", "STATUS"), rows)
