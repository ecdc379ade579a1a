"""systemd's service notifications (sd_notify(3)), spoken directly: a datagram to ``$NOTIFY_SOCKET``.

``Type=notify`` units learn that the node is ready (listening, store open) rather than merely started, and
``WatchdogSec=`` units that its event loop still turns: the pings come from a task on that loop, so a loop stuck in
a blocking call stops them and systemd restarts the node. Outside systemd (no ``$NOTIFY_SOCKET``) every call is a
no-op. No library: the protocol is one ``sendto`` of ``KEY=value`` lines.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(*lines: str) -> bool:
    """Send ``KEY=value`` lines to systemd; False when not run by systemd (or the socket is gone)."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(lines).encode())
    except OSError as exc:
        log.warning("systemd notification failed: %s", exc)
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between watchdog pings (half of ``WatchdogSec``, as sd_watchdog_enabled(3) advises), or None when
    no watchdog is asked of this process."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000


async def watchdog(interval: float) -> None:
    """Ping the watchdog every ``interval`` seconds for as long as the event loop runs this task."""
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)


def child_environment() -> dict[str, str]:
    """The environment for processes this one starts (the --workers supervisor's workers): without systemd's
    notification variables, since only the main process speaks for the service."""
    return {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
