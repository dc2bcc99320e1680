"""The network guard: every spelling of a blocked address is refused, on the resolved address, before any
connection; loopback and the LAN stay allowed (PBXs live there). Unit checks of ``blocked_reason`` and the same
forms through the running server's ``url=`` field, with a patched resolver and no packet sent anywhere."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.server import running_server, wait_ready
from wazo_stt.config import Settings
from wazo_stt.netguard import HostRefused, HostUnresolvable, NetworkGuard, blocked_reason

# (address, why it must be refused)
BLOCKED = [
    ("169.254.169.254", "AWS / GCP / Azure / Oracle / OpenStack metadata"),
    ("169.254.170.2", "AWS ECS task metadata"),
    ("169.254.0.23", "Tencent Cloud metadata"),
    ("100.100.100.200", "Alibaba Cloud metadata"),
    ("168.63.129.16", "Azure WireServer"),
    ("192.0.0.192", "Oracle Cloud metadata"),
    ("fd00:ec2::254", "AWS metadata over IPv6"),
    ("fd20:ce::254", "Google Cloud metadata over IPv6"),
    ("0.0.0.0", "unspecified (Linux connects it to the local host)"),
    ("255.255.255.255", "broadcast"),
    ("224.0.0.1", "multicast"),
    ("ff02::1", "IPv6 multicast"),
    ("fe80::1", "IPv6 link-local"),
    ("fe80::a9fe:a9fe%eth0", "IPv6 link-local with a zone"),
    ("::", "IPv6 unspecified"),
    ("::ffff:169.254.169.254", "IPv4-mapped"),
    ("::ffff:168.63.129.16", "IPv4-mapped Azure"),
    ("::a9fe:a9fe", "IPv4-compatible (deprecated ::a.b.c.d)"),
    ("::ffff:0:a9fe:a9fe", "IPv4-translated (SIIT)"),
    ("64:ff9b::a9fe:a9fe", "NAT64 well-known prefix"),
    ("64:ff9b::c000:c0", "NAT64 of Oracle's 192.0.0.192"),
    ("64:ff9b:1::a9fe:a9fe", "NAT64 local-use /48 prefix, /96 layout"),
    ("64:ff9b:1:a9fe:a9:fe00::", "NAT64 local-use, /48 layout"),
    ("64:ff9b:1:a9:fe:a9fe::", "NAT64 local-use, /56 layout"),
    ("64:ff9b:1:0:a9:fea9:fe00:0", "NAT64 local-use, /64 layout"),
    ("2002:a9fe:a9fe::1", "6to4"),
    ("2001:0:4136:e378:8000:63bf:5601:5601", "Teredo (client 169.254.169.254, obfuscated)"),
]
ALLOWED = [
    "127.0.0.1",
    "::1",
    "10.1.2.3",
    "172.16.0.5",
    "192.168.1.10",
    "100.64.0.1",  # carrier-grade NAT: PBXs behind it exist
    "fd12:3456::1",
    "8.8.8.8",
    "2606:4700::1111",
    "::ffff:10.0.0.1",
    "64:ff9b::a00:1",  # NAT64 of a LAN address
    "64:ff9b:1::a00:1",
    "64:ff9b:1:a00:0:100::",
]


@pytest.mark.parametrize(("address", "why"), BLOCKED)
def test_blocked_addresses(address: str, why: str) -> None:
    assert blocked_reason(address) is not None, why


@pytest.mark.parametrize("address", ALLOWED)
def test_lan_loopback_and_public_addresses_are_allowed(address: str) -> None:
    assert blocked_reason(address) is None


@pytest.fixture
def no_connection(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fail loudly (and record) if the server opens any outbound HTTP connection."""
    attempts: list[str] = []

    async def send(self: httpx.AsyncClient, request: httpx.Request, *args: object, **kwargs: object) -> None:
        attempts.append(str(request.url))
        raise AssertionError("the guard let a request through")

    monkeypatch.setattr(httpx.AsyncClient, "send", send)
    return attempts


async def test_guard_decides_on_the_resolved_address(fake_dns: dict[str, list[str]]) -> None:
    guard = NetworkGuard()
    fake_dns["pbx.lan"] = ["192.168.1.10", "fd12::1"]
    fake_dns["rebind.lan"] = ["192.168.1.10", "::ffff:0:a9fe:a9fe"]
    assert await guard.check(httpx.URL("http://pbx.lan/vm.wav")) == ["192.168.1.10", "fd12::1"]
    with pytest.raises(HostRefused, match=r"rebind\.lan points to a blocked"):
        await guard.check(httpx.URL("http://rebind.lan/vm.wav"))
    with pytest.raises(HostUnresolvable):
        await guard.check(httpx.URL("http://nowhere.lan/vm.wav"))


async def test_allow_list_is_checked_before_resolving(fake_dns: dict[str, list[str]]) -> None:
    guard = NetworkGuard(allowed_hosts=("pbx.example.com", "*.pbx.lan"))
    fake_dns["pbx.example.com"] = ["10.0.0.5"]
    fake_dns["a.pbx.lan"] = ["10.0.0.6"]
    assert await guard.check(httpx.URL("https://PBX.example.com./x")) == ["10.0.0.5"]
    assert await guard.check(httpx.URL("https://a.pbx.lan/x")) == ["10.0.0.6"]
    with pytest.raises(HostRefused, match="not in URL_ALLOWED_HOSTS"):
        await guard.check(httpx.URL("http://10.0.0.5/x"))


# --------------------------------------------------------------------------------------------- through the server


@pytest.fixture(scope="module")
def client(tiny_model_dir, tmp_path_factory) -> Iterator[httpx.Client]:
    """One server for the module (the refusals leave no job behind)."""
    settings = Settings(
        _env_file=None, model_path=tiny_model_dir, db_path=tmp_path_factory.mktemp("guard") / "jobs.db"
    )
    with running_server(settings) as url, httpx.Client(base_url=url, timeout=30) as c:
        wait_ready(c)
        yield c


@pytest.mark.parametrize(("address", "why"), BLOCKED)
def test_server_refuses_a_host_resolving_to_each_blocked_form(
    client: httpx.Client, fake_dns: dict[str, list[str]], no_connection: list[str], address: str, why: str
) -> None:
    fake_dns["voicemail.pbx.test"] = [address]
    response = client.post("/v1/audio/transcriptions", data={"url": "http://voicemail.pbx.test/vm.wav"})
    assert response.status_code == 400, why
    error = response.json()["error"]
    assert error["param"] == "url" and error["message"].startswith("The audio URL's host is not allowed"), error
    assert no_connection == []


@pytest.mark.parametrize(
    "url",
    [
        "http://[::a9fe:a9fe]/latest/meta-data/",
        "http://[::ffff:0:a9fe:a9fe]/latest/meta-data/",
        "http://[64:ff9b:1::a9fe:a9fe]/latest/meta-data/",
        "http://[64:ff9b::a83f:8110]/machine",  # NAT64 of Azure's 168.63.129.16
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://[fd20:ce::254]/computeMetadata/v1/",
        "http://168.63.129.16/machine?comp=goalstate",
        "http://192.0.0.192/latest/",
        "http://100.100.100.200/latest/meta-data/",
        "http://2852039166/latest/meta-data/",  # 169.254.169.254 as one decimal number
        "http://0x7f000001.0xa9fea9fe/",  # not an address at all: refused as unresolvable, never connected
    ],
)
def test_server_refuses_blocked_ip_literals(
    client: httpx.Client, no_connection: list[str], fake_dns: dict[str, list[str]], url: str
) -> None:
    response = client.post("/v1/audio/transcriptions", data={"url": url})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "url"
    assert no_connection == []
