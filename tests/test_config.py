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
    ({"database_url": "mysql://db/monitor"}, "MONITOR_DATABASE_URL"),
    ({"lease_ttl": 0.5}, "MONITOR_LEASE_TTL"),
    ({"lease_ttl": 6.0, "lease_renew": 4.0}, "MONITOR_LEASE_RENEW"),
])
def test_it_names_the_bad_setting(overrides, named):
    with pytest.raises(ConfigError, match=named):
        load_settings(**overrides)


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
