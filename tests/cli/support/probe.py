"""The probe child for the signal tests (run with the real interpreter, not a shim).

    probe.py LOG [--term exit:N | --term default] [--orphan] [--unblock SIGNAME]

Installs a handler for every signal r4-run relays; each one received is appended to LOG as one line
("SIGHUP") and echoed on stdout as "got SIGHUP", so a test can wait for it. With --orphan it first
makes an orphan (a grandchild whose parent has exited and been reaped), and prints "orphan PID
PARENT": the orphan's pid and the parent it was re-parented to; the orphan exits right after, and
the test waits for its new parent to reap it. Then it prints "ready PID" and waits for signals;
with --unblock it unblocks that signal (started blocked, so that one relayed before the handlers
were installed waits for them) after "ready". SIGTERM ends it: with exit status N (default 0), or
by SIGTERM itself with --term default.

Nothing here waits for time: each step waits for an event (a process reaped, a pipe's end).
It never waits in signal.pause(): a signal that lands after the interpreter's last check for
handlers and before pause() is entered is lost to pause(), which then sleeps until the next one.
The signals are awaited on a self-pipe instead (see `wakeup_pipe`).
"""

import os
import signal
import sys

RELAYED = ["SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGWINCH",
           "SIGALRM", "SIGCONT", "SIGTSTP", "SIGTTIN", "SIGTTOU"]

log_path = sys.argv[1]
term = "exit:0"
orphan = False
unblock = None
args = sys.argv[2:]
while args:
    a = args.pop(0)
    if a == "--term":
        term = args.pop(0)
    elif a == "--orphan":
        orphan = True
    elif a == "--unblock":
        unblock = getattr(signal, args.pop(0))
    else:
        sys.exit(f"probe: unknown argument {a}")

log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)


def say(line):
    os.write(1, (line + "\n").encode())


def handler(signum, _frame):
    name = signal.Signals(signum).name
    os.write(log, (name + "\n").encode())
    say("got " + name)
    if signum == signal.SIGTERM:
        os._exit(int(term.split(":")[1]))


for name in RELAYED:
    if name == "SIGTERM" and term == "default":
        continue
    signal.signal(getattr(signal, name), handler)


def read_line(fd):
    line = b""
    while not line.endswith(b"\n"):
        chunk = os.read(fd, 64)
        if not chunk:
            break
        line += chunk
    return line.decode()


if orphan:
    # report: the grandchild writes "PID PPID" on it. release: its end tells the grandchild that
    # its parent has been reaped, so it has been re-parented for good (the kernel re-parents a
    # process's children before its parent can reap it).
    report_r, report_w = os.pipe()
    release_r, release_w = os.pipe()
    middle = os.fork()
    if middle == 0:
        if os.fork() == 0:
            os.close(release_w)
            os.read(release_r, 1)  # EOF once the probe has reaped the middle process
            os.write(report_w, f"{os.getpid()} {os.getppid()}\n".encode())
            os._exit(0)
        os._exit(0)
    os.close(report_w)
    os.close(release_r)
    os.waitpid(middle, 0)
    os.close(release_w)
    orphan_pid, parent = read_line(report_r).split()
    os.close(report_r)
    say(f"orphan {orphan_pid} {parent}")


def wakeup_pipe():
    """A pipe Python's C-level signal handler writes a byte to for each signal, whenever it comes.

    A blocking read of it returns for every signal caught after this call (or fails with EINTR,
    and Python runs the handler and reads again): no window in which a signal is caught but the
    wait goes on. Set up before "ready", so that no signal the test sends can come before it.
    """
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    return wake_r


wake = wakeup_pipe()
say(f"ready {os.getpid()}")
if unblock is not None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [unblock])
while True:
    os.read(wake, 64)  # the handlers run as each read returns
