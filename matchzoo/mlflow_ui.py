"""The MLflow UI server over the project's store, bound to 127.0.0.1 (used by ``python -m matchzoo ui``).

``mlflow ui`` is a tree of processes (the CLI, uvicorn and its workers, a job runner and its huey
consumers). They run in a process group of their own, so Ctrl-C in a terminal reaches only this
command, which then stops the whole group: SIGINT/SIGTERM are forwarded to every member, stragglers
get SIGKILL after a grace period, and the exit status is 128 + the signal number (130, 143). A server
that exits by itself with a non-zero status is an error (one line, exit 2).
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from matchzoo.errors import MatchzooError
from matchzoo.tracking import tracking_uri

HOST = "127.0.0.1"
GRACE_SECONDS = 15.0  # uvicorn and huey finish in ~2 s on SIGTERM here; SIGKILL only after this


def command(port: int) -> list[str]:
    mlflow = shutil.which("mlflow") or str(Path(sys.executable).with_name("mlflow"))
    return [mlflow, "ui", "--backend-store-uri", tracking_uri(), "--host", HOST, "--port", str(port)]


def check_port_free(port: int, host: str = HOST, hint: str = "pass --port N") -> None:
    """Refuse a busy port up front: mlflow would log the bind error and still exit 0. ``hint``: the options that
    choose the address, named in the message when the port cannot be used for another reason."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as error:
        raise MatchzooError(f"--host {host!r}: cannot resolve it ({error.strerror}); give an address or name") from None
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # the server sets SO_REUSEADDR too, so a port in TIME_WAIT is free for it and must count as free here
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise MatchzooError(f"port {port} is in use on {host}; pass --port N with a free port") from None
            raise MatchzooError(f"cannot use port {port} on {host}: {error.strerror}; {hint}") from None


def serve(cmd: list[str]) -> int:
    """Run the server in its own process group until it exits or a signal arrives; stop the whole group."""
    received: list[int] = []
    server: list[subprocess.Popen] = []

    def forward(signum, frame):
        received.append(signum)
        if server:
            signal_group(server[0].pid, signum)

    # installed before the server starts, so a signal in between is not lost
    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            server.append(subprocess.Popen(cmd, start_new_session=True))
        except FileNotFoundError:
            raise MatchzooError(f"cannot start {cmd[0]}; is mlflow installed in this environment?") from None
        if received:
            signal_group(server[0].pid, received[0])
        status = server[0].wait()
    finally:
        try:
            if server:
                stop_group(server[0])
        finally:  # only now: a second signal during the shutdown must not cut it short
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    if received:
        print(f"matchzoo: MLflow UI stopped ({signal.Signals(received[0]).name})", file=sys.stderr)
        return 128 + received[0]
    if status != 0:
        raise MatchzooError(f"the MLflow UI server exited with status {status}; see its messages above")
    return 0


def signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass  # the group is already gone


def stop_group(leader: subprocess.Popen) -> None:
    """SIGTERM every process left in the leader's group, SIGKILL what remains after the grace period."""
    pgid = leader.pid  # start_new_session: the leader's pid is the group id
    for signum, grace in ((signal.SIGTERM, GRACE_SECONDS), (signal.SIGKILL, 5.0)):
        if not group_members(pgid):
            break
        signal_group(pgid, signum)
        deadline = time.monotonic() + grace
        while group_members(pgid) and time.monotonic() < deadline:
            reap_briefly(leader)
    reap_briefly(leader)


def reap_briefly(leader: subprocess.Popen) -> None:
    """Wait up to 0.2 s for the leader: it paces the polling and reaps the leader, which would stay a zombie."""
    try:
        leader.wait(timeout=0.2)
    except subprocess.TimeoutExpired:
        pass


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group.

    ``killpg(pgid, 0)`` alone would count zombies, and orphaned workers can stay zombies for good where
    PID 1 does not reap (containers), so on Linux the group is read from ``/proc``.
    """
    proc = Path("/proc")
    if not (proc / "self" / "stat").is_file():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for entry in proc.iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(entry / "stat")
            # after "pid (comm)": state, ppid, pgrp, ...
            if fields and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
                members.append(int(entry.name))
    return members


def _stat_fields(path: Path) -> list[str]:
    try:
        text = path.read_text()
    except OSError:  # the process exited while we looked
        return []
    return text[text.rfind(")") + 2 :].split()
