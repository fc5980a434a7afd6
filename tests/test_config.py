"""Config loading: every mistake is named by file and key; the example config is valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from logscan.app.config import ConfigError, load_config, parse_config

REPO = Path(__file__).resolve().parent.parent
MINIMAL = """
[server]
listen = "127.0.0.1:9551"
[state]
dir = "/var/lib/logscan"
[[logs]]
name = "postfix"
path = "/var/log/mail.log"
format = "auto"
start_at = "end"
"""


def test_minimal_config_from_the_issue_loads() -> None:
    cfg = parse_config(MINIMAL, "x.toml")
    assert cfg.logs[0].name == "postfix"
    assert cfg.server.listen == "127.0.0.1:9551"
    assert cfg.daemon.bounce_ratio_windows == [300, 3600]


def test_example_config_is_valid() -> None:
    cfg = load_config(REPO / "config" / "logscan.toml")
    assert {log.format for log in cfg.logs} <= {"auto", "postfix", "exim", "mailenable"}


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ('[server]\nlisten = "127.0.0.1:9551"\ncolour = "red"\n', "unknown field `colour` - at `server`"),
        ('[[logs]]\nname = "a"\npath = "/x"\nformat = "sendmail"\n', "logs[0].format"),
        ('[[logs]]\nname = "a"\npath = "relative.log"\n', "`logs[0].path`"),
        ('[[logs]]\nname = "a b"\npath = "/x"\n', "`logs[0].name`"),
        ('[[logs]]\nname = "a"\npath = "/x"\ntimezone = "Mars/Olympus"\n', "unknown time zone"),
        ('[server]\nlisten = "nonsense"\n[[logs]]\nname = "a"\npath = "/x"\n', "`server.listen`"),
        ('[[logs]]\nname = "a"\npath = "/x"\n[[logs]]\nname = "a"\npath = "/y"\n', "used twice"),
        ("logs = [", "not valid TOML"),
    ],
)
def test_errors_name_file_and_key(patch: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(patch, "/etc/logscan/logscan.toml")
    assert str(info.value).startswith("/etc/logscan/logscan.toml: ")
    assert message in str(info.value)


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.toml")
