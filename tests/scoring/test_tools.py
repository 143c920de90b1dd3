"""Local tools: SymPy checks on real step claims, and a sandbox that holds against hostile code.

The sandbox tests try what model-written code could do (read and write outside its
directory, open a socket, fork without bound, loop, allocate, print without end) both through
Python, where the audit hook refuses and reports, and through libc with ctypes, which skips
the hook and meets the kernel's isolation. Wall time is bounded by the sandbox's limits; no
test measures a duration.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from scoring.tools import (
    Limits,
    ToolVerdict,
    check_arithmetic,
    check_equivalent,
    check_solution,
    run_code,
    run_python,
)
from scoring.tools.sandbox import JAIL, JOB_PREFIX

REPO = Path(__file__).resolve().parents[2]
SHORT = Limits(cpu_seconds=2, wall_seconds=20.0)
LIBC = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
SYMPY_SHORT = Limits(cpu_seconds=3, wall_seconds=30.0, memory_bytes=1024 * 2**20)


def _assert_error(verdict: ToolVerdict, kind: str) -> None:
    assert verdict.decision == "error", verdict
    assert verdict.error_kind == kind, verdict


# --- SymPy ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expected", "actual", "how"),
    [
        ("sqrt(8)", "2*sqrt(2)", "symbolic"),
        ("1/2", "0.5", "symbolic"),
        ("(x+1)^2", "x^2 + 2x + 1", "symbolic"),
        ("sin(x)^2 + cos(x)^2", "1", "symbolic"),
        ("x = 2/3", "0.6667", "numeric"),  # a boxed "param = expr" against a rounded value
        ("pi", "3.14", "numeric"),
        ("(x^2 - 1)/(x - 1)", "x + 1", "symbolic"),
    ],
)
def test_it_accepts_equal_expressions(expected: str, actual: str, how: str) -> None:
    verdict = check_equivalent(expected, actual)
    assert verdict.decision == "correct", verdict
    assert verdict.detail.startswith(how)
    assert verdict.query == f"{expected} == {actual}"
    assert '"decision": "correct"' in verdict.output


@pytest.mark.parametrize(
    ("expected", "actual"),
    [
        ("3", "3.2"),
        ("(x+1)^2", "x^2 + x + 1"),
        ("sqrt(x^2)", "x"),  # over the reals, -x where x < 0
        ("1/3", "0.5"),
        ("2^10", "1000"),
    ],
)
def test_it_rejects_different_expressions(expected: str, actual: str) -> None:
    verdict = check_equivalent(expected, actual)
    assert verdict.decision == "wrong", verdict
    assert verdict.error_kind is None


def test_it_uses_the_references_absolute_tolerance_of_a_tenth() -> None:
    assert check_equivalent("3", "3.05").decision == "correct"
    assert check_equivalent("3", "3.1").decision == "correct"  # "must be <= 0.1"
    assert check_equivalent("3", "3.15").decision == "wrong"
    assert check_equivalent("3", "3.05", tolerance=0.01).decision == "wrong"


def test_it_samples_expressions_with_symbols_at_a_tight_tolerance() -> None:
    """The absolute 0.1 is for numbers: functions differing by 0.05 everywhere differ."""
    verdict = check_equivalent("x^2", "x^2 + 0.05")
    assert verdict.decision == "wrong", verdict
    assert verdict.detail.startswith("sampled")


@pytest.mark.parametrize(
    ("equation", "claimed", "all_solutions", "decision"),
    [
        ("2x + 1 = 7", "3", True, "correct"),
        ("2x + 1 = 7", "x = 4", True, "wrong"),
        ("x^2 = 4", "x = 2 or x = -2", True, "correct"),
        ("x^2 = 4", "-2, 2", True, "correct"),
        ("x^2 = 4", "2", True, "wrong"),  # half the solutions
        ("x^2 = 4", "2", False, "correct"),
        ("x^2 - 5x + 6", "2, 3", True, "correct"),  # no "=" means "= 0"
        ("x^2 + 1 = 0", "1", True, "wrong"),  # no real solution
        ("3x = 10", "3.33", True, "correct"),  # within the reference's 0.1
    ],
)
def test_it_checks_solutions_of_equations(
    equation: str, claimed: str, all_solutions: bool, decision: str
) -> None:
    verdict = check_solution(equation, "x", claimed, all_solutions=all_solutions)
    assert verdict.decision == decision, verdict
    assert '"solutions"' in verdict.output


def test_it_lists_the_solutions_in_the_transcript() -> None:
    verdict = check_solution("x^2 = 9", "x", "3")
    assert verdict.decision == "wrong"
    assert '"solutions": ["-3", "3"]' in verdict.output
    assert verdict.query == "solve x^2 = 9 for x; claimed 3"


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('true')",
        "x.__class__",
        "().__class__.__bases__",
        "lambda: 1",
        "[x for x in y]",
        "x\x00",
        "1" + "+1" * 300,
        "",
    ],
)
def test_it_refuses_queries_that_are_not_plain_math(text: str) -> None:
    _assert_error(check_equivalent(text, "1"), "invalid")
    _assert_error(check_solution(f"x = {text}", "x", "1"), "invalid")


def test_it_never_evaluates_a_query_outside_the_parser_guards(tmp_path: Path) -> None:
    marker = tmp_path / "evaluated"
    verdict = check_equivalent(f"__import__('pathlib').Path('{marker}').touch()", "1")
    _assert_error(verdict, "invalid")
    assert not marker.exists()


def test_it_bounds_a_hostile_expression_instead_of_hanging() -> None:
    verdict = check_equivalent("9^9^9^9", "1", limits=SYMPY_SHORT)
    assert verdict.decision == "error"
    assert verdict.error_kind in ("timeout", "memory"), verdict


def test_it_reports_an_undecidable_comparison_as_an_error() -> None:
    _assert_error(check_equivalent("log(0)", "1"), "undecided")


# --- arithmetic ----------------------------------------------------------------------------


def test_it_checks_arithmetic_claims_exactly() -> None:
    wrong = check_arithmetic("So 33 * 15 = 495 students and 495 * 15 = 7455.")
    assert wrong.decision == "wrong"
    assert wrong.output == "33 * 15 = 495: true\n495 * 15 = 7455: false"
    assert check_arithmetic("Then 60 - 13 = 47.").decision == "correct"
    _assert_error(check_arithmetic("She buys more apples."), "undecided")


# --- the sandbox: what it allows -----------------------------------------------------------


def test_it_runs_a_normal_computation_and_returns_its_output() -> None:
    verdict = run_code("print(sum(i * i for i in range(10)))")
    assert verdict == ToolVerdict("python", verdict.query, "285\n", "correct", None, verdict.detail)


def test_it_compares_the_printed_value_with_the_claim() -> None:
    code = "from fractions import Fraction\nprint(Fraction(1, 3) + Fraction(1, 6))"
    assert run_code(code, expected="1/2").decision == "correct"
    assert run_code(code, expected="x = 0.5").decision == "correct"
    assert run_code(code, expected="2/3").decision == "wrong"


def test_it_lets_the_code_use_its_own_directory_and_sympy() -> None:
    code = (
        "import sympy, tempfile\n"
        "open('notes.txt', 'w').write('kept')\n"
        "with tempfile.NamedTemporaryFile('w') as fh: fh.write('x')\n"
        "print(open('notes.txt').read(), sympy.factor(sympy.Symbol('x')**2 - 1))\n"
    )
    run = run_python(code, Limits(memory_bytes=1024 * 2**20))
    assert run.error_kind is None, run
    assert run.stdout == "kept (x - 1)*(x + 1)\n"


def test_it_reports_an_exception_of_the_code() -> None:
    verdict = run_code("print(1 / 0)")
    _assert_error(verdict, "exception")
    assert "ZeroDivisionError" in verdict.detail


# --- the sandbox: what it refuses ----------------------------------------------------------


def test_it_refuses_to_read_a_file_outside_its_directory() -> None:
    hostname = Path("/etc/hostname").read_text().strip()
    verdict = run_code("print(open('/etc/hostname').read())")
    _assert_error(verdict, "refused")
    assert verdict.detail == "open '/etc/hostname'"
    assert not hostname or hostname not in verdict.output.split("[stderr]")[0]


def test_it_reports_a_refusal_even_when_the_code_catches_it() -> None:
    code = "try:\n    open('/etc/hostname')\nexcept PermissionError:\n    print('caught')"
    verdict = run_code(code)
    _assert_error(verdict, "refused")
    assert verdict.output == "caught\n"


def test_the_host_files_are_absent_even_through_libc() -> None:
    """ctypes skips the audit hook: the mount namespace is what holds."""
    code = LIBC + (
        f"for path in ('/etc/hostname', '/etc/passwd', '/proc/1/environ', {str(REPO / 'README.md')!r}):\n"
        "    print(libc.open(path.encode(), 0))\n"
        "print(sorted(os.listdir('/scratch')))\n"
    )
    run = run_python(code)
    assert run.stdout == "-1\n-1\n-1\n-1\n[]\n", run


def test_it_refuses_to_write_outside_its_directory() -> None:
    target = Path(f"/tmp/x-{uuid.uuid4().hex}")
    verdict = run_code(f"open({str(target)!r}, 'w').write('escaped')")
    _assert_error(verdict, "refused")
    assert not target.exists()


def test_writes_outside_fail_even_through_libc() -> None:
    target = Path(f"/tmp/x-{uuid.uuid4().hex}")
    beside_the_code = Path(sys.prefix, f"x-{uuid.uuid4().hex}")
    code = LIBC + (
        f"for path in ({str(target)!r}, {str(beside_the_code)!r}, '/x', '/scratch/ok'):\n"
        "    fd = libc.open(path.encode(), os.O_WRONLY | os.O_CREAT, 0o644)\n"
        "    print(fd >= 0)\n"
    )
    run = run_python(code)
    assert run.stdout == "False\nFalse\nFalse\nTrue\n", run
    assert not target.exists()
    assert not beside_the_code.exists()


@pytest.fixture
def listener():
    """A loopback TCP port where the test listens for connections that must never come."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    yield server
    server.close()


def _no_connection_arrived(server: socket.socket) -> bool:
    try:
        server.accept()
    except BlockingIOError:
        return True
    return False


def test_it_refuses_a_socket(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    verdict = run_code(f"import socket\nsocket.create_connection(('127.0.0.1', {port}))")
    _assert_error(verdict, "refused")
    assert _no_connection_arrived(listener)


def test_it_has_no_network_even_through_libc(listener: socket.socket) -> None:
    """A raw connect() to the test's loopback port fails: the namespace's lo is not the host's."""
    port = listener.getsockname()[1]
    code = LIBC + (
        "import struct\n"
        "fd = libc.socket(2, 1, 0)\n"  # AF_INET, SOCK_STREAM
        f"address = struct.pack('=H', 2) + struct.pack('!H', {port}) + bytes([127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0])\n"  # noqa: E501
        "print(fd >= 0, libc.connect(fd, address, 16), os.strerror(ctypes.get_errno()))\n"
    )
    run = run_python(code)
    assert run.error_kind is None, run
    opened, connected, _ = run.stdout.split(" ", 2)
    assert (opened, connected) == ("True", "-1"), run
    assert _no_connection_arrived(listener)


def test_it_refuses_to_fork_or_start_processes() -> None:
    _assert_error(run_code("import os\nwhile True:\n    os.fork()"), "refused")
    _assert_error(run_code("import subprocess\nsubprocess.run(['true'])"), "refused")
    _assert_error(run_code("import os\nos.system('true')"), "refused")
    verdict = run_code("import multiprocessing\nmultiprocessing.Process(target=print).start()")
    _assert_error(verdict, "refused")


def _sandbox_processes() -> dict[int, int]:
    """pid -> process group of every process running the jail for this test process (forks
    keep its command line, which names the run's job folder in this process's temporary
    folder: test processes running beside it have folders of their own)."""
    found = {}
    ours = str(Path(tempfile.gettempdir(), JOB_PREFIX)).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if str(JAIL).encode() in cmdline and ours in cmdline:
                found[int(entry.name)] = os.getpgid(int(entry.name))
        except (OSError, ProcessLookupError):
            continue
    return found


def test_a_fork_bomb_through_libc_stays_bounded_and_leaves_nothing_behind() -> None:
    limits = Limits(cpu_seconds=2, wall_seconds=8.0, max_processes=12)
    code = LIBC + "while True:\n    libc.fork()\n"
    most, groups = 0, set()
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(run_python, code, limits)
        while not future.done():
            seen = _sandbox_processes()
            most = max(most, len(seen))
            groups.update(seen.values())
        run = future.result()
    assert run.error_kind == "timeout", run
    # The pids cgroup counts the launcher, the namespace's init and every fork.
    assert most <= limits.max_processes + 2, most
    assert groups  # the sampling did see the run
    assert _sandbox_processes() == {}
    for group in groups:
        with pytest.raises(ProcessLookupError):
            os.killpg(group, 0)


def test_it_stops_an_infinite_loop_by_cpu_time() -> None:
    verdict = run_code("while True:\n    pass", limits=SHORT)
    _assert_error(verdict, "timeout")
    assert "CPU" in verdict.detail


def test_it_stops_a_sleeper_by_wall_clock_and_kills_its_group() -> None:
    verdict = run_code("import time\ntime.sleep(3600)", limits=Limits(wall_seconds=3.0))
    _assert_error(verdict, "timeout")
    assert "wall clock" in verdict.detail
    assert _sandbox_processes() == {}


def test_it_stops_a_large_allocation() -> None:
    _assert_error(run_code("block = bytearray(8 * 10**9)"), "memory")


def test_it_stops_huge_output_at_the_cap() -> None:
    limits = Limits(output_bytes=10_000)
    run = run_python("while True:\n    print('x' * 1000)", limits)
    assert run.error_kind == "output", run
    assert len(run.stdout) <= limits.output_bytes
    _assert_error(run_code("print('y' * 10**6)", limits=limits), "output")


def test_the_caller_survives_every_failure_and_runs_again() -> None:
    for code in ("while True:\n    pass", "bytearray(8 * 10**9)", "import os\nos.kill(1, 9)"):
        assert run_code(code, limits=SHORT).decision == "error"
    assert run_code("print(6 * 7)").output == "42\n"


def _drop_sys_admin() -> None:
    """Runs in the child before exec: without CAP_SYS_ADMIN in its bounding set, root's next
    program starts without it (as in a container that withholds it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, cap_sys_admin = 24, 21
    if libc.prctl(pr_capbset_drop, cap_sys_admin, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl")


def test_it_refuses_to_run_where_it_cannot_isolate_the_code(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    probe = (
        "from scoring.tools import run_code\n"
        f"verdict = run_code(\"open({str(marker)!r}, 'w')\")\n"
        "print(verdict.error_kind, verdict.detail)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=_drop_sys_admin,  # noqa: PLW1509 (single-threaded at this point)
    )
    assert out.stdout.startswith("unavailable cannot isolate the code"), out
    assert not marker.exists()


def test_it_kills_code_that_ignores_sigterm() -> None:
    code = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(3600)"
    run = run_python(code, Limits(wall_seconds=3.0))
    assert run.error_kind == "timeout"
    # The launcher passes on how the namespace's init ended: killed by SIGKILL.
    assert run.returncode == 128 + signal.SIGKILL
    assert _sandbox_processes() == {}


def test_a_killed_caller_takes_its_sandbox_with_it() -> None:
    """A worker killed mid-run (SIGKILL, no cleanup) leaves no sandbox process running."""
    probe = (
        "from scoring.tools import Limits, run_python\n"
        "run_python('import time\\ntime.sleep(3600)', Limits(wall_seconds=3600))\n"
    )
    caller = subprocess.Popen([sys.executable, "-c", probe], cwd=REPO)
    try:
        while len(running := _sandbox_processes()) < 3 and caller.poll() is None:
            pass  # until the launcher, the namespace's init and the code all run
        assert caller.poll() is None
        launcher = min(running)
        job_dir = Path((Path(f"/proc/{launcher}/cmdline").read_bytes().split(b"\0"))[-3].decode())
        cgroups = Path(f"/proc/{launcher}/cgroup").read_text().splitlines()
    finally:
        caller.kill()
        caller.wait()
    # The kernel delivers the parent-death signals asynchronously: wait for them to land.
    for _ in range(10_000):
        if not _sandbox_processes():
            break
    assert _sandbox_processes() == {}
    # What the dead caller could not clean (a later run sweeps it after a day); not litter here.
    shutil.rmtree(job_dir)
    for line in cgroups:
        _, controllers, path = line.split(":", 2)
        if path.rsplit("/", 1)[-1].startswith("stepwise-sandbox-"):
            Path("/sys/fs/cgroup", controllers or "unified", path.lstrip("/")).rmdir()
