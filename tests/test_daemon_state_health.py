"""State health is visible (issue 12): failed saves are counted, /ready says why, a failed final
save exits non-zero; a config that check-config accepts always runs."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests.alertmanager_fixture import free_port
from tests.daemon_fixture import REPO, start_daemon, wait_for, write_config


def test_failed_saves_are_counted_make_ready_503_and_a_failed_final_save_exits_1(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_text("")
    port = free_port()
    cfg = write_config(tmp_path, [{"name": "mail", "path": str(log)}], port=port, save_interval=0.2)
    d = start_daemon(cfg, port)
    state = tmp_path / "state" / "state.json"
    try:
        assert d.value("logscan_state_save_failures_total") == 0
        assert d.value("logscan_state_last_save_timestamp_seconds") > 0
        # A directory where the state file goes: the atomic rename fails, as on a full or RO disk.
        state.unlink()
        state.mkdir()
        wait_for(lambda: d.get("/ready")[0] == 503, what="/ready 503")
        _, body = d.get("/ready")
        assert "state not saved" in body
        assert str(state) in body
        assert d.value("logscan_state_save_failures_total") >= 1
        assert "state_save_failed" in d.logs()
        state.rmdir()
        wait_for(lambda: d.get("/ready")[0] == 200, what="ready again after a good save")
        assert state.is_file()
        state.unlink()
        state.mkdir()
        wait_for(lambda: d.get("/ready")[0] == 503, what="/ready 503 again")
    finally:
        code = d.kill(signal.SIGTERM)
    assert code == 1, d.logs()[-2000:]


def check_config(cfg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "logscan", "check-config", "--config", str(cfg)],
                          capture_output=True, text=True, cwd=REPO, timeout=60, check=False)


def test_check_config_rejects_what_cannot_run_and_a_reload_keeps_the_old_config(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_text("")
    port = free_port()
    cfg = write_config(tmp_path, [{"name": "mail", "path": str(log)}], port=port)
    good = cfg.read_text()
    for bad, why in [
        (str(tmp_path / "*" / "mail.log"), "wildcards are only allowed in the file name"),
        (str(tmp_path) + "/", "names a folder"),
    ]:
        write_config(tmp_path, [{"name": "mail", "path": bad}], port=port)
        res = check_config(cfg)
        assert res.returncode == 2, res.stdout + res.stderr
        assert "logs[0].path" in res.stderr + res.stdout
        assert why in res.stderr + res.stdout
    cfg.write_text(good)
    d = start_daemon(cfg, port)
    try:
        with log.open("a") as fh:
            fh.write("x\n")
        wait_for(lambda: d.value("logscan_lines_total", log="mail") == 1, what="one line")
        write_config(tmp_path, [{"name": "mail", "path": str(tmp_path / "*" / "mail.log")}], port=port)
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "config_reload_refused" in d.logs(), what="reload refused")
        assert d.proc.poll() is None
        with log.open("a") as fh:
            fh.write("y\n")
        wait_for(lambda: d.value("logscan_lines_total", log="mail") == 2, what="old config still runs")
    finally:
        assert d.stop() == 0
