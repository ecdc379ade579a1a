"""The composition root: builds the store, delivery, core services and gateways from the config, and owns the
node's lifecycle (start, SIGTERM drain, stop). Nothing else constructs these objects."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import secrets
import socket
import ssl
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from aiohttp import web

from pica.api.checks import ResponseCheck
from pica.api.files import MEDIA_KEY
from pica.api.http import build_app, metrics_response
from pica.api.spec import route
from pica.config import Config, is_hub_url
from pica.core.accounts import AccountService
from pica.core.admin import AdminService
from pica.core.calls import CallService
from pica.core.chat import ChatService
from pica.core.devices import DeviceService
from pica.core.fanout import GroupFanout
from pica.core.forwarding import ForwardService
from pica.core.groups import GroupService
from pica.core.lifecycle import LifecycleService
from pica.core.passwords import PasswordHasher
from pica.core.pins import PinService, PrefsService
from pica.core.placement import NodeAddress
from pica.core.ports import Delivery, GroupRouter, Presence, SystemClock
from pica.core.ratelimit import RateLimits
from pica.core.scram import ScramService
from pica.core.sessions import SessionService
from pica.core.social import SocialService
from pica.core.tokens import RefreshTokens, TokenService
from pica.errors import Banned, PicaError, SessionEnded, StartupError
from pica.gateway.admission import AddressSlots, ConnectPace
from pica.gateway.http_socket import http_socket_factory
from pica.gateway.hub import ConnectionHandle, Hub
from pica.gateway.revocation import RevocationSweep
from pica.gateway.services import GatewayServices
from pica.gateway.tcp import start_tcp_server
from pica.gateway.tls import ServerTls, server_tls
from pica.jobs.worker import Handler, JobWorker, wall_ms
from pica.logs import audit
from pica.media.service import MediaService, open_blobs
from pica.metrics import NodeMetrics
from pica.mqtt import start_mqtt_server
from pica.previews.job import PreviewJob
from pica.protocol import frames as f
from pica.protocol.close_codes import CloseCode
from pica.protocol.outbound import OutboundFrame
from pica.push.sender import PushSender, build_providers
from pica.store.base import JobRules, Store
from pica.store.factory import build_store, sqlite_path
from pica.store.job_rules import PREVIEW, PUSH, STREAM, WEBHOOK, valid_pattern
from pica.store.sqlite_files import server_lock
from pica.webhooks.before_send import BeforeSendHook
from pica.webhooks.delivery import WebhookSender
from pica.webhooks.endpoints import Endpoints
from pica.xmpp import start_xmpp_server
from pica.xmpp.gateway import resumptions as xmpp_resumptions

if TYPE_CHECKING:
    from pica.cluster import Cluster
    from pica.stream.nats import NatsPublisher

log = logging.getLogger(__name__)

_RESYNC_RATE = 4_000
"""Connections per second a node tells to resync after a bus interruption (spreads the syncs' load on the store)."""



def token_secret(config: Config) -> str:
    """The configured secret, or one generated once and kept (mode 0600) in the data directory so that tokens
    survive a restart."""
    if config.auth.token_secret:
        return config.auth.token_secret
    path = config.data_dir / "token_secret"
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    config.data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(secret)
    return secret


def bind_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening-ready TCP socket; binding here (not in the library) tells us the real port when port is 0."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


T = TypeVar("T")


def _checked(step: Callable[[], T], what: str) -> T:
    """Run a start-up step; an OS or TLS error becomes a StartupError naming ``what``."""
    try:
        return step()
    except ssl.SSLError as exc:
        raise StartupError(f"{what}: OpenSSL cannot load them ({exc.reason or exc}): they must be PEM files, the "
                           "key the certificate's") from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            reason += " (another pica serve, or another program, listens there: choose another port)"
        elif exc.errno == errno.EACCES and "port" in what:
            reason += " (ports below 1024 need privileges)"
        elif exc.filename:
            reason += f": {exc.filename}"
        raise StartupError(f"{what}: {reason}") from None


def _writable(directory: Path) -> None:
    """Create the data directory if needed and prove it can be written (an error names the path)."""
    directory.mkdir(parents=True, exist_ok=True)
    probe = directory / f".write-test-{os.getpid()}"
    probe.write_bytes(b"")
    probe.unlink()


def _vapid_public_key(config: Config) -> str:
    if not config.push.vapid_private_key:
        return ""
    from pica.push.webpush import public_key

    return public_key(config.push)


class SideWork:
    """The job queue's side of a node or of a ``pica worker`` process: the webhook endpoints in force (whose job
    rules a node's store writes with every commit, ``write_jobs``) and a worker delivering the jobs (``run_worker``).
    """

    def __init__(self, config: Config, store: Store, *, write_jobs: bool, run_worker: bool) -> None:
        patterns = {f"webhooks[{i}].events": hook.events for i, hook in enumerate(config.webhooks)}
        stream = config.event_stream.events if config.event_stream.url else ()
        patterns["event_stream.events"] = stream
        for key, events in patterns.items():
            for pattern in events:
                if not valid_pattern(pattern):
                    raise StartupError(f"{key}: no event type matches {pattern!r} (docs/webhooks.md)")
        self.config = config
        self.store = store
        self.worker: JobWorker | None = None
        push_on = bool(config.push.platforms)
        self.endpoints = Endpoints(config.webhooks, store, self._rules_changed if write_jobs else lambda rules: None,
                                   stream, int(config.push.delay * 1000) if push_on else None,
                                   previews=config.previews.enabled)
        self.sender = WebhookSender(self.endpoints, config.jobs)
        self.publisher: NatsPublisher | None = None
        handlers: dict[str, Handler] = {WEBHOOK: self.sender}
        self.pusher: PushSender | None = None
        if push_on:
            try:
                self.pusher = PushSender(store, build_providers(config.push))
            except (OSError, ValueError) as exc:  # a key file missing or not a key
                raise StartupError(f"push: cannot load the credentials: {exc}") from exc
            handlers[PUSH] = self.pusher
        self.previewer: PreviewJob | None = None
        if config.previews.enabled:
            self.previewer = handlers[PREVIEW] = PreviewJob(store, config.previews)
        if config.event_stream.url:
            from pica.stream.nats import NatsPublisher  # nats is imported only when a stream is configured

            self.publisher = NatsPublisher(config.event_stream)
            handlers[STREAM] = self.publisher
        if run_worker:
            self.worker = JobWorker(store, handlers, config.jobs)

    def _rules_changed(self, rules: JobRules | None) -> None:
        self.store.set_job_rules(rules, self._jobs_written if self.worker is not None else None)

    def _jobs_written(self) -> None:
        """After a commit that may have queued jobs: webhooks are due now, a message's push job ``push.delay``
        later (this node's worker looks then, not at its next poll)."""
        assert self.worker is not None
        self.worker.wake()
        if self.pusher is not None:
            self.worker.wake_later(self.config.push.delay)

    async def start(self) -> None:
        await self.endpoints.refresh()
        self.endpoints.start(self.config.jobs.endpoint_refresh)
        if self.worker is not None:
            self.worker.start()

    async def stop(self) -> None:
        await self.endpoints.stop()
        if self.worker is not None:
            await self.worker.stop()
        await self.sender.close()
        if self.pusher is not None:
            await self.pusher.close()
        if self.publisher is not None:
            await self.publisher.close()

    async def stats(self) -> dict[str, float]:
        """For /metrics: the queue as the store has it, and this process's worker's counters."""
        queue = await self.store.job_stats()
        oldest = 0.0 if queue.oldest_queued_at is None else max(0.0, (wall_ms() - queue.oldest_queued_at) / 1000)
        values: dict[str, float] = {"queued": queue.queued, "running": queue.running, "dead": queue.dead,
                                    "oldest_queued_seconds": round(oldest, 3)}
        if self.worker is not None:
            counters = self.worker.counters
            values.update(done_total=counters.done, retried_total=counters.retried, dead_total=counters.dead)
        return values


async def run_worker(config: Config, stop: asyncio.Event) -> None:
    """``pica worker``: a process that only runs jobs, beside the nodes of a cluster (or of one SQLite node), until
    ``stop`` is set."""
    store = build_store(config)
    side = SideWork(config, store, write_jobs=False, run_worker=True)  # refuses bad patterns before opening
    metrics_socket = None
    if config.metrics.worker_port >= 0:  # bound first: a port in use is told before anything starts
        metrics_socket = _checked(lambda: bind_socket(config.host, config.metrics.worker_port),
                                  f"metrics.worker_port {config.metrics.worker_port}")
    runner = None
    try:
        await store.open()
        try:
            await side.start()
            if metrics_socket is not None:
                runner = await _serve_worker_metrics(metrics_socket, side)
            port = metrics_socket.getsockname()[1] if metrics_socket is not None else None
            log.info("pica worker started", extra={"concurrency": config.jobs.concurrency, "metrics_port": port})
            await stop.wait()
            await side.stop()
        finally:
            await store.close()
    finally:
        if runner is not None:
            await runner.cleanup()
        elif metrics_socket is not None:
            metrics_socket.close()
    log.info("pica worker stopped")


async def _serve_worker_metrics(sock: socket.socket, side: SideWork) -> web.AppRunner:
    """``GET /metrics`` of a ``pica worker`` (``metrics.worker_port``): its job counters, the queue, its process."""
    metrics = NodeMetrics(gateway=False)

    async def handler(request: web.Request) -> web.Response:
        return await metrics_response(metrics.render, side.stats)

    app = web.Application()
    route(app, "GET", "/metrics", handler, summary="A pica worker's metrics (Prometheus text format)", auth="none",
          tag="operations")
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return runner


class PicaServer:
    """One node. ``start()`` binds the listeners; ``http_port``/``tcp_port`` then hold the real ports."""

    def __init__(self, config: Config, store: Store | None = None, *, reuse_port: bool = False) -> None:
        self.config = config
        self.node_id = config.node_id or f"{socket.gethostname()}-{os.getpid()}"
        self.clock = SystemClock()
        self.store: Store = store or build_store(config)
        self._owns_store = store is None
        self._lock = contextlib.ExitStack()
        """Holds the SQLite database's server lock from start to stop."""
        self.hub = Hub()
        self.reuse_port = reuse_port
        """Workers of ``pica serve --workers N`` share the listening ports (SO_REUSEPORT)."""
        self.cluster: Cluster | None = None
        self._background: set[asyncio.Task[None]] = set()
        self.http_port = 0
        self.tcp_port = 0
        self.mqtt_port = 0
        """The MQTT gateway's port once started (``mqtt.port``; stays 0 when it is off)."""
        self._mqtt_server: asyncio.Server | None = None
        self.xmpp_port = 0
        """The XMPP gateway's port once started (``xmpp.port``; stays 0 when it is off)."""
        self.xmpp_tls_port = 0
        """The XMPP gateway's direct TLS port (``xmpp.tls_port``; stays 0 when it is off)."""
        self._xmpp_servers: list[asyncio.Server] = []
        self._runner: web.AppRunner | None = None
        self._tcp_server: asyncio.Server | None = None
        self._http_server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._ban_sweeper: asyncio.Task[None] | None = None
        self._revocation_sweeper: asyncio.Task[None] | None = None
        self._media_sweeper: asyncio.Task[None] | None = None
        self.media: MediaService | None = None
        self._lag_sampler: asyncio.Task[None] | None = None
        self.services: GatewayServices | None = None
        self.side_work: SideWork | None = None
        self._before_send: BeforeSendHook | None = None
        self.tls: ServerTls | None = None
        self.response_check: ResponseCheck | None = None
        """Set before ``start`` by the test suite: every HTTP answer is checked against its route's declaration."""

    async def start(self) -> None:
        """Raises StartupError for what the operator must fix (a port in use, a data directory that cannot be
        written, a certificate that does not load), before anything is opened."""
        config = self.config
        # The job queue's side first: a webhook pattern that matches nothing refuses the start.
        self.side_work = side = SideWork(config, self.store, write_jobs=True, run_worker=config.jobs.run_in_node)
        # Everything that can refuse the start comes before the store opens (its writer process, its pool): a
        # refused start leaves nothing running behind it.
        self.tls = _checked(lambda: server_tls(config.tls), "TLS certificate and key")
        if not config.store or config.store.startswith("sqlite:"):
            _checked(lambda: _writable(config.data_dir), f"data directory {config.data_dir}")
            # One server per database file (a test may hand in a store of its own); the workers of pica serve
            # --workers share theirs under the lock their supervisor holds.
            if self._owns_store and not is_hub_url(config.cluster):
                database = sqlite_path(config)
                self._lock.enter_context(_checked(lambda: server_lock(database), f"database {database}"))
        # Bind first: the cluster registry advertises the real ports.
        try:
            http_socket = _checked(lambda: bind_socket(config.host, config.port, reuse_port=self.reuse_port),
                                   f"HTTP port {config.host}:{config.port}")
        except StartupError:
            self._lock.close()
            raise
        self.http_port = http_socket.getsockname()[1]
        tcp_socket = None
        if config.tcp_port >= 0:
            try:
                tcp_socket = _checked(lambda: bind_socket(config.host, config.tcp_port, reuse_port=self.reuse_port),
                                      f"TCP port {config.host}:{config.tcp_port}")
            except StartupError:
                http_socket.close()
                self._lock.close()
                raise
            self.tcp_port = tcp_socket.getsockname()[1]
        mqtt_socket = None
        if config.mqtt.port >= 0:
            try:
                mqtt_socket = _checked(lambda: bind_socket(config.host, config.mqtt.port, reuse_port=self.reuse_port),
                                       f"MQTT port {config.host}:{config.mqtt.port}")
            except StartupError:
                for sock in (http_socket, tcp_socket):
                    if sock is not None:
                        sock.close()
                self._lock.close()
                raise
            self.mqtt_port = mqtt_socket.getsockname()[1]
        xmpp_sockets: list[tuple[socket.socket, bool]] = []
        for port, direct in ((config.xmpp.port, False), (config.xmpp.tls_port, True)):
            if port < 0 or (direct and not config.tls.cert):
                continue
            try:
                xmpp_sockets.append((_checked(partial(bind_socket, config.host, port, reuse_port=self.reuse_port),
                                              f"XMPP port {config.host}:{port}"), direct))
            except StartupError:
                for sock in (http_socket, tcp_socket, mqtt_socket, *(s for s, _ in xmpp_sockets)):
                    if sock is not None:
                        sock.close()
                self._lock.close()
                raise
        for sock, direct in xmpp_sockets:
            if direct:
                self.xmpp_tls_port = sock.getsockname()[1]
            else:
                self.xmpp_port = sock.getsockname()[1]
        try:
            await self.store.open()
        except BaseException:
            for sock in (http_socket, tcp_socket, mqtt_socket, *(s for s, _ in xmpp_sockets)):
                if sock is not None:
                    sock.close()
            self._lock.close()
            raise
        await side.start()
        if config.before_send.url:
            self._before_send = BeforeSendHook(config.before_send)
        auth = config.auth
        hasher = PasswordHasher(
            time_cost=auth.argon2_time_cost,
            memory_kib=auth.argon2_memory_kib,
            parallelism=auth.argon2_parallelism,
            concurrency=auth.hash_concurrency,
        )
        secret = token_secret(config)
        sessions = SessionService(self.store, TokenService(secret, auth.token_ttl, auth.token_algorithm),
                                  RefreshTokens(secret), self.clock, auth)
        rates = RateLimits(config.rates, enabled=config.rate_limits == "on", clock=self.clock.monotonic,
                           bot_multiplier=config.bots.rate_multiplier)
        if not rates.enabled:
            log.warning("rate limits are off (rate_limits = off): for benchmarks and trusted deployments only")
        scram = ScramService(self.store, sessions, rates)
        accounts = AccountService(self.store, hasher, sessions, self.clock, auth, rates, scram)
        delivery: Delivery = self.hub
        presence: Presence = self.hub
        fanout: GroupRouter
        if config.cluster:
            self.cluster = cluster = self._build_cluster()
            delivery, presence, fanout = cluster.delivery, cluster.presence, cluster.fanout
            rates.shared = cluster.buckets
        else:
            fanout = GroupFanout(self.store, self.hub)
        chat = ChatService(self.store, delivery, self.clock, config.limits, fanout, rates, self._before_send,
                           config.annotations)
        if side.previewer is not None:  # previews attached by this node's worker are delivered live
            side.previewer.deliver = chat.deliver_event
        social = SocialService(self.store, delivery, self.clock, presence, rates, config.limits.presence_delay)
        if self.cluster is not None:
            self.cluster.set_presence_listener(social.on_presence_change)
            self.cluster.on_resync = self._resync_clients
        else:
            self.hub.add_presence_listener(social.on_presence_change)
        calls = CallService(self.store, chat, delivery, self.clock, config.calls, rates)
        self.services = services = GatewayServices(
            chat=chat,
            calls=calls,
            turn=config.turn,
            accounts=accounts,
            groups=GroupService(self.store, fanout, self.clock, config.limits, delivery),
            social=social,
            lifecycle=LifecycleService(self.store, accounts, self.clock, fanout, rates, self._close_deleted),
            hub=self.hub,
            limits=config.limits,
            clock=self.clock,
            allowed_origins=config.allowed_origins,
            rates=rates,
            trusted_proxies=frozenset(config.trusted_proxies),
            # Caps on sockets, lifted with the rate limits (benchmarks hold thousands from one address and user).
            address_slots=AddressSlots(config.limits.max_connections_per_address if rates.enabled else 0),
            max_sessions_per_user=config.limits.max_sessions_per_user if rates.enabled else 0,
            connect_pace=ConnectPace(config.limits.connects_per_second if rates.enabled else 0.0,
                                     config.limits.connect_burst, config.limits.connect_wait),
            live_nodes=self._live_nodes,
            before_ready=self.cluster.before_ready if self.cluster is not None else None,
            cluster_stats=self.cluster.stats if self.cluster is not None else None,
            cluster_healthy=self._cluster_healthy if self.cluster is not None else None,
            job_stats=side.stats,
            devices=DeviceService(self.store, config.push, self.clock, _vapid_public_key(config)),
            admin=AdminService(self.store, accounts, self.clock, config.limits, chat=chat, fanout=fanout,
                               disconnect=self._close_deleted, rates=rates),
            forwarding=ForwardService(self.store, chat, config.conversations),
            pins=PinService(self.store, chat, self.clock, config.conversations, rates),
            prefs=PrefsService(self.store, delivery, self.clock, config.conversations, rates),
        )
        services.metrics.sources.store_backlog = self.store.write_backlog
        self.store.observe_commits(services.metrics.observe_commit)
        if self.cluster is not None:
            await self.cluster.start()
        # aiohttp's keep-alive timer is the request-head deadline (pica.gateway.http_socket says why it fits).
        app = build_app(services, self.response_check)
        if self.cluster is not None and not config.media.storage and not is_hub_url(config.cluster):  # workers share it
            log.warning("files are kept in this node's data directory (media.storage is empty): in a cluster set "
                        "media.storage = \"s3://...\" so that every node serves every file")
        self.media = media = MediaService(self.store, await open_blobs(config.media, config.data_dir), config.media,
                                          config.data_dir, self.clock)
        await media.start()
        app[MEDIA_KEY] = media
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     keepalive_timeout=config.limits.http_header_timeout)
        await self._runner.setup()
        handlers = self._runner.server
        assert handlers is not None
        # Our own listener rather than a web.SockSite: its protocol factory wraps each aiohttp handler (the
        # per-address cap and the WebSocket masking rule, pica.gateway.http_socket). The runner still tracks every
        # handler, so its cleanup closes them as before.
        tls = self.tls
        self._http_server = await asyncio.get_running_loop().create_server(
            http_socket_factory(handlers, services), sock=http_socket, backlog=4096,
            ssl=tls.http if tls else None, ssl_handshake_timeout=tls.handshake_timeout if tls else None,
        )
        if tcp_socket is not None:
            self._tcp_server = await start_tcp_server(services, sock=tcp_socket, tls=tls)
        if mqtt_socket is not None:
            self._mqtt_server = await start_mqtt_server(services, config.mqtt, sock=mqtt_socket, tls=tls)
        lost_streams = xmpp_resumptions(services, config.xmpp)
        for sock, direct in xmpp_sockets:
            self._xmpp_servers.append(await start_xmpp_server(services, config.xmpp, sock, tls, direct_tls=direct,
                                                              registry=lost_streams, scram=scram))
        limits = config.limits
        interval = max(0.05, min(5.0, limits.auth_timeout / 4, limits.heartbeat_interval / 4))
        self._sweeper = asyncio.get_running_loop().create_task(
            self.hub.run_sweeper(interval, self.clock.monotonic, time.time)
        )
        self._ban_sweeper = asyncio.get_running_loop().create_task(self._sweep_bans(interval))
        revocations = RevocationSweep(self.store, self.hub, self.clock, auth.revocation_poll)
        self._revocation_sweeper = asyncio.get_running_loop().create_task(revocations.run())
        self._media_sweeper = asyncio.get_running_loop().create_task(media.run_sweeps())
        if config.metrics.loop_lag_interval > 0:
            self._lag_sampler = asyncio.get_running_loop().create_task(
                services.metrics.sample_loop_lag(config.metrics.loop_lag_interval))
        log.info(
            "pica node started",
            extra={"node": self.node_id, "http_port": self.http_port, "tcp_port": self.tcp_port,
                   "mqtt_port": self.mqtt_port, "xmpp_port": self.xmpp_port,
                   "cluster": bool(self.cluster)},
        )

    def address(self) -> NodeAddress:
        """How clients reach this node (``advertise_host``, or the bound host)."""
        host = self.config.advertise_host or self.config.host
        if ":" in host:
            host = f"[{host}]"
        secure = "s" if self.config.tls.cert else ""
        return NodeAddress(
            node_id=self.node_id,
            http=f"http{secure}://{host}:{self.http_port}",
            ws=f"ws{secure}://{host}:{self.http_port}/v1/ws",
            tcp=f"{host}:{self.tcp_port}" if self.config.tcp_port >= 0 else "",
            connections=self.hub.connection_count,
        )

    def _build_cluster(self) -> Cluster:
        from pica.cluster import Cluster, NodeInfo  # redis is imported only in cluster mode

        me = self.address()
        node = NodeInfo(node_id=me.node_id, http=me.http, ws=me.ws, tcp=me.tcp, connections=0,
                        started_at=self.clock.now_ms())
        return Cluster(self.config.cluster, self.config.redis, node, self.hub, self.store, self.clock)

    async def _live_nodes(self) -> list[NodeAddress]:
        if self.cluster is None:
            return [self.address()]
        return list(await self.cluster.live_nodes())  # NodeInfo is a NodeAddress

    def _cluster_healthy(self) -> bool:
        return self.cluster is not None and self.cluster.healthy

    def _resync_clients(self) -> None:
        """The bus may have dropped frames for this node's clients: tell each to sync (they lose nothing acked).

        After a Redis restart every node does this at once, and every client's sync reads the store: the pushes are
        spread at ``_RESYNC_RATE`` connections per second so that a node with 20,000 clients asks over 5 s, not in
        one burst."""
        frame = OutboundFrame(f.Resync(reason="cluster bus interrupted"))
        targets = [conn for conn in self.hub.connections() if conn.user_id and not conn.closed]
        log.warning("asking clients to resync", extra={"node": self.node_id, "clients": len(targets)})
        task = asyncio.get_running_loop().create_task(self._push_spread(targets, frame))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _push_spread(self, targets: list[ConnectionHandle], frame: OutboundFrame) -> None:
        step = _RESYNC_RATE // 10
        for start in range(0, len(targets), step):
            if start:
                await asyncio.sleep(0.1)
            for conn in targets[start:start + step]:
                if not conn.closed:
                    conn.push(frame)

    def reload_tls(self) -> bool:
        """SIGHUP: read the TLS certificate and key again (renewal) without dropping connections."""
        return self.tls.reload() if self.tls is not None else False

    async def stop(self) -> None:
        """Drain: stop accepting, let in-flight requests (and so their commits) finish, tell every client to
        reconnect (close 4000), then close the store."""
        services = self.services
        if services is None:
            return
        services.accepting = False
        for server in (self._tcp_server, self._mqtt_server, *self._xmpp_servers):
            if server is not None:
                server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for sweeper in (self._ban_sweeper, self._revocation_sweeper, self._media_sweeper, self._lag_sampler):
            if sweeper is not None:
                sweeper.cancel()
        for task in list(self._background):
            task.cancel()
        pending = [t for t in services.tasks if not t.done()]
        if pending:  # request tasks: their commits, replies and deliveries
            await asyncio.wait(pending, timeout=self.config.limits.shutdown_grace)
        await services.wait_for_sends(self.config.limits.shutdown_grace)
        await asyncio.sleep(0)  # let the ack callbacks of the last commits run
        if services.calls is not None:  # before the sockets close: the parties are told, the records written
            await services.calls.close()
        for conn in self.hub.connections():
            conn.close(CloseCode.SERVER_SHUTDOWN, "server shutting down")
        closing = [t for t in services.tasks if not t.done()]
        if closing:
            await asyncio.wait(closing, timeout=2.0)
        if self._http_server is not None:
            self._http_server.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.cluster is not None:
            # Leaving the registry writes this node's last presence changes and announces "offline" for the users it
            # held alone (through the social service), so it runs before that service drains and the store closes.
            await self.cluster.stop()
        await services.social.drain()
        if self.side_work is not None:
            await self.side_work.stop()
        if self._before_send is not None:
            await self._before_send.close()
        if self.media is not None:
            await self.media.stop()
        await self.store.close()
        self._lock.close()
        self.services = None
        log.info("pica node stopped", extra={"node": self.node_id})

    async def _sweep_bans(self, interval: float) -> None:
        """Close the connections of users banned while connected. Bans are written by ``pica user ban``, usually
        from another process, so the store is polled; the poll reads only banned users (a partial index). (Deleted
        accounts need no sweep: the deletion ends their sessions, whose sockets every node's revocation sweep
        closes, pica/gateway/revocation.py.)"""
        while True:
            await asyncio.sleep(interval)
            try:
                banned: set[int] = set()
                after = 0
                while page := await self.store.list_users(1000, after, banned_only=True):
                    banned.update(u.user_id for u in page if self.hub.is_online(u.user_id))
                    after = page[-1].user_id
            except PicaError:
                log.warning("ban sweep failed", exc_info=True)
                continue
            self._close_users(banned, Banned("this account is banned"), CloseCode.AUTH_FAILED,
                              "banned_user_disconnected")

    def _close_deleted(self, user_id: int) -> None:
        """The account was deleted through this node: its sockets here close at once; other nodes close theirs at
        their next revocation sweep (the deletion ended every session of the account), with the same code."""
        self._close_users({user_id}, SessionEnded("this account was deleted"), CloseCode.SESSION_ENDED,
                          "deleted_user_disconnected")

    def _close_users(self, users: set[int], error: PicaError, code: CloseCode, event: str) -> None:
        """Fail every READY connection of ``users`` on this node with ``error`` and close ``code``; one audit line
        per user."""
        if not users:
            return
        closed: Counter[int] = Counter()
        for conn in self.hub.connections():
            if conn.user_id in users and not conn.closed:
                conn.fail(error, code)
                closed[conn.user_id] += 1
        for user_id, connections in closed.items():
            audit(event, user_id=user_id, connections=connections)
