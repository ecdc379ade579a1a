"""SCRAM's exchange against RFC 7677's SCRAM-SHA-256 example, and its refusals."""

from __future__ import annotations

import base64

from pica.core.scram import derive, parse_client_first, verify
from pica.store.base import ScramKeyRecord

NONCE = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
FIRST = f"r={NONCE},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
FINAL = f"c=biws,r={NONCE},p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="


def rfc_key() -> ScramKeyRecord:
    stored, server = derive("SCRAM-SHA-256", "pencil", base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096)
    return ScramKeyRecord(1, "SCRAM-SHA-256", "W22ZaJ0SNY7soEsUEjb6gQ==", 4096, base64.b64encode(stored).decode(),
                          base64.b64encode(server).decode(), "")


def test_the_rfc_7677_example() -> None:
    client = parse_client_first("n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
    assert client is not None and client.username == "user" and client.bare == "n=user,r=rOprNGfwEbeRWgbNEkqO"
    assert verify("SCRAM-SHA-256", rfc_key(), client, FIRST, NONCE, FINAL) == \
        "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def test_refusals() -> None:
    client = parse_client_first("n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
    assert client is not None
    key = rfc_key()
    assert verify("SCRAM-SHA-256", key, client, FIRST, NONCE, FINAL.replace("p=dH", "p=eH")) is None  # wrong proof
    assert verify("SCRAM-SHA-256", key, client, FIRST, NONCE + "x", FINAL) is None  # another nonce
    assert verify("SCRAM-SHA-256", key, client, FIRST, NONCE, FINAL.replace("c=biws", "c=eSws")) is None
    assert verify("SCRAM-SHA-256", key, client, FIRST, NONCE, "garbage") is None
    for bad in ("p=tls-unique,,n=user,r=abc", "n,,r=abc", "n,,n=user", "n,,n=us=er,r=abc", ""):
        assert parse_client_first(bad) is None
