#!/usr/bin/env python3
"""usage: ban_writer.py LOG N JAIL [--every K] [--late L] [--logrotate CONF --state S --flag F]
                        [--sleep SECONDS] [--pause PID]

Writes N fail2ban 1.0 `Ban` lines for JAIL to LOG the way fail2ban-server does: the
file opened for append, one write per line. With --logrotate, after every K lines it
runs the real `logrotate -f -s S CONF` (and waits for it). A `create` config's
postrotate touches F, as fail2ban's own runs `fail2ban-client flushlogs`: the writer
then writes L more lines to the file it still has open (now renamed) before it
reopens LOG, like a daemon that reopens late. A `copytruncate` config needs no
reopen: the writer's O_APPEND writes land at the start of the truncated file.
With --pause PID, that process (the reader) is stopped (SIGSTOP) for the last L lines
before each rotation and continued after it, as a loaded host would leave it behind:
with copytruncate, those L lines are then only in the copy.
Prints how many lines went to each file descriptor generation.
"""
import argparse
import os
import signal
import subprocess
import sys
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("log")
    p.add_argument("n", type=int)
    p.add_argument("jail")
    p.add_argument("--every", type=int, default=0)
    p.add_argument("--late", type=int, default=0)
    p.add_argument("--logrotate")
    p.add_argument("--state")
    p.add_argument("--flag")
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--pause", type=int,
                   help="pid to SIGSTOP from L lines before each rotation until after it")
    a = p.parse_args()

    def open_log():
        return os.open(a.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    fd = open_log()
    reopen_in = None  # lines left before reopening, once postrotate has run
    rotations = 0
    for i in range(a.n):
        t = time.time()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))
        ms = int(t * 1000) % 1000
        ip = "198.51.100.%d" % (i % 250 + 1)
        line = "%s,%03d fail2ban.actions        [%d]: NOTICE  [%s] Ban %s\n" % (
            stamp, ms, os.getpid(), a.jail, ip)
        os.write(fd, line.encode())
        if reopen_in is not None and not a.pause:
            reopen_in -= 1
            if reopen_in <= 0:
                os.close(fd)
                fd = open_log()
                reopen_in = None
        if a.pause and a.every and (i + 1 + a.late) % a.every == 0 and i + 1 + a.late < a.n:
            os.kill(a.pause, signal.SIGSTOP)
        if a.logrotate and a.every and (i + 1) % a.every == 0 and i + 1 < a.n:
            subprocess.run(["logrotate", "-f", "-s", a.state, a.logrotate], check=True)
            if a.pause:
                os.kill(a.pause, signal.SIGCONT)
            rotations += 1
            if a.flag and os.path.exists(a.flag) and not a.pause:
                os.unlink(a.flag)
                reopen_in = a.late
                if a.late == 0:
                    os.close(fd)
                    fd = open_log()
                    reopen_in = None
        if a.sleep:
            time.sleep(a.sleep)
    os.close(fd)
    print("wrote %d lines, %d rotations" % (a.n, rotations))


if __name__ == "__main__":
    sys.exit(main())
