# -*- coding: utf-8 -*-
"""Commands, processes, namespaces and the root-namespace checks of the lab.

Nothing here changes the machine: it runs commands it is given, reads
``/proc`` and ``ip`` output, and signals only processes the lab started
(verified by their start time) or that live in the lab's own namespaces.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import signal
import socket
import subprocess
import threading
import time

from tests.lab import config


class LabError(RuntimeError):
    """The lab cannot do what was asked; the message says what to do."""


def run(argv, check=True, timeout=60, stdin=None, env=None):
    """Run a command, capture its output as text; raise LabError with its stderr when it fails."""
    try:
        result = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    except subprocess.TimeoutExpired:
        raise LabError('%s: no answer in %s s' % (' '.join(argv), timeout)) from None
    if check and result.returncode:
        raise LabError('%s: exit %d: %s' % (' '.join(argv), result.returncode, (result.stderr or result.stdout).strip()))
    return result


def ip_batch(commands, netns=None):
    """Many ``ip`` commands in one process (``ip -batch``): much faster than one process each."""
    if not commands:
        return
    argv = ['ip'] + (['-n', netns] if netns else []) + ['-batch', '-']
    run(argv, stdin='\n'.join(commands) + '\n')


# ---------------------------------------------------------------------------
# processes
# ---------------------------------------------------------------------------

def start_time(pid):
    """The process's start time in clock ticks since boot, or None: with the PID, it names one process for good."""
    try:
        with open('/proc/%d/stat' % pid, encoding='utf-8', errors='replace') as handle:
            stat = handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(')') + 2:].split()
    return int(fields[19])


def proc_state(pid):
    """The one-letter state (R, S, Z, ...) or None when the PID is gone."""
    try:
        with open('/proc/%d/stat' % pid, encoding='utf-8', errors='replace') as handle:
            stat = handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat[stat.rindex(')') + 2:].split()[0]


def record(pid, role, host=None, argv=None):
    """What the state file keeps of a process the lab started."""
    return {'pid': pid, 'start': start_time(pid), 'role': role, 'host': host, 'argv': list(argv or [])[:12]}


def is_same(rec):
    """True while /proc/PID is still the very process recorded (same start time) and not a zombie."""
    return rec.get('start') is not None and start_time(rec['pid']) == rec['start'] and proc_state(rec['pid']) != 'Z'


def _gone(pid, start):
    if start_time(pid) != start:
        return True
    if proc_state(pid) == 'Z':
        try:  # our own child: reap it now; otherwise its parent (init) will
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        return True
    return False


def terminate(records, grace=3.0):
    """SIGTERM, then SIGKILL after ``grace`` seconds, every recorded process that is still the one recorded.

    Returns the records that were signalled. Never looks a process up by name.
    """
    live = [r for r in records if is_same(r)]
    for rec in live:
        try:
            os.kill(rec['pid'], signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    pending = list(live)
    while pending and time.monotonic() < deadline:
        pending = [r for r in pending if not _gone(r['pid'], r['start'])]
        if pending:
            time.sleep(0.05)
    for rec in pending:
        if is_same(rec):
            try:
                os.kill(rec['pid'], signal.SIGKILL)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 3.0
    while pending and time.monotonic() < deadline:
        pending = [r for r in pending if not _gone(r['pid'], r['start'])]
        if pending:
            time.sleep(0.05)
    if pending:
        raise LabError('processes would not end: %s' % ', '.join('%d (%s)' % (r['pid'], r['role']) for r in pending))
    return live


def memory(pids):
    """(RSS sum, PSS sum) in bytes of the given processes; PSS counts shared pages once in total."""
    rss = pss = 0
    for pid in pids:
        try:
            with open('/proc/%d/smaps_rollup' % pid, encoding='utf-8') as handle:
                for line in handle:
                    if line.startswith('Rss:'):
                        rss += int(line.split()[1]) * 1024
                    elif line.startswith('Pss:'):
                        pss += int(line.split()[1]) * 1024
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return rss, pss


# ---------------------------------------------------------------------------
# namespaces and links
# ---------------------------------------------------------------------------

def lab_namespaces():
    """Every network namespace named with the lab prefix, ours or left over."""
    result = run(['ip', 'netns', 'list'], check=False)
    names = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    return [n for n in names if n.startswith(config.PREFIX)]


def netns_pids(netns):
    """PIDs of the processes in a namespace (``ip netns pids``)."""
    result = run(['ip', 'netns', 'pids', netns], check=False)
    return [int(p) for p in result.stdout.split() if p.isdigit()]


def lab_mounts():
    """``[(pid, mount point)]`` of every mount the lab makes (source ``twlab-*``) still seen by some process.

    A host's mounts live in its own mount namespace, invisible in the machine's: only the processes'
    mountinfo shows whether a namespace (and so its overlay over /etc) survived ``down``.
    """
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/mountinfo' % entry, encoding='utf-8', errors='replace') as handle:
                lines = handle.read().splitlines()
        except OSError:  # gone, or exiting (EINVAL): its mounts are going with it
            continue
        for line in lines:
            fields = line.split(' - ', 1)[-1].split()
            if len(fields) >= 2 and fields[1].startswith(config.PREFIX):
                found.append((int(entry), line.split()[4]))
    return found


def lab_links():
    """Root-namespace links named with the lab prefix."""
    result = run(['ip', '-j', 'link', 'show'], check=False)
    try:
        links = json.loads(result.stdout or '[]')
    except ValueError:
        return []
    return [link['ifname'] for link in links if link.get('ifname', '').startswith(config.PREFIX)]


# ---------------------------------------------------------------------------
# the collision check: read-only, before anything is assigned
# ---------------------------------------------------------------------------

def machine_routes():
    """Every route of the root namespace (all tables, both families) as (network, description)."""
    routes = []
    for family in ('-4', '-6'):
        result = run(['ip', '-j', family, 'route', 'show', 'table', 'all'], check=False)
        try:
            entries = json.loads(result.stdout or '[]')
        except ValueError:
            continue
        for entry in entries:
            dst = entry.get('dst', '')
            if dst in ('default', '') or dst.startswith('fe80') or dst.startswith('ff00'):
                continue
            try:
                network = ipaddress.ip_network(dst, strict=False)
            except ValueError:
                continue
            text = ' '.join(str(entry[k]) for k in ('type', 'dst') if k in entry)
            text += ' dev %s' % entry['dev'] if 'dev' in entry else ''
            text += ' table %s' % entry['table'] if 'table' in entry else ''
            routes.append((network, text))
    return routes


def collisions(networks, routes=None):
    """Which of ``networks`` overlap a route of the machine: ``[(network, route text), ...]``."""
    routes = machine_routes() if routes is None else routes
    found = []
    for network in networks:
        network = ipaddress.ip_network(network)
        for route, text in routes:
            if route.version == network.version and route.overlaps(network):
                found.append((str(network), text))
    return found


# ---------------------------------------------------------------------------
# the root namespace's snapshot: must be identical before `up` and after `down`
# ---------------------------------------------------------------------------

WATCHED_PATHS = ('/etc/default/ufw', '/etc/ufw', '/etc/firewalld', '/etc/resolv.conf', '/var/log/firewalld',
                 '/etc/ssh', '/etc/hostname', '/etc/hosts', '/etc/nftables.d', '/etc/nftables.conf', '/etc/systemd/system')
WATCHED_SYSCTLS = ('net/ipv4/ip_forward', 'net/ipv6/conf/all/forwarding', 'net/ipv6/conf/default/forwarding')


def _tree_digest(path):
    if not os.path.lexists(path):
        return None
    digest = {}
    entries = [path] if not os.path.isdir(path) else []
    for directory, _dirs, files in os.walk(path):
        entries.extend(os.path.join(directory, f) for f in files)
    for entry in sorted(entries):
        if os.path.islink(entry):
            digest[entry] = 'link:' + os.readlink(entry)
        else:
            with open(entry, 'rb') as handle:
                stat = os.stat(entry)
                digest[entry] = '%s %o' % (hashlib.sha256(handle.read()).hexdigest(), stat.st_mode)
    return digest


def _strip_comments(text):
    # iptables-save stamps its output with the time; nothing else may differ.
    return '\n'.join(line for line in text.splitlines() if not line.startswith('#'))


def root_snapshot():
    """What the lab must never change in the root namespace, as comparable data."""
    snap = {
        'nft': run(['nft', 'list', 'ruleset'], check=False).stdout,
        'iptables': _strip_comments(run(['iptables-save'], check=False).stdout),
        'ip6tables': _strip_comments(run(['ip6tables-save'], check=False).stdout),
        'route4': run(['ip', '-4', 'route', 'show', 'table', 'all'], check=False).stdout,
        'route6': run(['ip', '-6', 'route', 'show', 'table', 'all'], check=False).stdout,
        'rules': run(['ip', 'rule', 'show'], check=False).stdout + run(['ip', '-6', 'rule', 'show'], check=False).stdout,
        'links': sorted(line.split()[0] for line in run(['ip', '-br', 'link'], check=False).stdout.splitlines() if line.strip()),
        'addresses': run(['ip', '-br', 'addr'], check=False).stdout,
        'netns': run(['ip', 'netns', 'list'], check=False).stdout,
        'files': {p: _tree_digest(p) for p in WATCHED_PATHS},
        'sysctl': {},
        'mounts': sorted(line.split(' - ')[0].split()[4] for line in open('/proc/self/mountinfo', encoding='utf-8')),
    }
    for key in WATCHED_SYSCTLS:
        with open('/proc/sys/' + key, encoding='utf-8') as handle:
            snap['sysctl'][key] = handle.read().strip()
    return snap


def snapshot_diff(before, after):
    """Human-readable differences between two snapshots (empty when identical)."""
    diffs = []
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key):
            if isinstance(before.get(key), dict):
                for sub in sorted(set(before[key]) | set(after.get(key) or {})):
                    if before[key].get(sub) != (after.get(key) or {}).get(sub):
                        diffs.append('%s %s changed' % (key, sub))
            else:
                diffs.append('%s changed:\n--- before\n%s\n--- after\n%s' % (key, before.get(key), after.get(key)))
    return diffs


# ---------------------------------------------------------------------------
# watching the root namespace's wire: proof that nothing of the lab leaks out
# ---------------------------------------------------------------------------

class PacketWatch:
    """Record (interface, destination) of every IPv4/IPv6 frame seen in THIS namespace while active.

    A raw packet socket (ETH_P_ALL) sees frames in and out of every interface
    of the namespace it is opened in, including the uplink; it changes
    nothing (no filter, no promiscuous mode). Use as a context manager, then
    ``destinations()``.
    """

    def __init__(self):
        self._socket = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        self._socket.settimeout(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.frames = []

    def _loop(self):
        while not self._stop.is_set():
            try:
                data, address = self._socket.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            offset = 14
            ethertype = data[12:14]
            if ethertype == b'\x81\x00':  # one VLAN tag
                ethertype, offset = data[16:18], 18
            if ethertype == b'\x08\x00' and len(data) >= offset + 20:
                self.frames.append((address[0], str(ipaddress.IPv4Address(data[offset + 16:offset + 20]))))
            elif ethertype == b'\x86\xdd' and len(data) >= offset + 40:
                self.frames.append((address[0], str(ipaddress.IPv6Address(data[offset + 24:offset + 40]))))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        time.sleep(0.2)  # let frames still in flight arrive
        self._stop.set()
        self._thread.join(timeout=2)
        self._socket.close()
        return False

    def destinations(self):
        """{destination address: set of interfaces it was seen on}."""
        seen = {}
        for interface, destination in self.frames:
            seen.setdefault(destination, set()).add(interface)
        return seen
