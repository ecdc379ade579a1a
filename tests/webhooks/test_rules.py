"""Pure parts of webhooks: the signature (the specification's own test vector), what an answer means, which
addresses are refused, which patterns match."""

from __future__ import annotations

import ipaddress

import pytest

from pica.store.base import JobRules, Subscription
from pica.store.job_rules import matches, targets, valid_pattern
from pica.webhooks.delivery import verdict_for
from pica.webhooks.signing import new_secret, signature
from pica.webhooks.ssrf import literal_refused, refused
from tests.webhooks.receiver import verify


def test_signature_matches_the_specifications_test_vector() -> None:
    assert signature("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
                     b'{"test": 2432232314}') == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_new_secrets_verify() -> None:
    import time

    secret = new_secret()
    stamp = int(time.time())
    verify(secret, {"webhook-id": "msg_1", "webhook-timestamp": str(stamp),
                    "webhook-signature": signature(secret, "msg_1", stamp, b"{}")}, b"{}")


@pytest.mark.parametrize(("status", "kind"), [(200, "done"), (204, "done"), (500, "retry"), (503, "retry"),
                                              (429, "retry"), (408, "retry"), (404, "dead"), (400, "dead"),
                                              (410, "dead"), (301, "dead"), (302, "dead")])
def test_verdicts(status: int, kind: str) -> None:
    assert verdict_for(status).kind == kind


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254",
                                     "100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "::",
                                     "fe80::1", "fc00::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1"])
def test_non_public_addresses_are_refused(address: str) -> None:
    assert refused(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_not(address: str) -> None:
    assert not refused(ipaddress.ip_address(address))


def test_literal_hosts() -> None:
    assert literal_refused("http://127.0.0.1:8080/x") and literal_refused("http://[::1]/x")
    assert not literal_refused("https://example.com/x") and not literal_refused("https://8.8.8.8/x")


def test_patterns() -> None:
    assert matches("group.*", "group.created") and matches("*", "user.created")
    assert not matches("group.*", "message.created") and not matches("message", "message.created")
    assert valid_pattern("group.*") and valid_pattern("message.edited") and not valid_pattern("message.deleted")
    rules = JobRules((Subscription("a", ("group.*",)), Subscription("b", ("*",))))
    assert targets(rules, "group.renamed") == ("a", "b") and targets(rules, "user.created") == ("b",)
