"""Run one command and report its wall time and peak RSS, from a process that stays small.

Why a launcher: on Linux a child's ``ru_maxrss`` is at least the peak RSS of the process that
spawned it (the spawning process's memory is accounted to the child until it execs), so
commands spawned straight from run.py would all report run.py's own peak. This launcher
imports almost nothing (``python3 -I -S``, about 10 MiB), so any RSS above that is the
command's own.

Run by timing.py as ``python3 -I -S launch.py REQUEST`` where REQUEST is JSON:
``{"argv", "env", "stdout", "stderr", "pipe_from", "stdin_from"}`` (all but the first four may
be null or absent). The command's standard input is /dev/null, or with ``pipe_from`` the read
end of a pipe that ``cat FILE`` writes, or with ``stdin_from`` that file itself (``< FILE``).
Prints ``{"seconds", "max_rss", "status", "feeder_status"}``: the time from spawning the
first process until both have exited (``time.perf_counter``), and the command's
``ru_maxrss`` from ``os.wait4`` in bytes.
"""

import json
import os
import sys
import time


def main() -> int:
    request = json.loads(sys.argv[1])
    argv: list[str] = request["argv"]
    env: dict[str, str] = request["env"]
    devnull = os.open(os.devnull, os.O_RDWR)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    stdout = os.open(request["stdout"], flags, 0o600) if request["stdout"] else devnull
    stderr = os.open(request["stderr"], flags, 0o600)
    dup2 = os.POSIX_SPAWN_DUP2
    started = time.perf_counter()
    feeder = None
    stdin = devnull
    if request.get("stdin_from"):
        stdin = os.open(request["stdin_from"], os.O_RDONLY)
    if request["pipe_from"]:
        read_end, write_end = os.pipe()  # not inheritable: only the dup2'ed copies are
        feeder = os.posix_spawnp(
            "cat",
            ["cat", request["pipe_from"]],
            env,
            file_actions=[(dup2, devnull, 0), (dup2, write_end, 1), (dup2, stderr, 2)],
        )
        os.close(write_end)
        stdin = read_end
    pid = os.posix_spawnp(
        argv[0], argv, env, file_actions=[(dup2, stdin, 0), (dup2, stdout, 1), (dup2, stderr, 2)]
    )
    if stdin != devnull:
        os.close(stdin)
    _, status, usage = os.wait4(pid, 0)
    feeder_status = os.waitstatus_to_exitcode(os.waitpid(feeder, 0)[1]) if feeder else 0
    elapsed = time.perf_counter() - started
    result = {
        "seconds": elapsed,
        "max_rss": usage.ru_maxrss * 1024,  # KiB on Linux
        "status": os.waitstatus_to_exitcode(status),
        "feeder_status": feeder_status,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
