"""The probe child for the signal tests (run with the real interpreter, not a shim).

    probe.py LOG [--term exit:N | --term default] [--orphan]

Installs a handler for every signal r4-run relays; each one received is appended to LOG as one line
("SIGHUP") and echoed on stdout as "got SIGHUP", so a test can wait for it. With --orphan it first
makes an orphan (a grandchild whose parent exits), waits for its new parent to reap it, and prints
"orphan PARENT reaped" or "orphan PARENT zombie". Then it prints "ready PID" and waits for signals.
SIGTERM ends it: with exit status N (default 0), or by SIGTERM itself with --term default.
"""

import os
import signal
import sys
import time

RELAYED = ["SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGWINCH",
           "SIGALRM", "SIGCONT", "SIGTSTP", "SIGTTIN", "SIGTTOU"]

log_path = sys.argv[1]
term = "exit:0"
orphan = False
args = sys.argv[2:]
while args:
    a = args.pop(0)
    if a == "--term":
        term = args.pop(0)
    elif a == "--orphan":
        orphan = True
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


def wait_until(cond, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def proc_state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


if orphan:
    r, w = os.pipe()
    middle = os.fork()
    if middle == 0:
        middle_pid = os.getpid()
        if os.fork() == 0:
            # The grandchild: wait until its parent is gone and it has a new one, report, exit.
            wait_until(lambda: os.getppid() != middle_pid)
            os.write(w, f"{os.getpid()} {os.getppid()}\n".encode())
            os._exit(0)
        os._exit(0)
    os.close(w)
    os.waitpid(middle, 0)
    line = b""
    while not line.endswith(b"\n"):
        chunk = os.read(r, 64)
        if not chunk:
            break
        line += chunk
    grandchild, parent = line.decode().split()
    # Gone from /proc means reaped; state Z means nobody reaped it.
    reaped = wait_until(lambda: proc_state(grandchild) is None)
    say(f"orphan {parent} {'reaped' if reaped else 'zombie'}")

say(f"ready {os.getpid()}")
while True:
    signal.pause()
