"""A sandboxed Python executor for tool queries written by a model.

:func:`run_python` runs a code string in a separate process tree (the child side is
``jail.py``, which says what each of its processes does) and returns an :class:`Execution`;
``scoring.tools.run_code`` turns that into a :class:`~scoring.tools.verdict.ToolVerdict`.

What holds, and by which mechanism (the kernel does the holding; an audit hook in the child
only turns refusals into legible ``refused`` reports):

* **No network**: a new network namespace (``unshare(CLONE_NEWNET)`` through ctypes; Python
  3.11 has no ``os.unshare``) holds only a loopback interface that is down, so a connect to any
  address, the host's loopback included, fails.
* **No files outside the work directory**: a new mount namespace whose root is a tmpfs holding
  ``/scratch`` (a size-capped tmpfs, the cwd, the only writable place) and read-only,
  nosuid bind mounts of the interpreter's paths (``sys.path``) and ``/usr/lib`` (the shared
  libraries of C extensions), plus ``/dev/null``, ``/dev/zero`` and ``/dev/urandom``. The old
  root is detached after ``pivot_root``: ``/etc/hostname`` or ``/tmp`` of the host do not exist
  there. Reading those library and interpreter files is allowed: they are what the code runs
  on, and they are public.
* **No privileges**: the code runs as an unprivileged uid (65534) with ``PR_SET_NO_NEW_PRIVS``
  and no capabilities, so it cannot undo any of this (remount, mknod, chroot escape, setuid
  binaries).
* **Bounded processes**: a pids cgroup (v1 or v2, made per run under this process's own
  cgroup) caps the number of processes; where none can be made the uid's ``RLIMIT_NPROC``
  caps it (it holds because the uid is not root; that count is shared with any other process
  of uid 65534 on the host). The audit hook refuses ``os.fork``, ``subprocess`` and
  ``os.system`` outright. A new pid namespace whose init is ours means that everything the
  code started dies with it: on timeout that init is killed first, then the whole process
  group and every process left in the cgroup, all with SIGKILL. The launcher and init die
  with their parent (``PR_SET_PDEATHSIG``), so a worker killed mid-run takes its sandbox
  along; the empty cgroup and job folder it leaves are swept by a later run after a day.
* **Bounded resources**: ``RLIMIT_CPU`` (SIGXCPU, then SIGKILL), ``RLIMIT_AS`` (a
  ``MemoryError``), ``RLIMIT_FSIZE`` and the tmpfs size, a cap on stdout and stderr together
  (the run is killed when it passes it) and a wall-clock limit.

Limits, honestly: this needs CAP_SYS_ADMIN (our workers run as root; a rootless container
usually has no such capability). Where namespaces cannot be made the run is **refused**
(``unavailable``), never run unisolated. There is no seccomp filter (the standard library
cannot install one), so the kernel's whole system-call surface is reachable from the code:
the isolation is that of an unprivileged process in its own namespaces, not a VM's. Memory is
bounded per process by address space, not by a memory cgroup, so a bounded number of
processes can each take the limit. The sandbox is for model-written checking code, not for
code written to attack the kernel.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from scoring.tools import jail
from scoring.tools.verdict import (
    EXCEPTION,
    MEMORY,
    OUTPUT,
    REFUSED,
    TIMEOUT,
    UNAVAILABLE,
)

JAIL = Path(jail.__file__).resolve()
NOBODY = 65534
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_PREFIX = "stepwise-sandbox-"
JOB_PREFIX = "stepwise-sandbox-"
STALE_SECONDS = 24 * 3600
# Library directories C extensions load from; kept when they exist (symlinks are recreated).
SYSTEM_LIBRARIES = ("/usr/lib", "/usr/lib64", "/lib", "/lib64")


@dataclass(frozen=True)
class Limits:
    """Resource limits of one run. Wall time bounds the whole run, start-up included."""

    cpu_seconds: int = 5
    wall_seconds: float = 20.0
    memory_bytes: int = 512 * 2**20
    output_bytes: int = 64 * 2**10
    disk_bytes: int = 16 * 2**20
    max_processes: int = 16


@dataclass(frozen=True)
class Execution:
    """What a run printed and how it ended; ``error_kind`` is None for a clean exit 0."""

    code: str
    stdout: str
    stderr: str
    returncode: int | None
    error_kind: str | None
    detail: str = ""


@functools.cache
def _read_only_paths() -> dict[str, list[list[str]]]:
    """What the jail mounts read-only: ``binds`` as ``[source, target]`` and ``links`` as
    ``[path, target]``, for the interpreter's import paths and the system libraries.

    The import paths are asked of the interpreter itself in isolated mode (this process's
    ``sys.path`` holds the script's directory and the cwd, which the jail must not see) and
    are mounted where the interpreter looks for them (a venv's path may be a symlink).
    """
    probe = subprocess.run(
        [sys.executable, "-I", "-c", "import json, sys; print(json.dumps(sys.path))"],
        capture_output=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    paths = sorted({os.path.abspath(p) for p in json.loads(probe.stdout) if os.path.isdir(p)})
    targets: list[str] = []
    for path in paths:
        if not any(path.startswith(target + "/") for target in targets):
            targets.append(path)
    binds = [[os.path.realpath(p), p] for p in targets]
    links = []
    for path in SYSTEM_LIBRARIES:
        if os.path.islink(path):
            links.append([path, os.readlink(path)])
        elif os.path.isdir(path) and not any(path.startswith(t + "/") for t in targets):
            binds.append([path, path])
    return {"binds": binds, "links": links}


def _own_cgroup(controller: str) -> tuple[Path, str] | None:
    """This process's cgroup directory for ``controller`` (v1), or its v2 directory."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return CGROUP_ROOT / controller / path.lstrip("/"), "v1"
    for line in lines:
        if line.startswith("0::"):
            return CGROUP_ROOT / line[3:].lstrip("/"), "v2"
    return None


def _make_pids_cgroup(max_processes: int) -> Path | None:
    """A fresh pids cgroup capped at ``max_processes``, or None where we may not make one."""
    found = _own_cgroup("pids")
    if found is None:
        return None
    parent, version = found
    try:
        if version == "v2" and "pids" not in (parent / "cgroup.subtree_control").read_text():
            return None
        _sweep(parent, f"{CGROUP_PREFIX}*")
        group = parent / f"{CGROUP_PREFIX}{uuid.uuid4().hex}"
        group.mkdir()
    except OSError:
        return None
    try:
        (group / "pids.max").write_text(str(max_processes))
    except OSError:
        group.rmdir()
        return None
    return group


def _sweep(parent: Path, pattern: str) -> None:
    """Remove what runs whose caller was killed left behind (their processes died with it:
    see ``jail._die_with_parent``): empty cgroups and job folders older than a day. A cgroup
    that still holds a process cannot be removed, so a live run is never touched."""
    stale = time.time() - STALE_SECONDS
    with contextlib.suppress(OSError):
        for path in parent.glob(pattern):
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < stale:
                    if path.is_relative_to(CGROUP_ROOT):
                        path.rmdir()
                    else:
                        shutil.rmtree(path)


def _kill_cgroup(group: Path) -> None:
    """SIGKILL every process in the group until it is empty, then remove it."""
    for _ in range(1000):
        try:
            pids = [int(p) for p in (group / "cgroup.procs").read_text().split()]
        except OSError:
            return
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)  # let the kernel finish the kills before reading the list again
    with contextlib.suppress(OSError):
        group.rmdir()


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Kill the run: the namespace's init first, then the whole process group.

    Killing init makes the kernel kill everything in its pid namespace, and the launcher, its
    parent, reaps it and exits. Were they killed together, init would be left a zombie until
    the host's pid 1 reaps it. The launcher forks only once, so its children are init alone.
    """
    if proc.poll() is None:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        with contextlib.suppress(OSError):
            for pid in children.read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    _kill_group(proc.pid)


def run_python(code: str, limits: Limits = Limits(), stdin: bytes = b"") -> Execution:  # noqa: B008 (frozen)
    """Run ``code`` in the sandbox and wait for it, at most ``limits.wall_seconds``.

    Never raises for anything the code does: every failure is an ``Execution`` with an
    ``error_kind`` (:mod:`scoring.tools.verdict` lists them).
    """
    _sweep(Path(tempfile.gettempdir()), f"{JOB_PREFIX}*")
    job_dir = tempfile.mkdtemp(prefix=JOB_PREFIX)
    group = _make_pids_cgroup(limits.max_processes)
    job = {
        "code": code,
        "uid": NOBODY,
        "read_only": _read_only_paths(),
        "pids_cgroup": str(group) if group else None,
        "parent": os.getpid(),
        "limits": {
            "cpu_seconds": limits.cpu_seconds,
            "memory_bytes": limits.memory_bytes,
            "disk_bytes": limits.disk_bytes,
            "max_processes": limits.max_processes,
        },
    }
    Path(job_dir, "job.json").write_text(json.dumps(job))
    status_read, status_write = os.pipe()
    env = {"PATH": "/usr/bin:/bin", "HOME": jail.WORK, "TMPDIR": jail.WORK, "LANG": "C.UTF-8"}
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-u", str(JAIL), job_dir, str(status_write)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(status_write,),
            env=env,
            cwd=job_dir,
            start_new_session=True,  # its own process group, killed as a whole
        )
    except BaseException:
        os.close(status_read)
        os.close(status_write)
        if group:
            _kill_cgroup(group)
        shutil.rmtree(job_dir, ignore_errors=True)
        raise
    os.close(status_write)
    try:
        return _collect(proc, code, limits, stdin, status_read)
    finally:
        _stop(proc)
        if group:
            _kill_cgroup(group)
        proc.wait()
        shutil.rmtree(job_dir, ignore_errors=True)


def _collect(
    proc: subprocess.Popen[bytes], code: str, limits: Limits, stdin: bytes, status_fd: int
) -> Execution:
    """Feed stdin, read stdout, stderr and the status pipe to their end, within the limits."""
    deadline = time.monotonic() + limits.wall_seconds
    buffers: dict[int, bytearray] = {}
    assert proc.stdin and proc.stdout and proc.stderr
    selector = selectors.DefaultSelector()
    for fd in (proc.stdout.fileno(), proc.stderr.fileno(), status_fd):
        os.set_blocking(fd, False)
        buffers[fd] = bytearray()
        selector.register(fd, selectors.EVENT_READ)
    pending = memoryview(stdin)
    stdin_fd = proc.stdin.fileno()
    os.set_blocking(stdin_fd, False)
    if pending:
        selector.register(stdin_fd, selectors.EVENT_WRITE)
    else:
        proc.stdin.close()
    error_kind: str | None = None
    open_readers = 3
    try:
        while open_readers:
            left = deadline - time.monotonic()
            if left <= 0:
                error_kind = TIMEOUT
                break
            for key, _ in selector.select(timeout=left):
                fd = key.fd
                if fd == stdin_fd:
                    try:
                        pending = pending[os.write(fd, pending[:65536]) :]
                    except BrokenPipeError:
                        pending = pending[:0]
                    if not pending:
                        selector.unregister(fd)
                        proc.stdin.close()
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    selector.unregister(fd)
                    open_readers -= 1
                    continue
                buffers[fd] += chunk
            printed = len(buffers[proc.stdout.fileno()]) + len(buffers[proc.stderr.fileno()])
            # The code can write to the status pipe too: it counts against the same cap.
            if printed > limits.output_bytes or len(buffers[status_fd]) > limits.output_bytes:
                error_kind = OUTPUT
                break
    finally:
        selector.close()
        if not proc.stdin.closed:
            proc.stdin.close()
    if error_kind is not None:
        _stop(proc)
    returncode = proc.wait()
    stdout = bytes(buffers[proc.stdout.fileno()][: limits.output_bytes])
    stderr = bytes(buffers[proc.stderr.fileno()][: limits.output_bytes])
    reports = [
        json.loads(line)
        for line in buffers[status_fd].decode(errors="replace").splitlines()
        if line.startswith("{")
    ]
    proc.stdout.close()
    proc.stderr.close()
    os.close(status_fd)
    detail = ""
    if error_kind is None:
        error_kind, detail = _ending(returncode, reports, limits)
    elif error_kind == TIMEOUT:
        detail = f"wall clock passed {limits.wall_seconds} s"
    else:
        detail = f"output passed {limits.output_bytes} bytes"
    return Execution(
        code=code,
        stdout=stdout.decode(errors="replace"),
        stderr=stderr.decode(errors="replace"),
        returncode=returncode,
        error_kind=error_kind,
        detail=detail,
    )


def _ending(returncode: int, reports: list[dict], limits: Limits) -> tuple[str | None, str]:
    """The error kind of a run that ended by itself: a refusal first (even when the code
    caught the PermissionError and went on), then what the jail reported, then the status."""
    for kind in (REFUSED, UNAVAILABLE, MEMORY, EXCEPTION):
        for report in reports:
            if report.get("kind") == kind:
                return kind, str(report.get("detail", ""))
    # RLIMIT_CPU sends SIGXCPU at the soft limit and SIGKILL at the hard one.
    if returncode in (128 + signal.SIGXCPU, 128 + signal.SIGKILL):
        return TIMEOUT, f"CPU time passed {limits.cpu_seconds} s"
    if returncode != 0:
        return EXCEPTION, f"exit status {returncode}"
    return None, ""
