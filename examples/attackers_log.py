#!/usr/bin/env python3
"""A reaction v1 log of attacks from many distinct addresses, heavy-tailed.

Address of rank r (1-based) matches max(1, floor(total / (r^s * H))) times
(Zipf with exponent s; H the generalised harmonic number), every third match
of an address is followed by a `ban` run, and the lines are shuffled with a
fixed seed. Addresses are drawn at random from the public IPv4 space, a share
of them IPv6 (2000::/3), so that GeoIP lookups meet many countries.

usage: attackers_log.py [--ips N] [--total T] [--s S] [--v6 SHARE] [--seed SEED] > reaction.log
Prints the log on stdout; only the standard library is used.
"""
import argparse
import ipaddress
import random
import sys


def addresses(n, v6_share, rng):
    seen = set()
    out = []
    while len(out) < n:
        if rng.random() < v6_share:
            ip = ipaddress.IPv6Address((0x2 << 125) | rng.getrandbits(125))
        else:
            ip = ipaddress.IPv4Address(rng.getrandbits(32))
            if not ip.is_global or ip.is_multicast:
                continue
        if ip in seen:
            continue
        seen.add(ip)
        out.append(str(ip))
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ips", type=int, default=100_000)
    p.add_argument("--total", type=float, default=300_000)
    p.add_argument("--s", type=float, default=1.0)
    p.add_argument("--v6", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=7)
    a = p.parse_args()
    rng = random.Random(a.seed)
    ips = addresses(a.ips, a.v6, rng)
    h = sum(1 / r**a.s for r in range(1, a.ips + 1))
    events = []
    for r, ip in enumerate(ips, start=1):
        n = max(1, int(a.total / (r**a.s * h)))
        for i in range(n):
            events.append((ip, (i + 1) % 3 == 0))
    rng.shuffle(events)
    out = sys.stdout
    out.write("2026/11/24 00:00:00 INFO  start command: run [ip46tables -w -N reaction]\n")
    out.write("2026/11/24 00:00:00 INFO  ssh: start [journalctl -n0 -fu sshd.service]\n")
    for i, (ip, ban) in enumerate(events):
        t = f"2026/11/24 {i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}"
        out.write(f"{t} INFO  ssh.failedlogin: match [{ip}]\n")
        if ban:
            out.write(f"{t} INFO  ssh.failedlogin.ban: run [ip46tables -w -A reaction -s {ip} -j DROP]\n")


if __name__ == "__main__":
    main()
