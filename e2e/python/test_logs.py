"""Log output fit for files, pipes and Kubernetes: no ANSI colour escapes unless stdout is a
terminal, and `log.format=json` (or TRIBUTARY_LOG_FORMAT=json) for one JSON object per line."""

import json
import os
import selectors
import signal
import subprocess
import tempfile
import time

from conftest import BIN, Broker


def run_until_started(env_extra=None, **overrides):
    """Runs a broker with stdout and stderr on a pipe until it logs "node started", then stops
    it with SIGTERM; returns everything it wrote."""
    data = tempfile.mkdtemp(prefix="tributary-logs-")
    b = Broker(data, **overrides)
    args = [BIN]
    for k, v in b.overrides.items():
        args += ["--override", f"{k}={v}"]
    env = {**os.environ, **(env_extra or {})}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    out = b""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.time() + 20
    try:
        while b"node started" not in out and time.time() < deadline:
            if sel.select(timeout=0.5):
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                out += chunk
        assert b"node started" in out, out.decode(errors="replace")
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=20)
        out += rest
        assert proc.returncode == 0, out.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        sel.close()
    return out


def test_text_logs_to_a_pipe_have_no_colour_escapes():
    out = run_until_started()
    assert b"\x1b[" not in out
    text = out.decode()
    assert " INFO " in text and "node started" in text and "stopped" in text


def test_json_logs_are_one_object_per_line_with_level_target_message_and_fields():
    out = run_until_started(log_format="json")
    assert b"\x1b" not in out
    lines = out.decode().splitlines()
    events = [json.loads(line) for line in lines]  # every line is one JSON object
    for e in events:
        assert {"timestamp", "level", "target", "message"} <= e.keys(), e
    started = [e for e in events if e["message"] == "node started"]
    assert len(started) == 1
    assert started[0]["level"] == "INFO"
    assert started[0]["target"] == "broker::broker"
    assert isinstance(started[0]["elapsed_ms"], int)  # fields are top-level keys


def test_the_environment_variable_selects_json():
    out = run_until_started(env_extra={"TRIBUTARY_LOG_FORMAT": "json"})
    assert all(json.loads(line)["level"] for line in out.decode().splitlines())
