"""Runs a command and reports its own peak resident memory.

    peak_memory.py REPORT PROGRAM [ARG...]

Writes "STATUS MAXRSS_KIB" to REPORT, where STATUS is the raw wait status, then exits with the
command's exit code (128+N if a signal ended it).

Why a wrapper: Linux folds the memory of the image a process replaces at exec into its ru_maxrss,
so a process started from the test binary (which can grow to hundreds of MiB while other tests
run) reports the test binary's peak, not its own. Started from this small interpreter instead, the
figure is the command's own peak, or this interpreter's size (about 10 MiB), whichever is larger.
"""

import os
import sys

report, argv = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    try:
        os.execv(argv[0], argv)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(report, "w") as f:
    f.write(f"{status} {usage.ru_maxrss}\n")
sys.exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
