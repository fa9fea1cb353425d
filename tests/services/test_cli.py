import pytest

from services.bookservice.cli import parse_args


def test_it_defaults_to_loopback_and_the_version_port():
    args = parse_args("v2", 8002, [])
    assert (args.host, args.port, args.access_log) == ("127.0.0.1", 8002, False)


def test_it_takes_host_and_port():
    args = parse_args("v3", 8003, ["--port", "9123", "--host", "0.0.0.0"])
    assert (args.host, args.port) == ("0.0.0.0", 9123)


@pytest.mark.parametrize("argv", [["--port", "70000"], ["--port", "-1"], ["--port", "x"]])
def test_it_refuses_a_bad_port(argv, capsys):
    with pytest.raises(SystemExit):
        parse_args("v1", 8001, argv)
    assert "port" in capsys.readouterr().err
