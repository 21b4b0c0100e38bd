"""The tenants file (maas.tenants) without nginx: what it admits, what it refuses and how it
says so, and what it renders into nginx's config."""

import json
from pathlib import Path

import pytest

from maas.access import Ports
from maas.balancer import Balancer, render
from maas.errors import OptionError
from maas.tenants import Tenants

KEY = "k" * 24


def table(**fields) -> dict:
    return {"tenants": {"web": {"key": KEY, "rate": 5, **fields}}}


def test_a_good_file_loads_with_its_defaults_and_levels(tmp_path):
    path = tmp_path / "tenants.json"
    path.write_text(json.dumps({"tenants": {
        "web": {"key": KEY, "rate": 5, "burst": 2},
        "nightly": {"key": "n" * 24, "rate": 0.5, "class": "bulk", "grpc": False},
    }}))  # fmt: skip
    path.chmod(0o600)
    web, nightly = Tenants.load(path).tenants
    assert (web.cls, web.level, web.burst, web.grpc, web.nginx_rate) == (
        "interactive",
        1,
        2,
        True,
        "5r/s",
    )
    assert (nightly.level, nightly.burst, nightly.grpc, nightly.nginx_rate) == (
        2,
        0,
        False,
        "30r/m",
    )
    assert KEY not in repr(web)  # a key never reaches a log through repr


@pytest.mark.parametrize(
    "data, says",
    [
        ({}, "no"),
        (table(rate=0), "rate"),
        (table(rate=True), "rate"),
        (table(rate=0.01), "under one request a minute"),
        (table(burst=-1), "burst"),
        (table(burst=1.5), "burst"),
        (table(**{"class": "vip"}), "class must be one of interactive, bulk"),
        (table(grpc="yes"), "grpc"),
        (table(quota=3), "unknown field"),
        ({"tenants": {"web": {"key": "short", "rate": 1}}}, "16 to 128 bytes"),
        ({"tenants": {"web": {"key": "k" * 129, "rate": 1}}}, "16 to 128 bytes"),
        ({"tenants": {"default": {"key": KEY, "rate": 1}}}, "nginx's words"),
        (
            {"tenants": {"a": {"key": KEY, "rate": 1}, "b": {"key": KEY.upper(), "rate": 1}}},
            "letter case",
        ),
        ({"tenants": {"web": {"key": "k" * 20 + '"; }', "rate": 1}}}, "letters, digits"),
        ({"tenants": {"Web Site": {"key": KEY, "rate": 1}}}, "a name is"),
        ({"tenants": {"a": {"key": KEY, "rate": 1}, "b": {"key": KEY, "rate": 1}}}, "another"),
    ],
)
def test_a_bad_entry_refuses_the_whole_file_naming_it(data, says):
    with pytest.raises(OptionError, match=says):
        Tenants.parse(data, "tenants.json")


def test_a_file_others_can_read_or_that_is_not_json_is_refused(tmp_path):
    path = tmp_path / "tenants.json"
    path.write_text(json.dumps(table()))
    path.chmod(0o644)
    with pytest.raises(OptionError, match="chmod 600"):
        Tenants.load(path)
    path.write_text("{")
    path.chmod(0o600)
    with pytest.raises(OptionError, match="not JSON"):
        Tenants.load(path)
    with pytest.raises(OptionError, match="tenants file"):
        Tenants.load(tmp_path / "missing.json")


def test_the_config_admits_each_key_on_its_protocols_with_its_own_zone():
    tenants = Tenants.parse({"tenants": {
        "web": {"key": KEY, "rate": 5, "burst": 2},
        "nightly": {"key": "n" * 24, "rate": 0.5, "class": "bulk", "grpc": False},
    }})  # fmt: skip
    conf = render([Ports(1, 2, 3)], Balancer(tenants=tenants, replica_key="r" * 24),
                  js_module="ngx_http_js_module.so", scratch=Path("/tmp/x"))  # fmt: skip
    # Each protocol's own header ($http2: empty on HTTP/1.1, h2c or h2 on gRPC's server).
    assert f'"k|{KEY}|" web;' in conf and f'"kh2c||{KEY}" web;' in conf
    assert f'"k|{"n" * 24}|" nightly;' in conf and f'||{"n" * 24}"' not in conf  # HTTP only
    # Retry-After at the rate nginx enforces: 30r/m is 500 thousandths a millisecond, 2 s.
    assert "$maas_retry_after {\n    default 1;\n    web 1;\n    nightly 2;\n  }" in conf
    assert 'if ($http2 = "") {' in conf  # HTTP/1 on the gRPC port: refused
    assert "zone=maas_web:1m rate=5r/s;" in conf and "zone=maas_nightly:1m rate=30r/m;" in conf
    assert "limit_req zone=maas_web burst=2 nodelay;" in conf
    assert conf.count("limit_req zone=maas_nightly nodelay;") == 3  # infer, large bodies, gRPC
    assert conf.count('proxy_set_header client-key "' + "r" * 24) == 3  # server + 2 guard exits
    assert conf.count("maas-tenant $maas_tenant") == 4  # HTTP server, the exits, gRPC
