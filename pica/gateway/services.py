"""What a connection needs from the rest of the node, handed to it at construction (no globals)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pica.config import LimitsConfig, TurnConfig
from pica.core.accounts import AccountService
from pica.core.admin import AdminService
from pica.core.calls import CallService
from pica.core.chat import ChatService
from pica.core.devices import DeviceService
from pica.core.forwarding import ForwardService
from pica.core.groups import GroupService
from pica.core.lifecycle import LifecycleService
from pica.core.loopref import LoopRef
from pica.core.pins import PinService, PrefsService
from pica.core.placement import NodeAddress
from pica.core.ports import Clock
from pica.core.ratelimit import RateLimits
from pica.core.social import SocialService
from pica.errors import RateLimited
from pica.gateway.admission import AddressSlots, ConnectPace
from pica.gateway.hub import Hub
from pica.metrics import NodeMetrics


@dataclass(slots=True)
class GatewayServices:
    chat: ChatService
    accounts: AccountService
    groups: GroupService
    social: SocialService
    lifecycle: LifecycleService
    hub: Hub
    limits: LimitsConfig
    clock: Clock
    allowed_origins: tuple[str, ...] = ()
    calls: CallService | None = None
    """1:1 call signalling (None: call frames are refused with ``not_configured``)."""
    turn: TurnConfig = field(default_factory=TurnConfig)
    """The TURN servers ``GET /v1/turn`` hands credentials for."""
    rates: RateLimits | None = None
    """The node's rate limits (None: none, as for a service built in a unit test)."""
    trusted_proxies: frozenset[str] = frozenset()
    """Peers whose ``X-Forwarded-For`` names the client (``trusted_proxies``)."""
    live_nodes: Callable[[], Awaitable[Sequence[NodeAddress]]] | None = None
    """The nodes a client may be sent to by ``GET /v1/gateway`` (this node alone outside a cluster)."""
    before_ready: Callable[[int], Awaitable[None]] | None = None
    """Awaited after a connection authenticates and before its ``ready``: in a cluster, this node subscribes to the
    user's bus channel, so that nothing committed after the client's first sync can miss it."""
    cluster_stats: Callable[[], dict[str, int]] | None = None
    """The cluster bus's counters and gauges for /metrics (None outside a cluster)."""
    cluster_healthy: Callable[[], bool] | None = None
    job_stats: Callable[[], Awaitable[dict[str, float]]] | None = None
    """The job queue's gauges for /metrics (``pica_jobs_*``; None: not shown)."""
    devices: DeviceService | None = None
    """Push targets and notification settings (None: a bundle built without them, as in a unit test)."""
    address_slots: AddressSlots = field(default_factory=lambda: AddressSlots(0))
    """Open sockets per client address on both ports (``limits.max_connections_per_address``; 0: none)."""
    max_sessions_per_user: int = 0
    connect_pace: ConnectPace = field(default_factory=lambda: ConnectPace(0.0, 1, 0.0))
    """Socket authentications started per second (``limits.connects_per_second``; 0: no pace)."""
    """``limits.max_sessions_per_user`` as this node applies it (0: none, as when ``rate_limits = "off"``)."""
    metrics: NodeMetrics = field(default_factory=NodeMetrics)
    """This node's metrics (/metrics); the gauges this bundle owns are wired into it at construction."""
    tasks: set[asyncio.Future[Any]] = field(default_factory=set)
    """Request tasks and in-flight send futures: what a drain waits for."""
    accepting: bool = True
    loop: LoopRef = field(default_factory=LoopRef)
    """The event loop the connections run on (looked up once: :class:`~pica.core.loopref.LoopRef`)."""
    admin: AdminService | None = None
    """Administration and users' reports (``/v1/admin/...``, ``/v1/reports``; None: those routes answer 503)."""
    forwarding: ForwardService | None = None
    pins: PinService | None = None
    prefs: PrefsService | None = None
    """Forwarding, pins, and drafts and list settings (protocol section 29; None: those routes answer 503)."""

    sends_in_flight: int = 0
    """Socket sends submitted and not yet acked (they are callbacks, not tasks)."""
    _sends_done: asyncio.Event | None = None

    def __post_init__(self) -> None:
        sources = self.metrics.sources
        sources.connections = self.hub.connections_by_transport
        sources.online_users = lambda: self.hub.online_users
        sources.send_queue = self.hub.send_queue
        sources.sends_in_flight = lambda: self.sends_in_flight
        sources.address_refusals = lambda: self.address_slots.refused
        sources.cluster = self.cluster_stats

    def sends_started(self) -> None:
        self.sends_in_flight += 1

    def sends_finished(self) -> None:
        self.sends_in_flight -= 1
        if self.sends_in_flight == 0 and self._sends_done is not None:
            self._sends_done.set()

    async def wait_for_sends(self, timeout: float) -> None:
        """Until every submitted send has its ack (or the timeout passes): the drain's "finish pending commits"."""
        if self.sends_in_flight == 0:
            return
        self._sends_done = asyncio.Event()
        try:
            async with asyncio.timeout(timeout):
                await self._sends_done.wait()
        except TimeoutError:
            pass
        finally:
            self._sends_done = None

    async def connect_turn(self) -> None:
        """Wait for this socket authentication's turn under ``limits.connects_per_second``; RateLimited when it is
        more than ``limits.connect_wait`` away (the client is told when to come back)."""
        wait = self.connect_pace.turn(self.clock.monotonic())
        if wait < 0.0:  # counted in pica_refusals_total where the refusal is told (metrics.error)
            raise RateLimited("the server is accepting connections at its pace; reconnect later", -wait,
                              "limits.connects_per_second")
        if wait > 0.0:
            self.metrics.connects_waited += 1
            await asyncio.sleep(wait)

    def track(self, task: asyncio.Future[Any]) -> None:
        """Keep a reference to a request task or send future until it finishes (and let shutdown wait for it)."""
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
