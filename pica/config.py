"""Configuration: one typed, frozen object, loaded once at the edge and passed down.

Precedence, highest first: command-line flags > ``PICA_*`` environment variables > the TOML file named by
``--config`` (or ``PICA_CONFIG``) > the defaults below. Top-level keys map to ``PICA_<KEY>`` (``PICA_PORT``), keys of
a section to ``PICA_<SECTION>_<KEY>`` (``PICA_LIMITS_MAX_FRAME_BYTES``). Errors name the key path.
Every default is documented next to its field and in the README's configuration table.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import ipaddress
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import quote, unquote

ENV_PREFIX: Final = "PICA_"


class ConfigError(ValueError):
    """A configuration value is missing, malformed or out of range; the message names the key path."""


_RATE_UNITS: Final = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hour": 3600.0, "d": 86400.0}
_RATE: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$")


def parse_rate(text: str) -> tuple[float, float]:
    """``"30/min"``, ``"5/s"``, ``"10/15min"``, ``"100/h"``, ``"2/d"`` → (count, seconds). ValueError otherwise."""
    match = _RATE.match(text.lower())
    if match is None or match.group(3) not in _RATE_UNITS:
        raise ValueError(f"expected a rate such as '30/min' or '10/15min', got {text!r}")
    count = float(match.group(1))
    per = float(match.group(2) or 1) * _RATE_UNITS[match.group(3)]
    if count <= 0 or per <= 0:
        raise ValueError(f"a rate needs a positive count and period, got {text!r}")
    return count, per


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    max_frame_bytes: int = 65_536
    """Largest frame accepted from a client, on either transport (checked before the payload is read)."""
    max_body_bytes: int = 16_384
    """Largest message body, measured as its JSON encoding."""
    max_text_chars: int = 8_000
    """Longest ``text`` of a message body."""
    max_body_depth: int = 16
    """Deepest nesting of objects/arrays in a message body."""
    auth_timeout: float = 10.0
    """Seconds a new connection has to authenticate before it is closed with 4003."""
    heartbeat_interval: float = 25.0
    """Seconds between heartbeats: the server pings a connection it has sent nothing to for this long."""
    idle_timeout: float = 75.0
    """Seconds without any frame from a client before the server closes it with 4001."""
    max_outbound_bytes: int = 1_048_576
    """Bytes queued in the kernel-side write buffer for one connection before it is cut as a slow consumer (4002)."""
    max_inflight_requests: int = 256
    """Requests one connection may have in progress; past it the server stops reading from that connection."""
    sync_page_size: int = 200
    """Most messages in one ``synced`` page (a client may ask for fewer)."""
    history_page_size: int = 100
    """Most messages in one history page (a client may ask for fewer)."""
    max_http_body_bytes: int = 1_048_576
    """Largest HTTP request body."""
    http_body_timeout: float = 30.0
    """Seconds a client may take to send an HTTP request body once its headers are in; a body that stalls (or whose
    chunked framing breaks mid-way, which aiohttp leaves hanging) is answered 400 then."""
    shutdown_grace: float = 10.0
    """Seconds SIGTERM waits for in-flight requests and commits before closing connections."""
    max_group_members: int = 10_000
    """Most members of one group, owner included."""
    recall_window: float = 120.0
    """Seconds after sending during which the author may recall a message."""
    typing_interval: float = 1.0
    """Least seconds between two typing notices of one connection in one conversation; more are dropped."""
    max_connections_per_address: int = 256
    """Sockets one client address may hold open at once, on the HTTP/WebSocket and TCP ports together (keep-alive
    HTTP connections included); more are refused at once (HTTP 429, TCP ``close`` 4005). The address is the TCP peer's:
    behind a reverse proxy every client is the proxy, so raise it there (or limit at the proxy). 0: no limit; lifted
    with ``rate_limits = "off"``."""
    max_sessions_per_user: int = 20
    """Authenticated sockets one user may hold on this node (each node counts its own); see ``session_overflow``.
    0: no limit; lifted with ``rate_limits = "off"``."""
    session_overflow: Literal["oldest", "refuse"] = "oldest"
    """Past ``max_sessions_per_user``: "oldest" closes the user's oldest session on this node (``error``
    ``too_many_sessions``, close 4505) to make room; "refuse" fails the new one's authentication the same way."""
    http_header_timeout: float = 10.0
    """Seconds an HTTP request head (request line and headers, WebSocket upgrades included) may take to arrive,
    counted from the connection's opening or from the previous response on a keep-alive connection; then the socket
    is closed. Also how long an idle keep-alive connection is kept."""
    max_report_reason_chars: int = 1000
    """Longest ``reason`` of a user's report of a message (``POST /v1/reports``)."""
    connects_per_second: float = 2_000.0
    """Socket authentications (TCP ``auth``, WebSocket upgrades carrying a token) this node starts per second, in
    bursts of up to ``connect_burst``: after a restart every client reconnects at once, and this spreads them out so
    that the connections already up keep being served. Over the pace a connect waits its turn (at most
    ``connect_wait`` seconds), else it is refused (``rate_limited`` with ``retry_after``; TCP ``close`` 4006, HTTP
    429). 0: no pace; lifted with ``rate_limits = "off"``."""
    connect_burst: int = 500
    """Connects admitted at once, beyond the steady ``connects_per_second``, when the node was quiet."""
    connect_wait: float = 5.0
    """Longest wait for a turn under ``connects_per_second``, in seconds; must be shorter than ``auth_timeout``."""
    presence_delay: float = 0.02
    """Seconds a presence announcement (a user's first device connecting, their last one leaving) may wait for
    others to be announced with it (one audience read, one look at who is online): in a storm of connects they
    arrive a few per loop turn, and a read per turn paid its trip to PostgreSQL (or a SQLite reader thread) for one
    or two users. A batch of 64 starts at once. 0: each turn's announcements together."""


@dataclass(frozen=True, slots=True)
class AuthConfig:
    token_secret: str = ""
    """HMAC secret for access tokens. Empty: a random secret is created once in ``<data_dir>/token_secret``."""
    token_ttl: float = 900.0
    """Seconds an access token stays valid. Short, because a stolen one works until then for HTTP requests; clients
    renew it with their refresh token. A socket it opened lives on until its session ends."""
    session_ttl: float = 30 * 24 * 3600.0
    """Seconds a session (a login and its refresh tokens) lives without being used: each refresh moves the end
    on, so a device in use stays signed in, and one left alone for this long must log in again."""
    max_sessions: int = 50
    """Live sessions a user keeps; a login beyond them ends the least recently used."""
    refresh_grace: float = 10.0
    """Seconds after a refresh during which the refresh token before it is still accepted (once more), for a client
    whose answer was lost; after that, a reused refresh token ends its session."""
    revocation_poll: float = 0.5
    """Seconds between two looks at the sessions revoked (logout, revoke, password change, refresh-token reuse) by
    any node or admin command, to close their sockets on this node."""
    session_read_delay: float = 0.002
    """Seconds a socket authentication's read of its session may wait for others to share it, only while
    authentications come closer together than this (a connect storm): each connect of a storm read its session
    alone, and a read of five sessions costs about as much as two reads of one. After a quiet moment a connect reads at
    once. 0: the authentications of one event-loop turn together."""
    token_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    """The one algorithm accepted for tokens (pinned; never taken from the token's header)."""
    argon2_time_cost: int = 2
    """Argon2id iterations (OWASP minimum: 2). Argon2 itself accepts 1 and up; the test suite uses 1 (cheap hashes
    for tests that are not about hashing), which is no setting for a real deployment."""
    argon2_memory_kib: int = 19_456
    """Argon2id memory in KiB (OWASP minimum: 19 MiB). Argon2 itself accepts 8 KiB per lane and up; the test suite
    uses 8, which is no setting for a real deployment."""
    argon2_parallelism: int = 1
    """Argon2id lanes (at least 1)."""
    hash_concurrency: int = 2
    """Password hashes computed at once; more logins wait, so that a login burst cannot exhaust memory."""
    min_password_length: int = 8
    """Shortest accepted password."""
    registration: Literal["open", "invite", "closed"] = "open"
    """Who may register over ``POST /v1/auth/register``: anyone ("open"), whoever has an invite code from ``pica invite
    create`` ("invite"), or nobody ("closed": the administrator creates accounts with ``pica user create``)."""
    min_password_score: int = 2
    """Least zxcvbn score (0-4) of a new password: 2 refuses the very guessable ones (common and breached-style
    passwords, keyboard walks, the username with digits), as NIST 800-63B asks; 0 turns the estimator off. A password
    equal to the username is always refused."""


@dataclass(frozen=True, slots=True)
class SqliteConfig:
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    """FULL: an acked message survives power loss. NORMAL: survives a process crash, may lose the last commits on
    power loss, and is faster. See README."""
    max_batch: int = 512
    """Most write operations committed in one transaction (group commit)."""
    commit_delay_ms: float = 0.0
    """Under steady traffic, how long the writer waits for more operations before a commit, so that one fsync serves
    more messages (0: never wait). After a pause it commits at once. 1 ms cut server CPU per message by a third at
    5,000 msg/s and raised the ack p99 from 6.2 to 8.6 ms; 2 ms cut a node's CPU by 27-30 % at 1,000 msg/s arriving
    one at a time (BENCHMARKS.md)."""
    search_delay_ms: float = 200.0
    """How long a message's search document may wait before the writer indexes it, together with every other that
    came in meanwhile (FTS5 writes a segment per transaction, and merging the segments of every group commit held
    sends for tens of milliseconds; BENCHMARKS.md). A search always finds every message acked before it: it indexes
    what is waiting first."""
    search_batch: int = 256
    """Search documents the writer indexes in one transaction; a larger backlog is indexed a part per turn between
    two batches of writes. Every send waits for the part in progress, and FTS5 merges its segments inside it: 256
    keeps a part to about a millisecond here (BENCHMARKS.md). A search still indexes everything waiting first."""
    search_merge_pages: int = 32
    """Pages of FTS5 segment merging the writer does after each part of the search backlog it indexes (FTS5's own
    merging, in quanta of hundreds of pages inside one transaction, is off). 0: none, and segments pile up until
    FTS5 merges a whole level at once ('crisismerge')."""
    read_threads: int = 4
    """Threads (each with its own connection) serving reads."""
    loop_read_rows: int = 1000
    """Most rows a read made on the event loop may fetch (the session states of socket authentications, the presence
    audiences of users' first devices): a read that would take more goes to a reader thread. Bounds how long one
    such read holds the loop (about 1.5 µs a row); 0 sends them all to the reader threads."""
    checkpoint_interval: float = 1.0
    """Seconds between WAL checkpoints, run by a thread of their own so that no commit waits for one (0: SQLite's
    automatic checkpoints, inside the committing transaction)."""
    wal_max_mb: int = 256
    """Size of the WAL past which the writer itself completes a checkpoint between two batches, so that SQLite starts
    the WAL over (under steady writes the checkpoint thread alone never lets it: the WAL grew without end); a WAL
    file grown by a burst is cut back to twice this when it starts over. 0: no bound. Needs ``checkpoint_interval``
    > 0 (otherwise SQLite's own checkpoints keep the WAL small)."""
    writer: Literal["process", "thread"] = "process"
    """Where the writer runs: "process", a process of its own next to the server's, so that the commits and the
    event loop use two cores; "thread", a thread of the server's process (one core for both, less memory, and about
    a sixth less CPU per message at a trickle, where each message is a round of its own; BENCHMARKS.md)."""
    writer_socket: str = ""
    """The Unix socket of a writer process shared by several servers on one file: set by ``pica serve --workers N``
    for its workers (one writer commits for them all), not by hand. Empty: each server starts its own writer."""


@dataclass(frozen=True, slots=True)
class PostgresConfig:
    schema: str = "public"
    """Schema holding Pica's tables (one database can host several deployments, or one per test)."""
    pool_size: int = 8
    """Connections for reads and single writes (each node; PostgreSQL's max_connections bounds the cluster)."""
    write_lanes: int = 2
    """Connections that commit message appends, each in batches (group commit); a conversation always uses the same
    lane, so its appends commit in the order they were submitted. Fewer lanes make bigger batches and fewer
    transactions racing other nodes for the same rows; more lanes serve a single busy node faster (BENCHMARKS.md)."""
    max_batch: int = 256
    """Most appends committed in one transaction by one lane."""
    connect_timeout: float = 5.0
    """Seconds to wait for a new connection."""
    command_timeout: float = 10.0
    """Seconds a statement may run before the request fails with a retryable error."""


CLUSTER_SCHEMES: Final = ("redis+cluster://", "rediss+cluster://")

def is_cluster_url(url: str) -> bool:
    return url.startswith(CLUSTER_SCHEMES)


HUB_SCHEME: Final = "hub+unix://"
"""``cluster = "hub+unix:///path/hub.sock"``: the bus of the workers of ``pica serve --workers N`` on the embedded
store (:mod:`pica.cluster.hub`), set by the supervisor for its workers, not by hand."""


def is_hub_url(url: str) -> bool:
    return url.startswith(HUB_SCHEME)


@dataclass(frozen=True, slots=True)
class ClusterUrl:
    """A Redis Cluster's bus URL, ``redis+cluster://[user:password@]host:port[,host:port...]`` (``rediss+cluster``
    for TLS): the seed nodes, any of which tells a client the whole topology. Parsed here so that a malformed one is
    a configuration error at start."""

    tls: bool
    seeds: tuple[tuple[str, int], ...]
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> ClusterUrl:
        """``ValueError`` (naming what is wrong, never the password) on a malformed URL."""
        if not is_cluster_url(url):
            raise ValueError("expected redis+cluster://host:port[,host:port...]")
        tls = url.startswith("rediss+")
        rest = url.split("://", 1)[1].split("/", 1)[0]
        userinfo, _, hosts = rest.rpartition("@")
        username: str | None = None
        password: str | None = None
        if userinfo:
            name, colon, secret = userinfo.partition(":")
            username, password = (unquote(name) or None), (unquote(secret) if colon else None)
        seeds: list[tuple[str, int]] = []
        for item in hosts.split(","):
            host, _, port = item.strip().rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"seed {item.strip()!r} is not host:port")
            seeds.append((host.strip("[]"), int(port)))
        return cls(tls, tuple(seeds), username, password)

    def node_url(self, host: str, port: int) -> str:
        """A plain URL of one node, with the cluster's credentials."""
        auth = ""
        if self.username or self.password:
            auth = f"{quote(self.username or '', safe='')}:{quote(self.password or '', safe='')}@"
        host = f"[{host}]" if ":" in host else host
        return f"{'rediss' if self.tls else 'redis'}://{auth}{host}:{port}/0"


@dataclass(frozen=True, slots=True)
class RedisConfig:
    prefix: str = "pica:"
    """Prefix of every Redis key and channel (several deployments, or tests, can share one Redis); no braces (they
    would change Redis Cluster's hash slots)."""
    heartbeat_interval: float = 1.0
    """Seconds between a node's heartbeats in the node registry."""
    node_ttl: float = 5.0
    """Seconds without a heartbeat after which a node counts as dead (dropped from dispatch and presence)."""
    outbox_size: int = 10_000
    """Bus messages a node keeps while Redis is unreachable and publishes when it returns; beyond it they are dropped
    and every node's clients are told to resync."""
    timeout: float = 2.0
    """Seconds a Redis command may take before the node treats Redis as unreachable."""
    channel_buckets: int = 256
    """Hash-tag buckets the bus channels are spread over (a Redis Cluster spreads the buckets over its shards; a
    publish batch and a resubscription take one call per bucket). Every node of a deployment must use the same."""


@dataclass(frozen=True, slots=True)
class RatesConfig:
    """Rate limits (token buckets): ``"N/period"`` is a bucket of N requests that refills in the period (``s``,
    ``min``, ``h``, ``d``, optionally with a number: ``"10/15min"``), so N may come at once, then N per period.
    Refusals are HTTP 429 with ``Retry-After``, or an ``error`` frame ``rate_limited`` with ``retry_after``."""

    login_per_address: str = "30/min"
    """Login attempts from one client address (a failed one costs ``login_failure_cost``)."""
    login_failure_cost: float = 5.0
    """What a failed login costs the address's bucket, in attempts: guessing is slowed five times more than typing."""
    login_failures_per_account: str = "10/15min"
    """Failed logins of one account, from any address; when spent, every login to it waits (successes cost nothing)."""
    register_per_address: str = "10/h"
    """Accounts registered from one client address."""
    http_per_address: str = "300/min"
    """HTTP requests (WebSocket upgrades included) from one client address; ``/healthz`` and ``/metrics`` are free."""
    sends_per_user: str = "30/s"
    """Messages, recalls and edits sent by one user, over every transport and device of this node."""
    requests_per_connection: str = "100/s"
    """Frames of any kind from one socket after its authentication."""
    presence_queries_per_user: str = "20/min"
    """Presence look-ups (``GET /v1/presence``) of one user."""
    user_lookups_per_user: str = "600/h"
    """User look-ups (``GET /v1/users?username=``, ``GET /v1/users/{id}``) of one user: clients resolve each name once
    and cache it; a script walking the directory is slowed to a crawl."""
    exports_per_user: str = "3/h"
    """Data exports (``GET /v1/me/export``) of one user: each reads every message the user ever sent."""
    reports_per_user: str = "10/h"
    """Reports of messages (``POST /v1/reports``) by one user: every report lands in an administrator's queue."""
    max_keys: int = 100_000
    """Most clients (addresses, users, accounts) one rule remembers; the least recently seen are forgotten first."""


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "INFO"
    """Log level name."""
    format: Literal["text", "json"] = "text"
    """``json`` writes one JSON object per line (for log shippers)."""


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """What ``/metrics`` measures beyond counting (docs/operations.md, "Metrics")."""

    loop_lag_interval: float = 0.5
    """Seconds between two samples of the event loop's lag (how late a sleeping task is woken:
    ``pica_event_loop_lag_seconds``); 0 turns the sampler off."""
    worker_port: int = -1
    """Port on which ``pica worker`` serves ``/metrics`` (its job counters and its process), on ``host``; 0 picks a
    free one; -1 (the default): none. Flag ``pica worker --metrics-port``."""


@dataclass(frozen=True, slots=True)
class TlsConfig:
    cert: str = ""
    """PEM certificate chain (the server's certificate first). With ``key``, every listener (HTTP and WebSocket, the
    framed TCP gateway) speaks TLS only; SIGHUP reloads both files without dropping connections. Empty: plaintext
    (terminate TLS in a proxy in front, or keep the node on a private network)."""
    key: str = ""
    """PEM private key of ``cert``."""
    client_ca: str = ""
    """PEM bundle of the CAs whose client certificates the TCP gateway requires (mutual TLS: a device without one is
    refused at the handshake; it still authenticates with a token). Empty: no client certificates asked for."""
    handshake_timeout: float = 10.0
    """Seconds a client gets to complete the TLS handshake; then the socket is closed."""


@dataclass(frozen=True, slots=True)
class JobsConfig:
    """The durable job queue (webhook deliveries): where it runs, how often it retries, when it gives up."""

    run_in_node: bool = True
    """Run a worker inside each node (``pica serve``). In a cluster, turn it off on the nodes and run ``pica worker``
    processes instead, or keep both: workers share the queue safely."""
    poll_interval: float = 1.0
    """Seconds between two looks at the queue when nothing woke the worker (a node wakes its own worker after a
    commit that queued jobs; jobs queued by other nodes, retries and replays are found by polling)."""
    concurrency: int = 32
    """Jobs one worker runs at once."""
    lease: float = 60.0
    """Seconds a claimed job belongs to its worker; a worker that crashed leaves it to be claimed again after this.
    Longer than ``webhook_timeout``."""
    max_attempts: int = 8
    """Attempts before a job is dead (kept for ``pica jobs list|retry|drop``)."""
    backoff_base: float = 1.0
    """Seconds before the second attempt at most; doubled per attempt, with full jitter (a random wait between 0 and
    the bound)."""
    backoff_max: float = 3600.0
    """Longest wait between two attempts, in seconds."""
    endpoint_refresh: float = 5.0
    """Seconds between two reads of the webhook endpoints registered with ``pica webhook add`` and of the bots'
    webhooks (how soon a node sees an endpoint or a bot added or removed elsewhere)."""
    webhook_timeout: float = 10.0
    """Seconds one webhook delivery may take, connection included; past it the attempt failed and is retried."""
    webhook_allow_private: bool = False
    """Let endpoints registered with ``pica webhook add`` reach private, loopback, link-local and other non-public
    addresses (refused by default: SSRF). Endpoints of the TOML file may always point anywhere."""


@dataclass(frozen=True, slots=True)
class EventStreamConfig:
    """Every stored message and group change published to NATS JetStream, in commit order per conversation
    (docs/webhooks.md, "The event stream")."""

    url: str = ""
    """NATS server URL (``nats://host:4222``); empty: no event stream."""
    subject_prefix: str = "pica"
    """Events are published on ``<subject_prefix>.<event type>`` (``pica.message.created``)."""
    events: tuple[str, ...] = ("message.*", "group.*")
    """Event types or families published (as in ``[[webhooks]]``)."""
    stream: str = ""
    """A JetStream stream to create over ``<subject_prefix>.>`` when it does not exist (empty: the operator makes
    one; publishing waits for it)."""
    duplicate_window: float = 600.0
    """Seconds JetStream remembers a message id (``<conversation_id>:<seq>``) of the stream it creates, so a
    publication repeated after a crash within it is stored once. Consumers de-duplicate by the same id beyond it."""
    publish_timeout: float = 5.0
    """Seconds to wait for JetStream's acknowledgement of one publication before the attempt fails and is retried."""


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """One ``[[webhooks]]`` entry: an endpoint of the operator's, which may point anywhere (loopback included)."""

    url: str = ""
    """http:// or https:// URL the events are POSTed to."""
    secret: str = ""
    """``whsec_<base64>``: the key of the Standard Webhooks signature."""
    events: tuple[str, ...] = ()
    """Event types (``message.created``), families (``group.*``) or ``*``."""


@dataclass(frozen=True, slots=True)
class BeforeSendConfig:
    """A synchronous hook asked before a message is stored; it may allow, reject or rewrite it (docs/webhooks.md)."""

    url: str = ""
    """Where the hook is POSTed; empty: no hook."""
    secret: str = ""
    """``whsec_<base64>``: the hook's request is signed like a webhook."""
    timeout: float = 2.0
    """Seconds to wait for the hook's answer before ``on_failure`` decides."""
    on_failure: Literal["allow", "reject"] = "allow"
    """When the hook times out, fails or answers nonsense: "allow" stores the message as sent (fail open), "reject"
    refuses it with the retryable ``policy_unavailable`` (fail closed)."""
    max_response_bytes: int = 65_536
    """Largest answer read from the hook."""


@dataclass(frozen=True, slots=True)
class MqttConfig:
    port: int = -1
    """MQTT 3.1.1 gateway port (docs/protocol.md, MQTT); 0 picks a free one; -1 (the default) disables it."""
    max_packet_bytes: int = 65_536
    """Largest MQTT packet a client may send (its remaining length, checked before the body is read); a larger one
    closes the connection."""
    min_keep_alive: int = 5
    """Seconds: a CONNECT keep-alive below this is raised to it for the server's 1.5x timeout."""
    max_keep_alive: int = 600
    """Seconds: a CONNECT keep-alive above this, or 0 (none), is lowered to it for the server's 1.5x timeout, so that
    a dead client's socket is always closed in the end."""
    max_topic_length: int = 128
    """Longest topic name or filter, in UTF-8 bytes; a longer one is refused (SUBACK 0x80, or a closed connection
    for a PUBLISH)."""
    max_subscriptions: int = 16
    """Topic filters one connection may hold; more are refused in SUBACK (0x80)."""
    max_inflight_messages: int = 100
    """QoS 1 messages sent to a client and not yet acknowledged (PUBACK); more wait in the queue below."""
    max_queued_messages: int = 1_000
    """QoS 1 messages waiting behind a full in-flight window (sent as PUBACKs open it); a client with more waiting
    is cut as a slow consumer, and gets the rest from the store when it reconnects with a persistent session."""


@dataclass(frozen=True, slots=True)
class XmppConfig:
    port: int = -1
    """XMPP client-to-server gateway port (docs/protocol.md, section 31); 0 picks a free one; -1 (the default)
    disables it. It speaks STARTTLS with the TLS listeners' certificate when ``tls.cert`` is set."""
    tls_port: int = -1
    """Direct TLS (XEP-0368) port: TLS from the first byte, with the same certificate; -1 (the default) disables it.
    Needs ``tls.cert``."""
    domain: str = "localhost"
    """The XMPP domain: users are ``username@domain``, groups are rooms on ``conference.<domain>``."""
    max_stanza_bytes: int = 65_536
    """Largest stanza a client may send, counted as its bytes arrive; a larger one ends the stream
    (``policy-violation``)."""
    max_depth: int = 16
    """Deepest nesting of elements in a stanza (the stream's element is level 1); deeper ends the stream."""
    plain_without_tls: bool = False
    """Allow SASL PLAIN on a stream without TLS. Off by default: the password would cross the network in clear.
    For a loopback test or a proxy that terminates TLS only."""
    resume_window: float = 300.0
    """Seconds a lost stream with XEP-0198 resumption enabled can be resumed (on the same node); 0 turns resumption
    off (``<enabled/>`` without ``resume``)."""
    max_unacked: int = 1_000
    """Stanzas sent to a stream-management client and not yet acknowledged (kept to be sent again on resumption);
    a client with more is cut as a slow consumer."""
    max_sent_tracked: int = 1_000
    """Messages this connection sent whose delivery receipts (XEP-0184) and read markers (XEP-0333) it may still be
    told of, by their stanza ids; the oldest are forgotten first (their receipts are then not sent)."""


@dataclass(frozen=True, slots=True)
class MediaConfig:
    storage: str = ""
    """Where uploaded files' bytes live: empty (a content-addressed directory, ``<data_dir>/files``) or
    ``s3://bucket/prefix`` (any S3-compatible store; the cluster setting)."""
    s3_endpoint: str = ""
    """The S3 API's URL (MinIO, Ceph, a local test server); empty: AWS's, from the usual AWS configuration."""
    s3_region: str = "us-east-1"
    """The bucket's region."""
    max_file_bytes: int = 104_857_600
    """Largest file one upload may hold (100 MiB): checked against ``Content-Length`` before reading, and again while
    the bytes arrive (413)."""
    quota_bytes: int = 2_147_483_648
    """Bytes of files one user may have uploaded (2 GiB); an upload past it is refused (413 ``quota_exceeded``)."""
    upload_timeout: float = 3_600.0
    """Seconds one upload request may take to arrive (a slow phone uploads 100 MiB in well under an hour)."""
    resumable_ttl: float = 86_400.0
    """Seconds an unfinished resumable upload is kept from its last progress before it is deleted."""
    max_open_uploads: int = 10
    """Unfinished resumable uploads one user may hold at a time."""
    unreferenced_grace: float = 86_400.0
    """Seconds an uploaded file may stay unsent; then it is deleted. A send must reference it well within this."""
    sweep_interval: float = 600.0
    """Seconds between housekeeping passes (unreferenced files, abandoned uploads, unused bytes)."""
    max_image_pixels: int = 40_000_000
    """Largest image (width x height) the server decodes for thumbnails; a larger one is stored but not decoded, so
    a decompression bomb costs nothing."""
    thumbnail_sizes: tuple[int, ...] = (96, 320, 800)
    """Longest side, in pixels, of the thumbnails made of each image."""


@dataclass(frozen=True, slots=True)
class BotsConfig:
    """Bot accounts (docs/bots.md)."""

    rate_multiplier: float = 1.0
    """A bot's per-user rate limits (``rates.sends_per_user`` and the other ``*_per_user``) and its per-connection
    limit (``rates.requests_per_connection``) are this many times a user's: 1 treats bots like users."""


@dataclass(frozen=True, slots=True)
class PushConfig:
    """Push notifications to devices without a live connection (docs/push.md). A platform is on when its credentials
    are set; with none set, no push job is written and ``POST /v1/devices`` refuses every platform."""

    delay: float = 3.0
    """Seconds after a message's commit before its push job runs; a recipient whose delivered cursor (``recv``) has
    reached the message by then got it live, and is not pushed to."""
    timeout: float = 10.0
    """Seconds one request to a push service may take, connection included; past it the attempt is retried."""
    max_devices_per_user: int = 10
    """Push targets one user may register (over all their sessions); one more is refused (409 ``too_many_devices``)."""
    max_token_bytes: int = 1024
    """Longest APNs or FCM token, or Web Push endpoint URL, accepted by ``POST /v1/devices`` (UTF-8 bytes)."""
    apns_key_file: str = ""
    """APNs provider token key (the ``.p8`` file, PEM, ES256); empty: APNs off."""
    apns_key_id: str = ""
    """The key's id (10 characters, from the Apple developer account)."""
    apns_team_id: str = ""
    """The team id the provider token is issued for."""
    apns_topic: str = ""
    """The app's bundle id (``apns-topic``)."""
    apns_url: str = "https://api.push.apple.com"
    """APNs over HTTP/2; ``https://api.sandbox.push.apple.com`` for development builds."""
    apns_ca_file: str = ""
    """A PEM bundle to trust for ``apns_url`` instead of the system's (a test server); empty: the system's."""
    fcm_service_account_file: str = ""
    """The Firebase service account's JSON key file (its ``token_uri`` is where access tokens come from); empty:
    FCM off."""
    fcm_project: str = ""
    """The Firebase project id; empty: the service account's ``project_id``."""
    fcm_url: str = "https://fcm.googleapis.com"
    """FCM HTTP v1 (``<fcm_url>/v1/projects/<project>/messages:send``)."""
    vapid_private_key: str = ""
    """Web Push VAPID private key: base64url of the raw 32-byte P-256 key, or a path to a PEM file; empty: Web Push
    off. Its public key is served to browsers by ``GET /v1/push/config``."""
    vapid_subject: str = "mailto:admin@localhost"
    """The VAPID ``sub`` claim: a ``mailto:`` or ``https:`` contact for the push services."""
    webpush_allow_private: bool = False
    """Let Web Push endpoints (URLs a browser registers) be ``http://`` and reach private, loopback and other
    non-public addresses (refused by default: SSRF). For tests and closed networks."""

    @property
    def platforms(self) -> tuple[str, ...]:
        """The platforms whose credentials are set, in the order of the protocol's list."""
        return tuple(name for name, on in (("apns", self.apns_key_file), ("fcm", self.fcm_service_account_file),
                                           ("webpush", self.vapid_private_key)) if on)


@dataclass(frozen=True, slots=True)
class PreviewsConfig:
    """Link previews (docs/protocol.md section 30): the server fetches the first http(s) link of a text message off
    the send path and attaches its title, description and image to the message. Every fetch goes through the SSRF
    rules of pica/previews/fetch.py."""

    enabled: bool = True
    """Off: no preview job is written and no page is fetched."""
    allow_private: bool = False
    """Let previews reach private, loopback, link-local and other non-public addresses (refused by default: SSRF)."""
    allowed_networks: tuple[str, ...] = ()
    """Networks (CIDR, e.g. ``10.1.0.0/16``) reachable although not public: an intranet wiki. Empty: none."""
    allowed_ports: tuple[int, ...] = (80, 443)
    """Ports a link may name; any other is refused."""
    max_page_bytes: int = 1048576
    """Most bytes of a page read; the page is cut there (the head, where the meta tags are, comes first)."""
    max_image_bytes: int = 2097152
    """Most bytes of a preview's image downloaded; a larger image is left out of the preview."""
    image_size: int = 160
    """Longest side, in pixels, of the thumbnail kept in the preview (a JPEG ``data:`` URI; 0: no image)."""
    max_redirects: int = 3
    """Redirects followed, each hop checked again; one more and the fetch fails."""
    connect_timeout: float = 3.0
    """Seconds to open a connection to one hop."""
    timeout: float = 10.0
    """Seconds a whole fetch (page and image, every hop) may take."""
    cache_ttl: float = 86400.0
    """Seconds a fetched preview (or a failure) of a URL is reused for another message naming it."""
    max_title_chars: int = 300
    """Longest title kept (cut with an ellipsis)."""
    max_description_chars: int = 1000
    """Longest description kept."""


@dataclass(frozen=True, slots=True)
class CallsConfig:
    """1:1 voice and video calls: the WebRTC signalling the node relays (docs/protocol.md, "Calls")."""

    enabled: bool = True
    """Accept ``call_invite``; when off it is refused with ``not_configured``."""
    ring_timeout: float = 45.0
    """Seconds the callee's devices ring before the call ends unanswered (``timeout``; recorded as missed)."""
    max_sdp_bytes: int = 32_768
    """Largest SDP offer or answer, in UTF-8 bytes (a browser's video offer is 5 to 10 KiB)."""
    max_candidate_bytes: int = 1_024
    """Largest ICE candidate line, in UTF-8 bytes."""
    max_candidates: int = 64
    """ICE candidates one party may send in one call; the caller's sent before the answer are held for the device
    that answers, up to this many."""
    invites_per_user: str = "10/min"
    """Calls one user may place (``call_invite``), a token bucket like ``[rates]``."""


@dataclass(frozen=True, slots=True)
class ConversationsConfig:
    """Forwarding, pins, drafts and per-conversation settings (docs/protocol.md section 29)."""

    max_forward_messages: int = 20
    """Messages one forward request may name."""
    max_forward_copies: int = 100
    """Messages times destinations of one forward request: each copy is a message, counted by ``rates.sends_per_user``
    like any other."""
    max_pins: int = 50
    """Messages pinned at once in one conversation; one more is refused (409 ``too_many_pins``) until one is
    unpinned."""
    max_draft_chars: int = 4_000
    """Longest draft, in characters (Unicode code points)."""
    drafts_per_user: str = "60/min"
    """Draft saves (and clears) of one user, a token bucket like ``[rates]``: clients save a draft a moment after the
    typing stops, not per key."""
    settings_per_user: str = "60/min"
    """Changes of per-conversation settings (pin to top, archive, mark unread) of one user, a token bucket."""


@dataclass(frozen=True, slots=True)
class TurnConfig:
    """TURN credentials for calls (``GET /v1/turn``), in coturn's shared-secret scheme (``use-auth-secret``)."""

    urls: tuple[str, ...] = ()
    """TURN/STUN URLs handed to clients (``turn:turn.example.com:3478?transport=udp``); empty: ``GET /v1/turn``
    answers 501 ``not_configured``."""
    secret: str = ""
    """coturn's ``static-auth-secret``: the credential is the base64 HMAC-SHA1 of the username under it."""
    ttl: int = 86_400
    """Seconds a credential stays valid. A TURN allocation is refreshed with the same credential, so this bounds
    how long a relayed call can last."""


@dataclass(frozen=True, slots=True)
class AnnotationsConfig:
    """Reactions, replies, threads and mentions (docs/protocol.md, "Reactions, replies, threads and mentions")."""

    reactions_per_message: int = 20
    """Distinct emoji one message may carry; a reaction with a new emoji beyond it is refused (``forbidden``)."""
    reactions_per_user: int = 3
    """Emoji one user may have on one message at a time."""
    emoji_chars: int = 16
    """Longest reaction, in code points (an emoji with skin tone and joiners is up to about 10)."""
    quote_chars: int = 100
    """Longest text excerpt the server writes into a reply's quote, in code points."""
    mention_all_members: int = 20
    """In a group of more members than this, only the owner and admins may mention ``@all``."""


@dataclass(frozen=True, slots=True)
class Config:
    host: str = "127.0.0.1"
    """Address every listener binds."""
    port: int = 8080
    """HTTP API and WebSocket (``/v1/ws``) port; 0 picks a free one."""
    tcp_port: int = 8081
    """Length-framed TCP protocol port; 0 picks a free one; -1 disables the TCP gateway."""
    data_dir: Path = Path("pica-data")
    """Directory of the embedded SQLite database and the generated token secret."""
    node_id: str = ""
    """Name of this node in logs and the cluster registry; empty: ``<hostname>-<pid>``. Unique per node."""
    store: str = ""
    """Where messages are kept: empty (SQLite in ``data_dir``), ``sqlite:///path/to/file.db`` or
    ``postgresql://user@host:port/database`` (cluster mode)."""
    cluster: str = ""
    """Redis URL (``redis://host:port/db``) of the cluster bus, or a Redis Cluster's seed nodes
    (``redis+cluster://host:port,host:port``); empty: a single node with in-process delivery. ``hub+unix://<socket>``
    is what ``pica serve --workers N`` sets for its workers on the embedded store."""
    workers: int = 1
    """Processes sharing the listening ports (SO_REUSEPORT). On the embedded store they share its file and a bus
    kept by the supervisor (:mod:`pica.cluster.hub`); with ``cluster`` set each is a node of that cluster."""
    gc_threshold: int = 20_000
    """Young-generation threshold of Python's cycle collector in the node and its SQLite writer process (Python's
    own default is 700, which at load spends a fifth of the event loop in collections; see pica/heap.py); 0 keeps
    Python's default."""
    advertise_host: str = ""
    """Host name clients are told to connect to by ``GET /v1/gateway``; empty: ``host``."""
    allowed_origins: tuple[str, ...] = ()
    """WebSocket ``Origin`` values accepted at the handshake; empty accepts any (and requests without Origin)."""
    rate_limits: Literal["on", "off"] = "on"
    """"off" turns every rate limit (``rates``) off, and the caps on connections per address and sessions per user
    (``limits.max_connections_per_address``, ``limits.max_sessions_per_user``): for benchmarks and trusted internal
    deployments only; the node logs a warning at start."""
    trusted_proxies: tuple[str, ...] = ()
    """Addresses of reverse proxies in front of the node: for a request from one of them, the client's address (what
    per-address limits count) is the last one in its ``X-Forwarded-For``. Empty: the peer's address."""
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    rates: RatesConfig = field(default_factory=RatesConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    sqlite: SqliteConfig = field(default_factory=SqliteConfig)
    postgres: PostgresConfig = field(default_factory=PostgresConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    log: LogConfig = field(default_factory=LogConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    jobs: JobsConfig = field(default_factory=JobsConfig)
    before_send: BeforeSendConfig = field(default_factory=BeforeSendConfig)
    event_stream: EventStreamConfig = field(default_factory=EventStreamConfig)
    webhooks: tuple[WebhookConfig, ...] = ()
    """``[[webhooks]]`` tables of the TOML file (not settable from the environment or flags)."""
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    xmpp: XmppConfig = field(default_factory=XmppConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    bots: BotsConfig = field(default_factory=BotsConfig)
    push: PushConfig = field(default_factory=PushConfig)
    calls: CallsConfig = field(default_factory=CallsConfig)
    turn: TurnConfig = field(default_factory=TurnConfig)
    conversations: ConversationsConfig = field(default_factory=ConversationsConfig)
    annotations: AnnotationsConfig = field(default_factory=AnnotationsConfig)
    previews: PreviewsConfig = field(default_factory=PreviewsConfig)


_SECTIONS: Final = {
    "limits": LimitsConfig,
    "rates": RatesConfig,
    "auth": AuthConfig,
    "sqlite": SqliteConfig,
    "postgres": PostgresConfig,
    "redis": RedisConfig,
    "log": LogConfig,
    "metrics": MetricsConfig,
    "tls": TlsConfig,
    "jobs": JobsConfig,
    "before_send": BeforeSendConfig,
    "event_stream": EventStreamConfig,
    "mqtt": MqttConfig,
    "xmpp": XmppConfig,
    "media": MediaConfig,
    "bots": BotsConfig,
    "push": PushConfig,
    "calls": CallsConfig,
    "turn": TurnConfig,
    "conversations": ConversationsConfig,
    "annotations": AnnotationsConfig,
    "previews": PreviewsConfig,
}


def load_config(
    *,
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the config. ``overrides`` holds flag values by key path (``"port"``, ``"limits.idle_timeout"``);
    None values are ignored so that unset flags fall through."""
    env = os.environ if env is None else env
    values: dict[str, dict[str, Any]] = {"": {}, **{name: {} for name in _SECTIONS}}
    path = config_file or env.get(ENV_PREFIX + "CONFIG")
    if path:
        _merge_toml(values, Path(path))
    _merge_env(values, env)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        section, _, name = key.rpartition(".")
        _known(section, name)
        values[section][name] = value
    return _build(values)


def _known(section: str, name: str) -> dataclasses.Field[Any]:
    cls = Config if section == "" else _SECTIONS.get(section)
    if cls is None:
        raise ConfigError(f"unknown section {section!r}")
    for f in dataclasses.fields(cls):
        if f.name == name and (section or f.name not in _SECTIONS):
            return f
    raise ConfigError(f"unknown key {_path(section, name)!r}")


def _path(section: str, name: str) -> str:
    return f"{section}.{name}" if section else name


def _merge_toml(values: dict[str, dict[str, Any]], path: Path) -> None:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from exc
    for key, value in data.items():
        if key == "webhooks":
            values[""][key] = _webhooks(value)
        elif key in _SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{key}: expected a table")
            for name, inner in value.items():
                _known(key, name)
                values[key][name] = inner
        else:
            _known("", key)
            values[""][key] = value


def _webhooks(value: Any) -> tuple[WebhookConfig, ...]:
    """``[[webhooks]]``: an array of tables with ``url``, ``secret`` and ``events``."""
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError("webhooks: expected an array of tables ([[webhooks]])")
    hooks = []
    for i, table in enumerate(value):
        unknown = set(table) - {"url", "secret", "events"}
        if unknown:
            raise ConfigError(f"webhooks[{i}]: unknown key {sorted(unknown)[0]!r}")
        hook = WebhookConfig(url=_coerce(table.get("url", ""), str, f"webhooks[{i}].url"),
                             secret=_coerce(table.get("secret", ""), str, f"webhooks[{i}].secret"),
                             events=_coerce(table.get("events", []), tuple[str, ...], f"webhooks[{i}].events"))
        if not hook.url.startswith(("http://", "https://")):
            raise ConfigError(f"webhooks[{i}].url: expected an http:// or https:// URL, got {hook.url!r}")
        if not valid_secret(hook.secret):
            raise ConfigError(f"webhooks[{i}].secret: expected whsec_ followed by base64")
        if not hook.events:
            raise ConfigError(f"webhooks[{i}].events: expected at least one event type")
        hooks.append(hook)
    if len({h.url for h in hooks}) != len(hooks):
        raise ConfigError("webhooks: two entries with the same url")
    return tuple(hooks)


def valid_secret(secret: str) -> bool:
    """A Standard Webhooks secret: ``whsec_`` and the base64 of at least 16 bytes."""
    if not secret.startswith("whsec_"):
        return False
    try:
        return len(base64.b64decode(secret[6:], validate=True)) >= 16
    except (binascii.Error, ValueError):
        return False


def _merge_env(values: dict[str, dict[str, Any]], env: Mapping[str, str]) -> None:
    for f in dataclasses.fields(Config):
        if f.name in _SECTIONS:
            for inner in dataclasses.fields(_SECTIONS[f.name]):
                raw = env.get(f"{ENV_PREFIX}{f.name}_{inner.name}".upper())
                if raw is not None:
                    values[f.name][inner.name] = raw
        elif f.name != "webhooks":
            raw = env.get(f"{ENV_PREFIX}{f.name}".upper())
            if raw is not None:
                values[""][f.name] = raw


def _build(values: dict[str, dict[str, Any]]) -> Config:
    sections = {name: _construct(cls, values[name], name) for name, cls in _SECTIONS.items()}
    top: Config = _construct(Config, values[""], "", skip=set(_SECTIONS))
    config = dataclasses.replace(top, **sections)
    if config.cluster and not is_hub_url(config.cluster) and not config.auth.token_secret:
        # Each node would otherwise generate its own secret and refuse the tokens the others issue.
        raise ConfigError("auth.token_secret: cluster mode needs one secret shared by every node")
    return config


def _construct(cls: type[Any], raw: dict[str, Any], section: str, skip: set[str] | None = None) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if (skip and f.name in skip) or f.name not in raw:
            continue
        kwargs[f.name] = _coerce(raw[f.name], hints[f.name], _path(section, f.name))
    obj = cls(**kwargs)
    _validate(obj, section)
    return obj


def _coerce(value: Any, hint: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
            return value.lower() in {"1", "true", "yes", "on"}
        raise ConfigError(f"{path}: expected a boolean, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{path}: expected an integer, got {value!r}") from None
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{path}: expected a number, got {value!r}") from None
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    if hint is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{path}: expected a path, got {value!r}")
        return Path(value)
    if origin is Literal:
        choices = typing.get_args(hint)
        candidate = value.upper() if isinstance(value, str) and value.upper() in choices else value
        if candidate not in choices:
            raise ConfigError(f"{path}: expected one of {', '.join(map(str, choices))}, got {value!r}")
        return candidate
    if origin is tuple:
        if typing.get_args(hint)[0] is WebhookConfig:  # parsed by _webhooks already
            return value
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        item = typing.get_args(hint)[0]
        if item is int:  # a list of integers: from TOML as integers, from the environment as "96,320"
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"{path}: expected a list of integers, got {value!r}")
            return tuple(_coerce(v, int, path) for v in value)
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{path}: expected a list of strings, got {value!r}")
        return tuple(value)
    if isinstance(hint, types.UnionType):  # pragma: no cover - no optional fields yet
        raise ConfigError(f"{path}: unsupported type")
    raise ConfigError(f"{path}: unsupported type {hint!r}")


def _validate(obj: Any, section: str) -> None:
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        path = _path(section, f.name)
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)) and f.name not in {"tcp_port", "port", "worker_port", "tls_port"} \
                and value < 0:
            raise ConfigError(f"{path}: must not be negative, got {value!r}")
    if isinstance(obj, Config):
        if not 0 <= obj.port <= 65535:
            raise ConfigError(f"port: must be 0..65535, got {obj.port}")
        if not -1 <= obj.tcp_port <= 65535:
            raise ConfigError(f"tcp_port: must be -1..65535, got {obj.tcp_port}")
        if obj.store and not obj.store.startswith(("sqlite://", "postgresql://", "postgres://")):
            raise ConfigError(f"store: expected sqlite:///path or postgresql://..., got {obj.store!r}")
        if obj.cluster and not obj.cluster.startswith(("redis://", "rediss://", "unix://", "redis+cluster://",
                                                        "rediss+cluster://", HUB_SCHEME)):
            raise ConfigError(f"cluster: expected a redis:// URL (or redis+cluster://host:port,... for a Redis "
                              f"Cluster), got {obj.cluster!r}")
        if is_cluster_url(obj.cluster):
            try:
                ClusterUrl.parse(obj.cluster)
            except ValueError as exc:
                raise ConfigError(f"cluster: {exc}") from None
        if obj.gc_threshold < 0:
            raise ConfigError("gc_threshold: must be 0 (Python's default) or a positive count")
        if obj.workers < 1:
            raise ConfigError("workers: must be at least 1")
        if obj.cluster and not is_hub_url(obj.cluster) and not obj.store.startswith(("postgresql://", "postgres://")):
            raise ConfigError("cluster: cluster mode needs a shared store (store = postgresql://...)")
    if isinstance(obj, LimitsConfig):
        for name in (
            "max_frame_bytes",
            "max_body_bytes",
            "sync_page_size",
            "history_page_size",
            "max_inflight_requests",
            "max_outbound_bytes",
            "max_report_reason_chars",
            "connect_burst",
        ):
            if getattr(obj, name) < 1:
                raise ConfigError(f"limits.{name}: must be at least 1")
        if obj.http_header_timeout <= 0:
            raise ConfigError("limits.http_header_timeout: must be more than 0")
        if obj.idle_timeout <= obj.heartbeat_interval:
            raise ConfigError("limits.idle_timeout: must be longer than limits.heartbeat_interval")
        if obj.connect_wait >= obj.auth_timeout:
            raise ConfigError("limits.connect_wait: must be shorter than limits.auth_timeout")
    if isinstance(obj, MediaConfig):
        if obj.storage and not obj.storage.startswith("s3://"):
            raise ConfigError(f"media.storage: expected empty (the data directory) or s3://bucket/prefix, got "
                              f"{obj.storage!r}")
        if not obj.thumbnail_sizes or not all(16 <= size <= 4096 for size in obj.thumbnail_sizes):
            raise ConfigError("media.thumbnail_sizes: expected sizes from 16 to 4096 pixels")
        for name in ("max_file_bytes", "max_image_pixels", "sweep_interval", "upload_timeout"):
            if getattr(obj, name) <= 0:
                raise ConfigError(f"media.{name}: must be more than 0")
    if isinstance(obj, RatesConfig):
        for f in dataclasses.fields(obj):
            if f.type == "str" or f.type is str:
                try:
                    parse_rate(getattr(obj, f.name))
                except ValueError as exc:
                    raise ConfigError(f"rates.{f.name}: {exc}") from None
        if obj.login_failure_cost < 1:
            raise ConfigError("rates.login_failure_cost: must be at least 1")
        if obj.max_keys < 1:
            raise ConfigError("rates.max_keys: must be at least 1")
    if isinstance(obj, SqliteConfig):
        for name in ("max_batch", "search_batch"):
            if getattr(obj, name) < 1:
                raise ConfigError(f"sqlite.{name}: must be at least 1")
        if obj.search_merge_pages < 0:
            raise ConfigError("sqlite.search_merge_pages: must be at least 0")
        if obj.commit_delay_ms > 100:
            raise ConfigError("sqlite.commit_delay_ms: must be at most 100")
        if obj.loop_read_rows < 0:
            raise ConfigError("sqlite.loop_read_rows: must be 0 or more")
    if isinstance(obj, PostgresConfig):
        for name in ("pool_size", "write_lanes", "max_batch"):
            if getattr(obj, name) < 1:
                raise ConfigError(f"postgres.{name}: must be at least 1")
    if isinstance(obj, TlsConfig):
        if bool(obj.cert) != bool(obj.key):
            raise ConfigError("tls.cert and tls.key: give both (or neither)")
        if obj.client_ca and not obj.cert:
            raise ConfigError("tls.client_ca: needs tls.cert and tls.key")
        if obj.handshake_timeout <= 0:
            raise ConfigError("tls.handshake_timeout: must be more than 0")
    if isinstance(obj, JobsConfig):
        for name in ("concurrency", "max_attempts"):
            if getattr(obj, name) < 1:
                raise ConfigError(f"jobs.{name}: must be at least 1")
        for name in ("poll_interval", "lease", "webhook_timeout", "endpoint_refresh"):
            if getattr(obj, name) <= 0:
                raise ConfigError(f"jobs.{name}: must be more than 0")
        if obj.lease <= obj.webhook_timeout:
            raise ConfigError("jobs.lease: must be longer than jobs.webhook_timeout")
    if isinstance(obj, BeforeSendConfig) and obj.url:
        if not obj.url.startswith(("http://", "https://")):
            raise ConfigError(f"before_send.url: expected an http:// or https:// URL, got {obj.url!r}")
        if not valid_secret(obj.secret):
            raise ConfigError("before_send.secret: expected whsec_ followed by base64")
        if obj.timeout <= 0:
            raise ConfigError("before_send.timeout: must be more than 0")
    if isinstance(obj, EventStreamConfig) and obj.url:
        if not obj.url.startswith(("nats://", "tls://")):
            raise ConfigError(f"event_stream.url: expected a nats:// URL, got {obj.url!r}")
        if not obj.events:
            raise ConfigError("event_stream.events: expected at least one event type")
        if obj.publish_timeout <= 0:
            raise ConfigError("event_stream.publish_timeout: must be more than 0")
    if isinstance(obj, MqttConfig):
        if not -1 <= obj.port <= 65535:
            raise ConfigError(f"mqtt.port: must be -1..65535, got {obj.port}")
        for name in ("max_packet_bytes", "min_keep_alive", "max_topic_length", "max_subscriptions",
                     "max_inflight_messages"):
            if getattr(obj, name) < 1:
                raise ConfigError(f"mqtt.{name}: must be at least 1")
        if obj.max_keep_alive < obj.min_keep_alive:
            raise ConfigError("mqtt.max_keep_alive: must be at least mqtt.min_keep_alive")
    if isinstance(obj, XmppConfig):
        for name in ("port", "tls_port"):
            if not -1 <= getattr(obj, name) <= 65535:
                raise ConfigError(f"xmpp.{name}: must be -1..65535, got {getattr(obj, name)}")
        for name in ("max_stanza_bytes", "max_depth", "max_sent_tracked", "max_unacked"):
            if getattr(obj, name) < 1:
                raise ConfigError(f"xmpp.{name}: must be at least 1")
        if not obj.domain or "@" in obj.domain or "/" in obj.domain:
            raise ConfigError(f"xmpp.domain: expected a domain name, got {obj.domain!r}")
    if isinstance(obj, BotsConfig) and obj.rate_multiplier <= 0:
        raise ConfigError("bots.rate_multiplier: must be more than 0")
    if isinstance(obj, PushConfig):
        for name in ("timeout", "max_devices_per_user", "max_token_bytes"):
            if getattr(obj, name) <= 0:
                raise ConfigError(f"push.{name}: must be more than 0")
        if obj.apns_key_file and not (obj.apns_key_id and obj.apns_team_id and obj.apns_topic):
            raise ConfigError("push.apns_key_file: needs push.apns_key_id, push.apns_team_id and push.apns_topic")
        for name in ("apns_url", "fcm_url"):
            if not getattr(obj, name).startswith(("https://", "http://")):
                raise ConfigError(f"push.{name}: expected an https:// URL")
    if isinstance(obj, PreviewsConfig):
        for name in ("max_page_bytes", "max_image_bytes", "timeout", "connect_timeout", "max_title_chars",
                     "max_description_chars"):
            if getattr(obj, name) <= 0:
                raise ConfigError(f"previews.{name}: must be more than 0")
        for name in ("image_size", "max_redirects", "cache_ttl"):
            if getattr(obj, name) < 0:
                raise ConfigError(f"previews.{name}: must be at least 0")
        if not all(1 <= port <= 65535 for port in obj.allowed_ports):
            raise ConfigError("previews.allowed_ports: ports are 1..65535")
        for network in obj.allowed_networks:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ConfigError(f"previews.allowed_networks: {network!r} is not a network (CIDR)") from None
    if isinstance(obj, CallsConfig):
        for name in ("max_sdp_bytes", "max_candidate_bytes", "max_candidates"):
            if getattr(obj, name) < 1:
                raise ConfigError(f"calls.{name}: must be at least 1")
        if obj.ring_timeout <= 0:
            raise ConfigError("calls.ring_timeout: must be more than 0")
        try:
            parse_rate(obj.invites_per_user)
        except ValueError as exc:
            raise ConfigError(f"calls.invites_per_user: {exc}") from None
    if isinstance(obj, ConversationsConfig):
        for name in ("max_forward_messages", "max_forward_copies", "max_pins", "max_draft_chars"):
            if getattr(obj, name) < 1:
                raise ConfigError(f"conversations.{name}: must be at least 1")
        for name in ("drafts_per_user", "settings_per_user"):
            try:
                parse_rate(getattr(obj, name))
            except ValueError as exc:
                raise ConfigError(f"conversations.{name}: {exc}") from None
    if isinstance(obj, TurnConfig) and obj.urls:
        if not all(url.startswith(("turn:", "turns:", "stun:")) for url in obj.urls):
            raise ConfigError("turn.urls: expected turn:, turns: or stun: URLs")
        if not obj.secret:
            raise ConfigError("turn.secret: needed with turn.urls (coturn's static-auth-secret)")
        if obj.ttl < 60:
            raise ConfigError("turn.ttl: must be at least 60")
    if isinstance(obj, MetricsConfig):
        if obj.loop_lag_interval < 0:
            raise ConfigError("metrics.loop_lag_interval: must be at least 0 (0: off)")
        if not -1 <= obj.worker_port <= 65535:
            raise ConfigError(f"metrics.worker_port: must be -1..65535, got {obj.worker_port}")
    if isinstance(obj, RedisConfig) and obj.node_ttl <= obj.heartbeat_interval:
        raise ConfigError("redis.node_ttl: must be longer than redis.heartbeat_interval")
    if isinstance(obj, RedisConfig) and ("{" in obj.prefix or "}" in obj.prefix):
        raise ConfigError("redis.prefix: must not contain braces (they would change Redis Cluster's hash slots)")
    if isinstance(obj, RedisConfig) and not 1 <= obj.channel_buckets <= 16384:
        raise ConfigError(f"redis.channel_buckets: must be 1..16384, got {obj.channel_buckets}")
    if isinstance(obj, AuthConfig):
        if obj.hash_concurrency < 1:
            raise ConfigError("auth.hash_concurrency: must be at least 1")
        if obj.max_sessions < 1:
            raise ConfigError("auth.max_sessions: must be at least 1")
        for name in ("token_ttl", "session_ttl", "revocation_poll"):
            if getattr(obj, name) <= 0:
                raise ConfigError(f"auth.{name}: must be more than 0")
        if obj.refresh_grace < 0:
            raise ConfigError("auth.refresh_grace: must be at least 0")
        if obj.session_read_delay > 0.1:  # every connect of a storm may wait this long for its session
            raise ConfigError(f"auth.session_read_delay: must be at most 0.1 seconds, got {obj.session_read_delay}")
        # Argon2's own floors (RFC 9106), checked here so that a bad value names its key instead of failing the
        # first hash at start-up.
        if obj.argon2_time_cost < 1:
            raise ConfigError("auth.argon2_time_cost: must be at least 1")
        if obj.argon2_parallelism < 1:
            raise ConfigError("auth.argon2_parallelism: must be at least 1")
        if obj.argon2_memory_kib < 8 * obj.argon2_parallelism:
            raise ConfigError(f"auth.argon2_memory_kib: must be at least 8 per lane (auth.argon2_parallelism), "
                              f"here {8 * obj.argon2_parallelism}")
