"""The child side of the sandbox: run as a script, ``python -I -u jail.py JOB_DIR STATUS_FD``.

This file imports only the standard library (it runs by path in isolated mode, where the
``scoring`` package is not importable) and is started by :func:`scoring.tools.sandbox.run_python`,
which explains the whole design; here is what the three processes do:

* the **launcher** (this script's first process, its own session and process group) joins the
  run's pids cgroup, arms SIGKILL on its parent's death, reads the job, leaves the host's namespaces with ``unshare(CLONE_NEWNS |
  CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS)``, builds a new root on a tmpfs (a
  writable tmpfs ``/scratch`` of bounded size, read-only bind mounts of the Python installation and
  ``/usr/lib``, three device files), ``pivot_root``\\ s into it and detaches the old root, so the
  host's files are not merely hidden but absent from this mount namespace. If any of that is
  refused (no CAP_SYS_ADMIN, an unknown architecture) it reports ``unavailable`` and exits: the
  code never runs with the host's network or files.
* **init** (pid 1 of the new pid namespace, killed when the launcher dies) only reaps: when it
  exits the kernel kills every process left in the namespace, so nothing the code started can
  outlive the run.
* the **worker** (pid 2) sets the resource limits, drops to an unprivileged uid with
  ``PR_SET_NO_NEW_PRIVS`` (so it cannot mount, mknod, chroot, ptrace or regain root through a
  setuid file), installs an audit hook, and executes the code.

Messages for the parent go as JSON lines on the status pipe, whose descriptor is the second
argument (``{"kind": "refused", "detail": ...}``).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import linecache
import os
import platform
import resource
import signal
import sys
import traceback
from collections.abc import Callable

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MNT_DETACH = 0x2
PR_SET_NO_NEW_PRIVS = 38
PR_SET_PDEATHSIG = 1
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
STATUS_FD = -1  # the status pipe's descriptor, from the command line
WORK = "/scratch"
DEVICES = ("/dev/null", "/dev/zero", "/dev/urandom")
# Exit codes of the launcher when it never ran the code.
EXIT_UNAVAILABLE = 70

_libc = ctypes.CDLL(None, use_errno=True)


def report(kind: str, detail: str = "") -> None:
    """One JSON line on the status pipe; never raises (the code may have closed the fd)."""
    with contextlib.suppress(OSError):
        os.write(STATUS_FD, (json.dumps({"kind": kind, "detail": detail[:2000]}) + "\n").encode())


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    encode = lambda s: s.encode() if s is not None else None  # noqa: E731
    result = _libc.mount(encode(source), encode(target), encode(fstype), flags, encode(data))
    _check(result, f"mount {target}")


def _bind_read_only(source: str, target: str) -> None:
    _mount(source, target, None, MS_BIND)
    # A bind mount ignores MS_RDONLY on creation: the flag takes effect only on a remount.
    _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _build_root(job_dir: str, job: dict) -> None:
    """A new root with only /scratch writable and the read-only paths the interpreter needs."""
    root = os.path.join(job_dir, "root")
    if any(t == WORK or t.startswith(WORK + "/") for _, t in job["read_only"]["binds"]):
        raise OSError(f"a read-only path lies under {WORK}")
    os.mkdir(root, 0o755)
    # Our mounts must not propagate back to the host, and pivot_root needs a private parent.
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("sandbox-root", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    uid = job["uid"]
    work = root + WORK
    os.mkdir(work)
    _mount(
        "sandbox-work",
        work,
        "tmpfs",
        MS_NOSUID | MS_NODEV,
        f"size={job['limits']['disk_bytes']},mode=0700,uid={uid},gid={uid}",
    )
    for source, target in job["read_only"]["binds"]:
        os.makedirs(root + target, exist_ok=True)
        _bind_read_only(source, root + target)
    for path, target in job["read_only"]["links"]:
        os.makedirs(os.path.dirname(root + path), exist_ok=True)
        os.symlink(target, root + path)
    os.mkdir(root + "/dev")
    for device in DEVICES:
        open(root + device, "w").close()  # noqa: SIM115 (a mount point, nothing to write)
        _mount(device, root + device, None, MS_BIND)
    old = root + "/.old-root"
    os.mkdir(old)
    number = SYS_PIVOT_ROOT.get(platform.machine())
    if number is None:
        raise OSError(f"pivot_root: unknown architecture {platform.machine()}")
    _check(_libc.syscall(number, root.encode(), old.encode()), "pivot_root")
    os.chdir("/")
    _check(_libc.umount2(b"/.old-root", MNT_DETACH), "umount old root")
    os.rmdir("/.old-root")
    _mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _audit_hook(read_only: list[str]) -> Callable[[str, tuple], None]:
    """Refuse, with a report, what the kernel setup would refuse less legibly (or not at all:
    forking, which only the pids cgroup bounds). The kernel is the guarantee; code that calls
    libc through ctypes skips this hook and meets the kernel's refusal instead."""
    readable = tuple(p.rstrip("/") + "/" for p in read_only)
    forbidden = {
        "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec", "os.system",
        "subprocess.Popen", "socket.__new__", "socket.getaddrinfo", "socket.gethostbyname",
        "socket.gethostbyaddr", "socket.bind", "socket.connect", "socket.sendto", "socket.sendmsg",
    }  # fmt: skip
    writes = {
        "os.remove", "os.rename", "os.mkdir", "os.rmdir", "os.symlink", "os.link", "os.chmod",
        "os.chown", "os.truncate", "os.utime",
    }  # fmt: skip
    listings = {"os.listdir", "os.scandir", "os.chdir"}
    realpath = os.path.realpath

    def inside(path: object, allowed: tuple[str, ...]) -> bool:
        if isinstance(path, int) or path is None:
            return True  # an already open descriptor, or the cwd
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        full = realpath(os.fspath(path)) + "/"
        return full.startswith(allowed)

    def refuse(what: str) -> None:
        report("refused", what)
        raise PermissionError(f"sandbox: {what} is not allowed")

    def hook(event: str, args: tuple) -> None:
        if event in forbidden:
            refuse(event)
        elif event == "open":
            path, mode, flags = args
            writing = (mode is not None and any(c in mode for c in "wax+")) or (
                mode is None and flags is not None and flags & (os.O_WRONLY | os.O_RDWR)
            )
            allowed = (WORK + "/",) if writing else (WORK + "/", *readable)
            if not inside(path, allowed):
                refuse(f"open {path!r}")
        elif event in listings:
            if not inside(args[0], (WORK + "/", *readable)):
                refuse(f"{event} {args[0]!r}")
        elif event in writes:
            for path in args[:2] if event in ("os.rename", "os.symlink", "os.link") else args[:1]:
                if not inside(path, (WORK + "/",)):
                    refuse(f"{event} {path!r}")

    return hook


def _limit(job: dict) -> None:
    limits = job["limits"]
    memory = limits["memory_bytes"]
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    cpu = limits["cpu_seconds"]
    # The soft limit sends SIGXCPU (reported as a timeout); the hard one a second later SIGKILL.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["disk_bytes"], limits["disk_bytes"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    if not job["pids_cgroup"]:
        # Without a pids cgroup the uid's process count is the bound; it holds because the
        # worker is no longer root (root ignores RLIMIT_NPROC).
        resource.setrlimit(resource.RLIMIT_NPROC, (limits["max_processes"],) * 2)
    # A write past RLIMIT_FSIZE should fail with EFBIG, not kill the run silently.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def _drop_privileges(uid: int) -> None:
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)  # leaving uid 0 clears every capability


def _worker(job: dict) -> None:
    _limit(job)
    _drop_privileges(job["uid"])
    os.chdir(WORK)
    code = compile(job["code"], "<sandbox>", "exec")
    # Tracebacks quote the code's lines from here instead of opening a file.
    linecache.cache["<sandbox>"] = (len(job["code"]), None, job["code"].splitlines(True), "")
    sys.addaudithook(_audit_hook([target for _, target in job["read_only"]["binds"]]))
    try:
        exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
    except MemoryError:
        report("memory", "MemoryError")
        os._exit(1)
    except SystemExit as exit:
        sys.stdout.flush()
        os._exit(exit.code if isinstance(exit.code, int) else 1)
    except BaseException as error:  # noqa: BLE001 (every failure of the code is its result)
        report("exception", "".join(traceback.format_exception_only(error)).strip())
        # From the code's own frame on: printing this file's frame would open it, which the
        # hook refuses (and it is not in the new root).
        traceback.print_exception(type(error), error, error.__traceback__.tb_next)
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()
    os._exit(0)


def _die_with_parent(parent: int | None) -> None:
    """SIGKILL when the parent dies; ``parent`` (None where the parent is outside our pid
    namespace, which shows it as 0) closes the race of a parent dead before this call."""
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PDEATHSIG)")
    if parent is not None and os.getppid() != parent:
        os._exit(EXIT_UNAVAILABLE)


def _exit_like(status: int) -> None:
    """Leave with a child's wait status: its exit code, or 128 + its signal."""
    if os.WIFSIGNALED(status):
        os._exit(128 + os.WTERMSIG(status))
    os._exit(os.waitstatus_to_exitcode(status))


def _reap_until(child: int) -> int:
    while True:
        pid, status = os.wait()
        if pid == child:
            return status


def main(job_dir: str) -> None:
    with open(os.path.join(job_dir, "job.json")) as fh:
        job = json.load(fh)
    # Die with the caller: a worker killed mid-run must not leave its sandbox running.
    _die_with_parent(job["parent"])
    try:
        if job["pids_cgroup"]:
            # Join before the first fork, so that every descendant is counted and killable.
            with open(os.path.join(job["pids_cgroup"], "cgroup.procs"), "w") as fh:
                fh.write(str(os.getpid()))
        flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
        _check(_libc.unshare(flags), "unshare")
        _build_root(job_dir, job)
    except OSError as error:
        report("unavailable", f"cannot isolate the code: {error}")
        os._exit(EXIT_UNAVAILABLE)
    init = os.fork()
    if init:
        _exit_like(os.waitpid(init, 0)[1])
    # init dies with the launcher, and the kernel then kills the whole namespace.
    _die_with_parent(None)
    # pid 1 of the new namespace: reap every orphan; leave when the worker does.
    worker = os.fork()
    if worker == 0:
        _worker(job)
    _exit_like(_reap_until(worker))


if __name__ == "__main__":
    STATUS_FD = int(sys.argv[2])
    main(sys.argv[1])
