"""Settings are validated loudly at start: one line per bad setting, naming it."""

import pytest

from monitor.config import ConfigError, Settings, load_settings
from monitor.storage.keys import load_keys


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in [n for n in __import__("os").environ if n.startswith("MONITOR_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env


@pytest.mark.parametrize("overrides, named", [
    ({"timeout": 2.0, "interval": 2.0}, "MONITOR_TIMEOUT"),
    ({"fast_interval": 3.0}, "MONITOR_FAST_INTERVAL"),
    ({"fall": 0}, "MONITOR_FALL"),
    ({"port": 70000}, "MONITOR_PORT"),
    ({"smtp_mode": "telnet"}, "MONITOR_SMTP_MODE"),
    ({"services": "v1=ftp://x"}, "MONITOR_SERVICES"),
    ({"services": "v1=http://a:1"}, "MONITOR_SERVICES"),
    ({"service_ports": "8001,8002"}, "MONITOR_SERVICE_PORTS"),
    ({"port": 8001}, "ports must all differ"),
    ({"smtp_host": "mail.example.org", "smtp_mode": "plain", "smtp_from": "a@b",
      "smtp_to": "c@d"}, "plain is allowed only for a loopback"),
    ({"smtp_host": "127.0.0.1"}, "MONITOR_SMTP_FROM"),
    ({"trusted_proxies": "127.0.0.1,nginx.local"}, "MONITOR_TRUSTED_PROXIES"),
    ({"smtp_host": "127.attacker.example", "smtp_mode": "plain", "smtp_from": "a@b",
      "smtp_to": "c@d"}, "plain is allowed only for a loopback"),
    ({"smtp_host": "localhost.attacker.example", "smtp_mode": "plain", "smtp_from": "a@b",
      "smtp_to": "c@d"}, "plain is allowed only for a loopback"),
    ({"host": "0.0.0.0"}, "needs TLS"),
    ({"host": "192.0.2.10"}, "MONITOR_ALLOW_PLAIN_HTTP=1"),
    ({"allowed_hosts": "good.example, bad host!"}, "MONITOR_ALLOWED_HOSTS"),
    ({"audit_checkpoint_url": "file:///tmp/x"}, "MONITOR_AUDIT_CHECKPOINT_URL"),
    ({"database_url": "mysql://db/monitor"}, "MONITOR_DATABASE_URL"),
    ({"lease_ttl": 0.5}, "MONITOR_LEASE_TTL"),
    ({"lease_ttl": 6.0, "lease_renew": 4.0}, "MONITOR_LEASE_RENEW"),
    ({"dataplane": "nginx"}, "MONITOR_DATAPLANE"),
    ({"dataplane": "haproxy"}, "MONITOR_HAPROXY_SOCKET is required"),
    ({"gateway_workers": 0}, "MONITOR_GATEWAY_WORKERS"),
    ({"gateway_max_header": 10}, "MONITOR_GATEWAY_MAX_HEADER"),
    ({"gateway_conns_per_ip": 0}, "MONITOR_GATEWAY_CONNS_PER_IP"),
    ({"spawn_gateway": "maybe"}, "MONITOR_SPAWN_GATEWAY"),
    ({"gateway_balance": "random"}, "MONITOR_GATEWAY_BALANCE"),
])
def test_it_names_the_bad_setting(overrides, named):
    with pytest.raises(ConfigError, match=named):
        load_settings(**overrides)


@pytest.mark.parametrize("overrides", [
    {"smtp_host": "127.0.0.1", "smtp_mode": "plain", "smtp_from": "a@b", "smtp_to": "c@d"},
    {"smtp_host": "::1", "smtp_mode": "plain", "smtp_from": "a@b", "smtp_to": "c@d"},
    {"smtp_host": "localhost", "smtp_mode": "plain", "smtp_from": "a@b", "smtp_to": "c@d"},
    {"host": "0.0.0.0", "allow_plain_http": True},
    {"host": "::1"},
])
def test_it_accepts_literal_loopback_and_an_explicit_plain_http_opt_in(overrides):
    assert load_settings(**overrides)


@pytest.mark.parametrize("overrides, names", [
    ({}, ["127.0.0.1", "localhost", "::1", "[::1]"]),
    ({"public_url": "https://mon.example.org/"},
     ["127.0.0.1", "localhost", "::1", "[::1]", "mon.example.org"]),
    ({"host": "0.0.0.0", "allow_plain_http": True, "public_url": "http://mon.example.org:8000"},
     ["mon.example.org"]),
    ({"allowed_hosts": "A.example, b.example"}, ["a.example", "b.example"]),
])
def test_it_derives_the_allowed_hosts_from_the_bound_names(overrides, names):
    assert load_settings(**overrides).host_names() == names


def test_it_reads_the_environment_and_derives_urls(monkeypatch):
    monkeypatch.setenv("MONITOR_SERVICES", "v1=http://10.0.0.5:9000/,v2=https://b:1,v3=http://c:2")
    monkeypatch.setenv("MONITOR_SMTP_TO", "a@x.test, b@x.test")
    settings = Settings()
    assert settings.service_urls() == {"v1": "http://10.0.0.5:9000", "v2": "https://b:1",
                                       "v3": "http://c:2"}
    assert not settings.local_services
    assert settings.smtp_recipients() == ["a@x.test", "b@x.test"]


def test_it_spawns_local_services_on_the_configured_ports_by_default():
    settings = Settings(service_ports="9101,9102,9103")
    assert settings.local_services
    assert settings.service_urls()["v3"] == "http://127.0.0.1:9103"


def test_it_generates_secrets_once_and_refuses_weak_ones(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    first, again = load_keys(settings), load_keys(settings)
    assert first == again and len(first.secret) >= 32
    assert (tmp_path / "data" / "secret.key").stat().st_mode & 0o777 == 0o600
    assert first.audit != first.csrf != first.auth_cache
    with pytest.raises(ConfigError, match="MONITOR_SECRET_KEY"):
        load_keys(Settings(data_dir=tmp_path, secret_key="aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"))
    with pytest.raises(ConfigError, match="MONITOR_CHAOS_TOKEN"):
        load_keys(Settings(data_dir=tmp_path, chaos_token="short"))


def test_it_never_replaces_a_damaged_key_and_never_creates_one_for_a_read_only_check(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    with pytest.raises(ConfigError, match="does not exist"):
        load_keys(settings, create=False)
    assert not (tmp_path / "data" / "secret.key").exists()
    load_keys(settings)
    (tmp_path / "data" / "secret.key").write_text("garbled\n")
    with pytest.raises(ConfigError, match="damaged"):
        load_keys(settings)
    assert (tmp_path / "data" / "secret.key").read_text() == "garbled\n"


def test_it_parses_lists_and_maps_once_into_typed_values(monkeypatch):
    monkeypatch.setenv("MONITOR_SERVICES", "v1=http://a:1, v2=http://b:2")
    monkeypatch.setenv("MONITOR_TRUSTED_PROXIES", " 10.0.0.1 ,::1,")
    monkeypatch.setenv("MONITOR_SMTP_TO", "a@x.test,,b@x.test ")
    settings = Settings(service_ports="9101,9102,9103")
    assert settings.services == {"v1": "http://a:1", "v2": "http://b:2"}
    assert settings.trusted_proxies == ("10.0.0.1", "::1")
    assert settings.smtp_to == ("a@x.test", "b@x.test")
    assert settings.service_ports == (9101, 9102, 9103)


def test_it_takes_the_failover_defaults_from_the_engine_policy():
    from monitor.failover.model import Policy
    from monitor.runtime import policy_from

    assert policy_from(Settings(services="v1=http://a:1,v2=http://b:2,v3=http://c:3")) == Policy()


@pytest.mark.parametrize("environ, env_file, expected", [
    ({"MONITOR_TIMOUT": "1"}, "",
     ["unknown setting MONITOR_TIMOUT (did you mean MONITOR_TIMEOUT?)"]),
    ({}, "MONITOR_SMTP_HOTS=mail\n", ["unknown setting MONITOR_SMTP_HOTS "
                                      "(did you mean MONITOR_SMTP_HOST?)"]),
    ({"MONITOR_ZZZ": "1"}, "", ["unknown setting MONITOR_ZZZ"]),
    ({"MONITOR_TIMEOUT": "1", "MONITOR_TEMPLATES_DIR": "/t", "PATH": "/bin"},
     "MONITOR_CANARY_DIGEST=" + "a" * 64 + "\n", []),
])
def test_it_names_unknown_monitor_settings_with_a_suggestion(tmp_path, environ, env_file,
                                                             expected):
    from monitor.config import unknown_names

    path = tmp_path / ".env"
    path.write_text(env_file)
    assert unknown_names(environ, path) == expected


def test_it_warns_about_a_typo_in_check_config(monkeypatch, tmp_path, capsys):
    from monitor.__main__ import main

    monkeypatch.setenv("MONITOR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MONITOR_COOLDOWNN", "5")
    main(["check-config"])
    assert "warning: unknown setting MONITOR_COOLDOWNN (did you mean MONITOR_COOLDOWN?)" in \
        capsys.readouterr().err


def test_it_documents_every_setting_in_the_example_env_file_with_its_default():
    import re
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / ".env.example"
    documented = set(re.findall(r"^(MONITOR_\w+)=", example.read_text(), re.MULTILINE))
    assert documented == {f"MONITOR_{name.upper()}" for name in Settings.model_fields}
    assert Settings(_env_file=example) == Settings(_env_file=None)
