# -*- coding: utf-8 -*-
"""The lab: managed hosts in network + mount namespaces behind a fake Cloudflare edge.

Topology (addresses for the default management range 203.0.113.0/24)::

    root ns  twlab-ctl 203.0.113.1/30, 2001:db8:ffff::1/64  (the controller: Ansible, the lookup)
       |  veth; root routes 203.0.113.128/25 and 2001:db8:ffff:1::/64 via the edge
    twlab-edge  ctl0 203.0.113.2  br0 203.0.113.129, 2001:db8:ffff:1::1  lo: every edge address
       |  DNS (tests/support/dns_server.py), TLS 7844/443 and QUIC 7844 (edge_server.py), nft faults
       |  forwards only ctl0 <-> br0; default routes are "prohibit": nothing leaves the lab
    twlab-fw1, twlab-ufw1, twlab-nft1, ...  eth0 203.0.113.130.., 2001:db8:ffff:1::130..; default routes via br0
                                 private /run; private /etc (an overlay over the machine's) with private
                                 /etc/ufw, /etc/default/ufw, /etc/firewalld, /etc/resolv.conf on top
                                 sshd on the management address; firewalld (own dbus), ufw, nftables only
                                 (ufw and firewalld covered by empty files), or nothing

Every process the lab starts is recorded (PID and start time) in the state
file as soon as it exists, and every namespace before it is created, so
``down`` can clean up after a crashed ``up``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from tests.lab import config, faults as faultlib
from tests.lab.system import (LabError, collisions, ip_batch, lab_links, lab_mounts, lab_namespaces, memory, netns_pids,
                              record, is_same, run, terminate)
from tests.support import edge_zone
from tests.support.dns_fixture import DnsServer

HOST_ENV = {'PATH': config.HOST_PATH, 'LANG': 'C.UTF-8', 'HOME': '/root', 'TERM': 'dumb'}
PROBES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'probes.py')
HOST_PYTHON = '/usr/bin/python3'
READY_TIMEOUT = 25.0


def _wait(predicate, timeout, what, interval=0.05, alive=None):
    """Poll ``predicate`` until it is true; fail with ``what`` after ``timeout`` s or when ``alive()`` turns false."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if alive is not None and not alive():
            raise LabError('%s: the process ended' % what)
        if time.monotonic() > deadline:
            raise LabError('%s: not ready after %.0f s' % (what, timeout))
        time.sleep(interval)


def _tail(path, lines=15):
    try:
        with open(path, encoding='utf-8', errors='replace') as handle:
            return ''.join(handle.readlines()[-lines:])
    except OSError:
        return ''


def _write(path, text, mode=0o644):
    with open(path, 'w', encoding='utf-8') as handle:
        handle.write(text)
    os.chmod(path, mode)


class Lab:
    """One lab, described by the state file in its directory."""

    def __init__(self, lab_dir=None, python=None, log=None):
        self.dir = os.path.abspath(lab_dir or os.environ.get('TWLAB_DIR') or config.DEFAULT_LAB_DIR)
        # Python for the edge's servers and the QUIC probe: it needs aioquic and dnspython.
        self.python = python or sys.executable
        self.log = log or (lambda message: None)
        self.state_path = os.path.join(self.dir, 'state.json')
        self.inventory = os.path.join(self.dir, 'inventory.yml')
        self.ca_dir = os.path.join(self.dir, 'ca')
        self.ssh_dir = os.path.join(self.dir, 'ssh')
        self.edge_dir = os.path.join(self.dir, 'edge')
        self.hosts_dir = os.path.join(self.dir, 'hosts')
        self._lock = threading.RLock()
        self._children = []
        self.state = self._load()

    # ------------------------------------------------------------------
    # state
    # ------------------------------------------------------------------
    def _load(self):
        try:
            with open(self.state_path, encoding='utf-8') as handle:
                return json.load(handle)
        except FileNotFoundError:
            return {}

    def _save(self):
        with self._lock:
            temporary = self.state_path + '.new'
            with open(temporary, 'w', encoding='utf-8') as handle:
                json.dump(self.state, handle, indent=1, sort_keys=True)
            os.replace(temporary, self.state_path)

    def _remember(self, key, value):
        with self._lock:
            self.state.setdefault(key, []).append(value)
            self._save()

    @property
    def is_up(self):
        return self.state.get('phase') == 'up'

    @property
    def hosts(self):
        """``{name: {'backend', 'ns', 'anchor', 'ipv4', 'ipv6'}}`` of the running lab."""
        return self.state.get('hosts', {})

    def hosts_with(self, backend):
        return sorted(name for name, host in self.hosts.items() if host['backend'] == backend)

    @property
    def ca(self):
        return os.path.join(self.ca_dir, 'ca.pem')

    @property
    def nameservers(self):
        """The lab DNS as the controller reaches it (the edge end of the controller link)."""
        return self.state.get('nameservers', [])

    @property
    def dns(self):
        """The DNS server's state and query log (tests/support/dns_fixture.DnsServer, not started by it)."""
        server = DnsServer.__new__(DnsServer)  # reuse its state/log handling without starting a local server
        server.workdir = os.path.join(self.edge_dir, 'dns')
        server.state_path = os.path.join(server.workdir, 'state.json')
        server.log_path = os.path.join(server.workdir, 'queries.jsonl')
        server.listen, server.tls, server.process = tuple(self.nameservers), (None, None), None
        server.ports = {a: 53 for a in self.nameservers}
        server.tls_ports = {a: config.DOT_PORT for a in self.nameservers}
        return server

    # ------------------------------------------------------------------
    # up
    # ------------------------------------------------------------------
    def preflight(self, hosts_spec=config.DEFAULT_HOSTS, mgmt_range=config.DEFAULT_MGMT_RANGE, bench=0):
        """Every check that needs no change: options, root, tools, leftovers, route collisions."""
        if os.geteuid() != 0:
            raise LabError('the lab needs root (network and mount namespaces): run it as root')
        hosts = config.parse_hosts(hosts_spec)
        layout = config.Layout(hosts, mgmt_range, bench)
        if self.state or lab_namespaces() or lab_links():
            raise LabError('a lab is already up or left over (%s): run `python -m tests.lab down` first'
                           % ', '.join(lab_namespaces() + lab_links() + ([self.state_path] if self.state else [])))
        clashes = collisions(layout.networks())
        if clashes:
            raise LabError('refusing to start: lab range %s collides with the machine route "%s"; '
                           'choose another --mgmt-range' % clashes[0])
        # Belt and braces: even without a colliding route, assign nothing outside the documentation ranges.
        layout.check_assignable()
        backends = {b for _name, b in hosts}
        needed = ['ip', 'nsenter', 'unshare', 'nft', '/usr/sbin/sshd', HOST_PYTHON]
        needed += ['firewalld', 'firewall-cmd', 'dbus-daemon'] if 'firewalld' in backends else []
        needed += ['ufw', 'iptables'] if 'ufw' in backends else []
        # nftables_egress checks its table in a scratch network namespace (`unshare --net`); both are needed above.
        needed += ['nft', 'unshare'] if 'nftables' in backends else []
        missing = [tool for tool in needed if not shutil.which(tool, path=config.HOST_PATH)]
        if missing:
            raise LabError('missing %s: apt-get install $(cat tests/lab/requirements-debian.txt)' % ', '.join(missing))
        check = run([self.python, '-c', 'import aioquic, dns, trustme, cryptography'], check=False)
        if check.returncode:
            raise LabError('%s lacks aioquic, dnspython, trustme or cryptography: %s' % (self.python, check.stderr.strip()))
        return layout

    def up(self, hosts_spec=config.DEFAULT_HOSTS, mgmt_range=config.DEFAULT_MGMT_RANGE, bench=0):
        """Bring the lab up; on any failure or interruption, tear down what was made and re-raise."""
        started = time.monotonic()
        layout = self.preflight(hosts_spec, mgmt_range, bench)
        for directory in (self.dir, self.ca_dir, self.ssh_dir, self.edge_dir, self.hosts_dir):
            os.makedirs(directory, exist_ok=True)
        self.state = {
            'version': 1, 'phase': 'starting', 'dir': self.dir, 'python': self.python,
            'hosts_spec': hosts_spec, 'mgmt_range': layout.mgmt_range,
            # `ip netns add` turns /run/netns into a mount point; `down` undoes that only if we caused it.
            'run_netns_created': not os.path.exists('/run/netns'),
            'namespaces': [], 'root_links': [], 'processes': [], 'hosts': {}, 'faults': [],
            'nameservers': layout.nameservers, 'host_nameservers': list(config.DNS_HOST_ADDRESSES),
            'controller': [layout.ctl_v4[0], layout.ctl_v6[0]],
            'bench_addresses': config.bench_addresses(bench),
        }
        self._save()
        try:
            self._credentials()
            self._edge_network(layout)
            with ThreadPoolExecutor(max_workers=len(layout.hosts) + 1) as pool:
                jobs = [pool.submit(self._edge_servers, layout)]
                jobs += [pool.submit(self._host_up, name, backend, layout) for name, backend in layout.hosts]
                for job in jobs:
                    job.result()
            self._write_inventory(layout)
            self.state['phase'] = 'up'
            self.state['up_seconds'] = round(time.monotonic() - started, 2)
            self._save()
        except BaseException:
            self.log('lab up failed: tearing down what was made')
            self.down()
            raise
        return self.summary()

    def _credentials(self):
        """SSH keys and a CA with the edge's certificates; kept across up/down so inventories stay valid."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        import trustme

        for name in ('id_ed25519', 'host_ed25519'):
            path = os.path.join(self.ssh_dir, name)
            if not os.path.exists(path):
                key = Ed25519PrivateKey.generate()
                private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                            serialization.NoEncryption())
                public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
                with open(os.open(path + '.new', os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 'wb') as handle:
                    handle.write(private)
                _write(path + '.pub', public.decode() + ' tunnelwall-lab\n')
                os.replace(path + '.new', path)
        names = sorted(set(config.SERVER_NAMES.values()))
        if all(os.path.exists(os.path.join(self.ca_dir, n + '.pem')) for n in names) and os.path.exists(self.ca):
            return
        authority = trustme.CA(organization_name='tunnelwall lab CA')
        authority.cert_pem.write_to_path(self.ca + '.new')
        for name in names:
            cert = authority.issue_cert(name)
            with open(os.path.join(self.ca_dir, name + '.pem'), 'wb') as handle:
                for blob in cert.cert_chain_pems:
                    handle.write(blob.bytes())
            cert.private_key_pem.write_to_path(os.path.join(self.ca_dir, name + '.key'))
        os.replace(self.ca + '.new', self.ca)

    def _add_netns(self, name):
        self._remember('namespaces', name)  # before it exists: a crash right after still gets it cleaned
        run(['ip', 'netns', 'add', name])

    def _edge_network(self, layout):
        edge = config.EDGE_NS
        self._add_netns(edge)
        lan4 = layout.lan_v4_net.split('/')[1]
        commands = [
            'link set lo up',
            'link add %s type bridge' % config.BRIDGE,
            'addr add %s/%s dev %s' % (layout.lan_v4_gw, lan4, config.BRIDGE),
            'addr add %s/64 dev %s nodad' % (layout.lan_v6_gw, config.BRIDGE),
            'link set %s up' % config.BRIDGE,
            # No way out of the lab: anything not on a lab link is refused at once with an ICMP
            # "administratively prohibited", which (unlike "host unreachable") even UDP sockets report.
            'route add prohibit default',
            'route add prohibit ::/0',
        ]
        commands += ['addr add %s/32 dev %s' % (a, config.EDGE_ADDRESS_LINK) for a in layout.edge_v4]
        commands += ['addr add %s/128 dev %s nodad' % (a, config.EDGE_ADDRESS_LINK) for a in layout.edge_v6]
        ip_batch(commands, edge)
        # Per-namespace sysctls: forwarding in the edge only; the root namespace's stay off.
        # No ICMP rate limit in the edge: every rejected packet must fail at once, not one per second.
        run(['ip', 'netns', 'exec', edge, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1',
             'net.ipv6.conf.all.forwarding=1', 'net.ipv4.icmp_ratelimit=0', 'net.ipv6.icmp.ratelimit=0'])
        self._remember('root_links', config.CTL_LINK)
        run(['ip', 'link', 'add', config.CTL_LINK, 'type', 'veth', 'peer', 'name', config.EDGE_CTL, 'netns', edge])
        root4, edge4, plen4 = layout.ctl_v4
        root6, edge6, plen6 = layout.ctl_v6
        ip_batch(['addr add %s/%d dev %s' % (edge4, plen4, config.EDGE_CTL),
                  'addr add %s/%d dev %s nodad' % (edge6, plen6, config.EDGE_CTL),
                  'link set %s up' % config.EDGE_CTL], edge)
        # The only changes to the root namespace: one link, its addresses, two routes (gone with the link).
        ip_batch(['addr add %s/%d dev %s' % (root4, plen4, config.CTL_LINK),
                  'addr add %s/%d dev %s nodad' % (root6, plen6, config.CTL_LINK),
                  'link set %s up' % config.CTL_LINK,
                  'route add %s via %s dev %s' % (layout.lan_v4_net, edge4, config.CTL_LINK),
                  'route add %s via %s dev %s' % (layout.lan_v6_net, edge6, config.CTL_LINK)])
        run(['ip', 'netns', 'exec', edge, 'nft', '-f', '-'], stdin=self._edge_policy(layout))
        run(['ip', 'netns', 'exec', edge, 'nft', '-f', '-'], stdin=faultlib.nft_script([]))

    @staticmethod
    def _edge_policy(layout):
        """The edge's own rules: forward only controller -> hosts (and replies); count what tries to leave."""
        return '\n'.join([
            'table inet %s {' % config.NFT_EDGE_TABLE,
            '  counter outside { }',
            '  counter refused { }',
            '  set lab4 { type ipv4_addr; flags interval; elements = { 198.51.100.0/24, %s } }' % layout.mgmt_range,
            '  set lab6 { type ipv6_addr; flags interval; elements = { 2001:db8::/32, fe80::/10, ff00::/8 } }',
            # A host's packet for anywhere outside the lab stops here, counted. TCP gets a reset: an ICMP
            # error comes back while connect() still holds the socket and counts only as a soft error
            # (IPv6 then waits for the 1 s SYN retransmit). The "prohibit" routes stay as a second wall.
            '  chain leave {',
            '    meta l4proto tcp reject with tcp reset',
            '    reject with icmpx type admin-prohibited',
            '  }',
            '  chain prerouting {',
            '    type filter hook prerouting priority filter; policy accept;',
            '    iifname "%s" meta nfproto ipv4 ip daddr != @lab4 counter name "outside" goto leave' % config.BRIDGE,
            '    iifname "%s" meta nfproto ipv6 ip6 daddr != @lab6 counter name "outside" goto leave' % config.BRIDGE,
            '  }',
            '  chain forward {',
            '    type filter hook forward priority filter; policy drop;',
            '    ct state established,related accept',
            '    iifname "%s" oifname "%s" accept' % (config.EDGE_CTL, config.BRIDGE),
            # Link-local chatter (router solicitations) is not an attempt to get anywhere: drop it uncounted.
            '    ip6 daddr ff00::/8 drop',
            '    ip6 saddr fe80::/10 drop',
            '    counter name "refused" reject with icmpx type admin-prohibited',
            '  }',
            '}',
        ]) + '\n'

    def _spawn(self, argv, role, host, log_path, env=None, stdout_path=None):
        """Start a long-running process, record it at once, return the Popen."""
        with open(log_path, 'ab') as log, open(stdout_path or log_path, 'ab') as out:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=log, cwd=config.REPO,
                                       env=env or HOST_ENV, start_new_session=True)
        self._children.append(process)
        self._remember('processes', record(process.pid, role, host, argv))
        return process

    def _edge_servers(self, layout):
        edge_env = dict(os.environ, PYTHONPATH=os.pathsep.join([config.REPO] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]))
        dns_dir = os.path.join(self.edge_dir, 'dns')
        os.makedirs(dns_dir, exist_ok=True)
        listen = list(config.DNS_HOST_ADDRESSES) + layout.nameservers
        server = DnsServer(dns_dir, listen=tuple(listen))  # writes the default state file and an empty log
        dot = os.path.join(self.ca_dir, config.SERVER_NAMES['dot'])
        argv = ['ip', 'netns', 'exec', config.EDGE_NS, self.python, '-m', 'tests.support.dns_server', '--port', '53',
                '--tls-port', str(config.DOT_PORT), '--tls-cert', dot + '.pem', '--tls-key', dot + '.key',
                '--state', server.state_path, '--log', server.log_path]
        for address in listen:
            argv += ['--listen', address]
        out = os.path.join(self.edge_dir, 'dns.out')
        dns = self._spawn(argv, 'dns', None, os.path.join(self.edge_dir, 'dns.err'), edge_env, out)
        argv = ['ip', 'netns', 'exec', config.EDGE_NS, self.python, '-m', 'tests.lab.edge_server',
                '--certs', self.ca_dir, '--log', os.path.join(self.edge_dir, 'connections.jsonl')]
        for address in layout.edge_v4 + layout.edge_v6:
            argv += ['--quic-listen', address]
        edge_out = os.path.join(self.edge_dir, 'edge.out')
        edge = self._spawn(argv, 'edge', None, os.path.join(self.edge_dir, 'edge.err'), edge_env, edge_out)
        for process, path, what in ((dns, out, 'DNS server'), (edge, edge_out, 'edge TLS/QUIC server')):
            try:
                _wait(lambda p=path: '"ready": true' in _tail(p), READY_TIMEOUT, what, alive=lambda p=process: p.poll() is None)
            except LabError as error:
                raise LabError('%s\n%s' % (error, _tail(path.replace('.out', '.err')))) from None

    # ------------------------------------------------------------------
    # hosts
    # ------------------------------------------------------------------
    def nsenter(self, host):
        """argv prefix that runs a command inside a host (its network, mount and UTS namespaces)."""
        try:
            anchor = self.hosts[host]['anchor']
        except KeyError:
            raise LabError('no host %r in the lab (hosts: %s)' % (host, ', '.join(sorted(self.hosts)) or 'none')) from None
        return ['nsenter', '-t', str(anchor), '-m', '-n', '-u', '--']

    def exec(self, host, argv, check=False, timeout=60, stdin=None, env=None):
        """Run a command inside a host and return the CompletedProcess (text)."""
        result = subprocess.run(self.nsenter(host) + list(argv), input=stdin, capture_output=True, text=True,
                                timeout=timeout, check=False, env=env or HOST_ENV, cwd='/')
        if check and result.returncode:
            raise LabError('%s: %s: exit %d: %s' % (host, ' '.join(argv), result.returncode, (result.stderr or result.stdout).strip()))
        return result

    def _host_files(self, name, backend, layout, hostdir):
        """Private copies of everything a firewall writes, the resolver and sshd's configuration."""
        etc = os.path.join(hostdir, 'etc')
        os.makedirs(etc, exist_ok=True)
        nameservers = ''.join('nameserver %s\n' % a for a in config.DNS_HOST_ADDRESSES)
        # Short timeouts: a "DNS timeout" fault should cost a test seconds, not the glibc default of 20.
        _write(os.path.join(etc, 'resolv.conf'), nameservers + 'options timeout:1 attempts:1\n')
        for source in ('/etc/ufw', '/etc/firewalld'):
            if os.path.isdir(source):
                shutil.copytree(source, os.path.join(etc, os.path.basename(source)), symlinks=True)
        if os.path.isdir('/etc/ufw') and os.path.isdir('/usr/share/ufw/iptables'):
            # Start from the package's pristine rules, not from whatever the machine has.
            for rules in os.listdir('/usr/share/ufw/iptables'):
                shutil.copy(os.path.join('/usr/share/ufw/iptables', rules), os.path.join(etc, 'ufw', rules))
            _write(os.path.join(etc, 'ufw', 'ufw.conf'), 'ENABLED=no\nLOGLEVEL=low\n')
        if backend == 'nftables' and os.path.exists(os.path.join(etc, 'ufw', 'ufw.conf')):
            # Without it ufw does not count as installed, as on a host that never had the package.
            os.unlink(os.path.join(etc, 'ufw', 'ufw.conf'))
        # Written from scratch: ufw's defaults, and IPT_SYSCTL pointing at an empty file so that
        # ufw never runs `sysctl -p` (some of those keys are not per-namespace).
        _write(os.path.join(hostdir, 'ufw-sysctl.conf'), '')
        _write(os.path.join(etc, 'default-ufw'), '\n'.join([
            'IPV6=yes', 'DEFAULT_INPUT_POLICY="DROP"', 'DEFAULT_OUTPUT_POLICY="ACCEPT"', 'DEFAULT_FORWARD_POLICY="DROP"',
            'DEFAULT_APPLICATION_POLICY="SKIP"', 'MANAGE_BUILTINS=no', 'IPT_SYSCTL=%s' % os.path.join(hostdir, 'ufw-sysctl.conf'),
            'IPT_MODULES=""', '']))
        _write(os.path.join(hostdir, 'firewalld.log'), '')
        os.makedirs(os.path.join(hostdir, 'ansible-tmp'), mode=0o700, exist_ok=True)
        ipv4, ipv6 = layout.host_addresses[name]
        _write(os.path.join(hostdir, 'sshd_config'), '\n'.join([
            'Port 22', 'ListenAddress %s' % ipv4, 'ListenAddress [%s]' % ipv6,
            'HostKey %s' % os.path.join(self.ssh_dir, 'host_ed25519'),
            'AuthorizedKeysFile %s' % os.path.join(self.ssh_dir, 'id_ed25519.pub'),
            'PermitRootLogin prohibit-password', 'PubkeyAuthentication yes', 'PasswordAuthentication no',
            'KbdInteractiveAuthentication no', 'UsePAM no', 'UseDNS no', 'PrintMotd no', 'PidFile none',
            'StrictModes no', 'MaxStartups 100:30:200', 'MaxSessions 50', 'AcceptEnv LANG LC_*',
            'Subsystem sftp /usr/lib/openssh/sftp-server', '']))

    @staticmethod
    def _etc_layer(hostdir, generation):
        """(upper, work) of one generation of the host's /etc overlay; reset_firewalls() starts a new generation."""
        base = os.path.join(hostdir, 'etc-layer', str(generation))
        return os.path.join(base, 'upper'), os.path.join(base, 'work')

    def _etc_mounts(self, hostdir, generation):
        """Shell lines that give the host its own /etc: an overlay over the machine's, then the firewall files on top.

        The overlay catches every write a module makes under /etc (/etc/nftables.d, /etc/systemd/system, ...)
        in the host's upper dir, so the machine's /etc never changes and a missing directory (/etc/nftables.d)
        can be created in the host without creating it on the machine.
        """
        upper, work = self._etc_layer(hostdir, generation)
        if any(c in hostdir for c in ',:\\ '):
            raise LabError('the lab directory %r holds a character overlayfs options cannot carry (, : \\ or space)' % hostdir)
        etc = os.path.join(hostdir, 'etc')
        lines = ['mount -t overlay -o lowerdir=/etc,upperdir=%s,workdir=%s twlab-etc /etc' % (upper, work),
                 'mount --bind %s /etc/resolv.conf' % os.path.join(etc, 'resolv.conf')]
        if os.path.isdir('/etc/ufw'):
            lines.append('mount --bind %s /etc/ufw' % os.path.join(etc, 'ufw'))
        if os.path.exists('/etc/default/ufw'):
            lines.append('mount --bind %s /etc/default/ufw' % os.path.join(etc, 'default-ufw'))
        if os.path.isdir('/etc/firewalld'):
            lines.append('mount --bind %s /etc/firewalld' % os.path.join(etc, 'firewalld'))
        return lines

    @staticmethod
    def _program_paths(program):
        """Every file the host's PATH could run as ``program`` (/sbin and /usr/sbin may be two copies or one)."""
        paths = set()
        for directory in config.HOST_PATH.split(':'):
            candidate = os.path.join(directory, program)
            if os.path.isfile(candidate):
                paths.add(os.path.realpath(candidate))
        return sorted(paths)

    def _hide_programs(self, hostdir, backend):
        """Shell lines that cover the programs a host kind must not have with an empty, non-executable file.

        The lab's hosts share the machine's packages; a bind mount in the host's mount namespace is how an
        nftables host comes to have neither firewalld nor ufw "installed" in its own view.
        """
        programs = config.HIDDEN_PROGRAMS.get(backend, ())
        if not programs:
            return []
        empty = os.path.join(hostdir, 'not-installed')
        _write(empty, '', mode=0o644)
        return ['mount --bind %s %s' % (empty, path) for program in programs for path in self._program_paths(program)]

    def _mount_script(self, name, hostdir, backend):
        lines = ['set -e'] + self._etc_mounts(hostdir, 0) + self._hide_programs(hostdir, backend) + [
            # /run: dbus, sshd privilege separation, ufw's lock, firewalld's state all live there.
            'mount -t tmpfs -o mode=0755,size=16m twlab-run /run',
            'mkdir -p /run/dbus /run/sshd /run/lock']
        if os.path.exists('/var/log/firewalld'):
            lines.append('mount --bind %s /var/log/firewalld' % os.path.join(hostdir, 'firewalld.log'))
        lines.append('hostname %s' % name)
        return '\n'.join(lines) + '\n'

    def _new_etc_layer(self, hostdir, generation, pristine=None):
        """Empty upper and work dirs for an /etc overlay generation, the upper seeded from ``pristine`` if given."""
        upper, work = self._etc_layer(hostdir, generation)
        os.makedirs(work)
        if pristine:
            # cp -a keeps what overlayfs itself stores: whiteouts (device nodes) and opaque-dir xattrs.
            run(['cp', '-a', pristine, upper])
        else:
            os.makedirs(upper)

    def _fresh_etc(self, name):
        """Swap the host's /etc overlay for a new generation copied from the pristine one.

        The old upper dir is never edited while it is mounted (overlayfs leaves that undefined): the old
        overlay and the bind mounts over it are detached (lazily: a daemon may hold a file) and new ones mounted.
        """
        host = self.hosts[name]
        old = host.get('etc_generation', 0)
        new = old + 1
        self._new_etc_layer(host['dir'], new, os.path.join(host['dir'], 'pristine', 'etc-layer'))
        script = ['set -e', 'umount -l /etc'] + self._etc_mounts(host['dir'], new)
        self.exec(name, ['sh', '-c', '\n'.join(script) + '\n'], check=True)
        with self._lock:
            host['etc_generation'] = new
            self._save()
        shutil.rmtree(os.path.dirname(self._etc_layer(host['dir'], old)[0]))

    def _host_up(self, name, backend, layout):
        netns = config.PREFIX + name
        hostdir = os.path.join(self.hosts_dir, name)
        if os.path.exists(hostdir):
            shutil.rmtree(hostdir)
        os.makedirs(hostdir)
        self._host_files(name, backend, layout, hostdir)
        self._new_etc_layer(hostdir, 0)
        self._add_netns(netns)
        ipv4, ipv6 = layout.host_addresses[name]
        veth = 'v-' + name
        run(['ip', '-n', config.EDGE_NS, 'link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns])
        ip_batch(['link set %s master %s' % (veth, config.BRIDGE), 'link set %s up' % veth], config.EDGE_NS)
        ip_batch(['link set lo up', 'link set eth0 up',
                  'addr add %s/%s dev eth0' % (ipv4, layout.lan_v4_net.split('/')[1]),
                  'addr add %s/64 dev eth0 nodad' % ipv6,
                  # The only way out is the edge.
                  'route add default via %s' % layout.lan_v4_gw,
                  'route add default via %s' % layout.lan_v6_gw], netns)
        # The anchor holds the host's mount and UTS namespaces for as long as the host lives.
        anchor = self._spawn(['ip', 'netns', 'exec', netns, 'unshare', '--mount', '--uts', '--propagation', 'private',
                              'sleep', 'infinity'], 'anchor', name, os.path.join(hostdir, 'anchor.log'))
        _wait(lambda: os.path.basename(os.readlink('/proc/%d/exe' % anchor.pid)) == 'sleep', 10, '%s anchor' % name,
              interval=0.01, alive=lambda: anchor.poll() is None)
        with self._lock:
            self.state['hosts'][name] = {'backend': backend, 'ns': netns, 'anchor': anchor.pid, 'ipv4': ipv4,
                                         'ipv6': ipv6, 'dir': hostdir, 'etc_generation': 0}
            self._save()
        self.exec(name, ['sh', '-c', self._mount_script(name, hostdir, backend)], check=True)
        sshd = self._spawn(self.nsenter(name) + ['/usr/sbin/sshd', '-D', '-f', os.path.join(hostdir, 'sshd_config'),
                                                 '-E', os.path.join(hostdir, 'sshd.log')],
                           'sshd', name, os.path.join(hostdir, 'sshd.err'))
        if backend == 'firewalld':
            self._firewalld_up(name, hostdir)
        elif backend == 'ufw':
            self._ufw_up(name, layout)
        elif backend == 'nftables':
            self._nftables_up(name)
        self._snapshot_firewall(hostdir)
        _wait(lambda: self._ssh_banner(ipv4), READY_TIMEOUT, '%s sshd on %s' % (name, ipv4),
              alive=lambda: sshd.poll() is None)

    @staticmethod
    def _ssh_banner(address):
        try:
            with socket.create_connection((address, 22), timeout=1) as conn:
                return conn.recv(64).startswith(b'SSH-')
        except OSError:
            return False

    def _firewalld_up(self, name, hostdir):
        anchor = self.hosts[name]['anchor']
        bus = self._spawn(self.nsenter(name) + ['dbus-daemon', '--system', '--nofork', '--nopidfile'], 'dbus', name,
                          os.path.join(hostdir, 'dbus.log'))
        _wait(lambda: os.path.exists('/proc/%d/root/run/dbus/system_bus_socket' % anchor), READY_TIMEOUT,
              '%s dbus' % name, alive=lambda: bus.poll() is None)
        daemon = self._spawn(self.nsenter(name) + ['firewalld', '--nofork', '--nopid', '--log-file',
                                                   os.path.join(hostdir, 'firewalld.log')],
                             'firewalld', name, os.path.join(hostdir, 'firewalld.err'))
        try:
            _wait(lambda: self.exec(name, ['firewall-cmd', '--state']).stdout.strip() == 'running', READY_TIMEOUT,
                  '%s firewalld' % name, interval=0.25, alive=lambda: daemon.poll() is None)
        except LabError as error:
            raise LabError('%s\n%s' % (error, _tail(os.path.join(hostdir, 'firewalld.log')))) from None

    def _ufw_up(self, name, layout):
        # ufw's default policy denies incoming: let the controller's SSH in, as a real admin would.
        for source in (layout.ctl_v4_net, layout.ctl_v6_net):
            self.exec(name, ['ufw', 'allow', 'in', 'proto', 'tcp', 'from', source, 'to', 'any', 'port', '22',
                             'comment', 'tunnelwall lab: controller ssh'], check=True)
        self.exec(name, ['ufw', '--force', 'enable'], check=True)

    def _nftables_up(self, name):
        """Nothing to start: the kernel is the firewall. Check that `nft` works and the ruleset starts empty."""
        ruleset = self.exec(name, ['nft', 'list', 'ruleset'], check=True).stdout
        if ruleset.strip():
            raise LabError('%s: a new network namespace should have an empty nft ruleset, it has:\n%s' % (name, ruleset))

    @staticmethod
    def _snapshot_firewall(hostdir):
        """Keep the host's firewall files as they are now: reset_firewalls() puts them back."""
        pristine = os.path.join(hostdir, 'pristine')
        etc = os.path.join(hostdir, 'etc')
        os.makedirs(pristine)
        for entry in ('ufw', 'firewalld', 'default-ufw'):
            source = os.path.join(etc, entry)
            if os.path.isdir(source):
                shutil.copytree(source, os.path.join(pristine, entry), symlinks=True)
            elif os.path.exists(source):
                shutil.copy2(source, os.path.join(pristine, entry))
        # What `up` itself wrote into the /etc overlay (usually nothing): every reset starts from it.
        run(['cp', '-a', Lab._etc_layer(hostdir, 0)[0], os.path.join(pristine, 'etc-layer')])

    @staticmethod
    def _restore_tree(pristine, target):
        """Make ``target``'s contents equal ``pristine``'s without replacing ``target`` (it is a mount source)."""
        for entry in os.listdir(target):
            path = os.path.join(target, entry)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        for entry in os.listdir(pristine):
            source = os.path.join(pristine, entry)
            if os.path.isdir(source) and not os.path.islink(source):
                shutil.copytree(source, os.path.join(target, entry), symlinks=True)
            else:
                shutil.copy2(source, os.path.join(target, entry), follow_symlinks=False)

    def reset_firewalls(self, hosts=None):
        """Put every (or the given) host's firewall back to how `up` left it."""
        names = sorted(hosts or self.hosts)
        with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
            for job in [pool.submit(self._reset_firewall, name) for name in names]:
                job.result()

    def _reset_firewall(self, name):
        host = self.hosts[name]
        etc, pristine = os.path.join(host['dir'], 'etc'), os.path.join(host['dir'], 'pristine')
        self._fresh_etc(name)
        if host['backend'] == 'firewalld':
            self._restore_tree(os.path.join(pristine, 'firewalld'), os.path.join(etc, 'firewalld'))
            self.exec(name, ['firewall-cmd', '--reload'], check=True)
        elif host['backend'] == 'ufw':
            # Disable first so ufw flushes its chains, then enable from the pristine files.
            self.exec(name, ['ufw', '--force', 'disable'], check=True)
            self._restore_tree(os.path.join(pristine, 'ufw'), os.path.join(etc, 'ufw'))
            # Rewrite in place: the file itself is bind-mounted over /etc/default/ufw.
            with open(os.path.join(pristine, 'default-ufw'), encoding='utf-8') as source:
                _write(os.path.join(etc, 'default-ufw'), source.read())
            self.exec(name, ['ufw', '--force', 'enable'], check=True)
        elif host['backend'] in ('nftables', 'none'):
            # Their ruleset started empty; whatever a test loaded (nftables_egress's table, a user's table) goes.
            self.exec(name, ['nft', 'flush', 'ruleset'], check=True)

    # ------------------------------------------------------------------
    # inventory
    # ------------------------------------------------------------------
    def _write_inventory(self, layout):
        import yaml

        groups = {backend: {'hosts': {}} for backend in config.BACKENDS}
        for name, backend in layout.hosts:
            ipv4, ipv6 = layout.host_addresses[name]
            # Ansible's remote temp files stay in the lab, not in the machine's /root/.ansible.
            groups[backend]['hosts'][name] = {'ansible_host': ipv4, 'ansible_remote_tmp': os.path.join(self.hosts_dir, name, 'ansible-tmp'),
                                              'lab_ipv6': ipv6, 'lab_netns': config.PREFIX + name}
        lab_vars = {
            'ansible_user': 'root',
            'ansible_ssh_private_key_file': os.path.join(self.ssh_dir, 'id_ed25519'),
            'ansible_ssh_common_args': '-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR',
            'ansible_python_interpreter': HOST_PYTHON,
            # One SSH round trip per task instead of several, as most fleets run.
            'ansible_pipelining': True,
            'tunnelwall_edge_nameservers': [layout.nameservers[0]],
            'tunnelwall_edge_trusted_ranges': list(config.TRUSTED_RANGES),
            'tunnelwall_lab_ca': self.ca,
            'tunnelwall_lab_decoy': dict(edge_zone.DECOY),
            'tunnelwall_lab_host_nameservers': list(config.DNS_HOST_ADDRESSES),
            'tunnelwall_lab_management': {'ipv4': layout.ctl_v4_net, 'ipv6': layout.ctl_v6_net},
            # The lab's own tunnelwall_lab_* variables are not the collection's: the variable check accepts them.
            'tunnelwall_known_variables': ['tunnelwall_lab_*'],
        }
        inventory = {'all': {'children': {'lab': {'vars': lab_vars, 'children': groups}}}}
        header = '# Written by `python -m tests.lab up`; removed by `down`.\n'
        _write(self.inventory + '.new', header + yaml.safe_dump(inventory, default_flow_style=False, sort_keys=False))
        os.replace(self.inventory + '.new', self.inventory)

    # ------------------------------------------------------------------
    # faults
    # ------------------------------------------------------------------
    def reload(self):
        """Re-read the state file (another process, e.g. the command line, may have changed it)."""
        with self._lock:
            self.state = self._load()
        return self.state

    def _require_up(self):
        self.reload()
        if not self.is_up:
            raise LabError('the lab is not up (no %s): run `python -m tests.lab up`' % self.state_path)

    def fault(self, *args):
        """Switch a fault on (see faults.USAGE); faults add up until reset()."""
        self._require_up()
        fault = faultlib.parse(args)
        if fault[0] in ('udp7844', 'tcp7844') and len(fault) == 3:
            if fault[2] not in self.hosts:
                raise faultlib.FaultError('%s: no host %r in the lab (%s)' % (fault[0], fault[2], ', '.join(sorted(self.hosts))))
            fault += [self.hosts[fault[2]]['ipv4'], self.hosts[fault[2]]['ipv6']]
        active = [f for f in self.state.get('faults', []) if not self._replaces(fault, f)] + [fault]
        self._apply_faults(active)
        return fault

    @staticmethod
    def _replaces(new, old):
        """A fault replaces an earlier one of the same kind and target (tcp7844 reject after tcp7844 drop)."""
        if new[0] != old[0]:
            return False
        if new[0] == 'region':
            return new[1] == old[1]
        if new[0] in ('udp7844', 'tcp7844'):  # per host: the same host, or both for every host
            return new[2:3] == old[2:3]
        if new[0] == 'dns':
            if new[1] in ('rotate', 'delay') or old[1] in ('rotate', 'delay'):
                return new[1] == old[1]
            return new[2] == old[2]
        return True

    def reset(self):
        """Every fault off, the DNS zone as at `up`, its query log empty."""
        self._require_up()
        self._apply_faults([])
        self.dns.clear_log()

    def _apply_faults(self, active):
        run(['ip', 'netns', 'exec', config.EDGE_NS, 'nft', '-f', '-'], stdin=faultlib.nft_script(active))
        rotated, answers, delay = faultlib.dns_state(active)
        records = edge_zone.edge_records('lab')
        self.dns.set(records=config.rotated_records(records) if rotated else records, faults=answers, delay_ms=delay)
        with self._lock:
            self.state['faults'] = active
            self._save()

    def counters(self):
        """Packet counters of the edge: {'outside': n, 'refused': n} (what tried to leave the lab)."""
        result = run(['ip', 'netns', 'exec', config.EDGE_NS, 'nft', '-j', 'list', 'counters', 'table', 'inet',
                      config.NFT_EDGE_TABLE])
        counters = {}
        for item in json.loads(result.stdout)['nftables']:
            if 'counter' in item:
                counters[item['counter']['name']] = item['counter']['packets']
        return counters

    # ------------------------------------------------------------------
    # probes
    # ------------------------------------------------------------------
    def query(self, name, rdtype, server=None, tcp=False, timeout=2.0):
        """Ask the lab DNS from the controller (dnspython, over the controller link); returns the response."""
        import dns.message  # pylint: disable=import-outside-toplevel
        import dns.query  # pylint: disable=import-outside-toplevel

        message = dns.message.make_query(name, rdtype)
        ask = dns.query.tcp if tcp else dns.query.udp
        return ask(message, server or self.nameservers[0], port=53, timeout=timeout)

    def controller_queries(self):
        """The DNS query log without the lab hosts' own queries: what the controller (the lookup) asked."""
        hosts = {h['ipv4'] for h in self.hosts.values()} | {h['ipv6'] for h in self.hosts.values()}
        return [query for query in self.dns.queries() if query['client'] not in hosts]

    def nft_ruleset(self, host):
        """The host's whole nft ruleset, packet counters masked (a byte-exact comparison must not depend on them)."""
        text = self.exec(host, ['nft', 'list', 'ruleset'], check=True).stdout
        return re.sub(r'counter packets \d+ bytes \d+', 'counter', text)

    def probe(self, host, *args, timeout=2.0):
        """Run tests/lab/probes.py inside a host and return its JSON result.

        QUIC needs aioquic, so it runs with the lab's Python; everything else with the host's own python3.
        """
        python = self.python if args and args[0] == 'quic' else HOST_PYTHON
        argv = [python, PROBES] + [str(a) for a in args] + ['--timeout', str(timeout)]
        if args and args[0] in ('tls', 'quic'):
            argv += ['--ca', self.ca]
        result = self.exec(host, argv, timeout=timeout + 30)
        try:
            return json.loads(result.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise LabError('probe %s on %s failed: %s' % (' '.join(map(str, args)), host, result.stderr.strip())) from None

    # ------------------------------------------------------------------
    # status, down
    # ------------------------------------------------------------------
    def lab_pids(self):
        """PIDs of every process living in a lab namespace."""
        pids = []
        for netns in lab_namespaces():
            pids += netns_pids(netns)
        return sorted(set(pids))

    def summary(self):
        rss, pss = memory(self.lab_pids())
        hosts = self.hosts
        return {'phase': self.state.get('phase', 'down'), 'dir': self.dir, 'inventory': self.inventory if self.is_up else None,
                'hosts': {n: dict(backend=h['backend'], ipv4=h['ipv4'], ipv6=h['ipv6']) for n, h in sorted(hosts.items())},
                'nameservers': self.nameservers, 'up_seconds': self.state.get('up_seconds'),
                'processes': len(self.lab_pids()), 'rss_bytes': rss, 'pss_bytes': pss,
                'faults': self.state.get('faults', [])}

    def status(self):
        """summary() plus a health check of every recorded process and namespace."""
        status = self.summary()
        status['dead_processes'] = ['%s %s (pid %d)' % (r['role'], r.get('host') or 'edge', r['pid'])
                                    for r in self.state.get('processes', []) if not is_same(r)]
        status['namespaces'] = lab_namespaces()
        status['root_links'] = lab_links()
        status['healthy'] = bool(self.is_up and not status['dead_processes']
                                 and set(self.state.get('namespaces', [])) <= set(status['namespaces']))
        return status

    def down(self):
        """Tear down everything of this lab and any `twlab-*` leftovers; safe to run twice. Returns seconds taken."""
        started = time.monotonic()
        state = self._load() or self.state or {}
        with self._lock:
            self.state = state
            if state:
                state['phase'] = 'stopping'
                self._save()
        # 1. What we started, by PID, if it is still the process we started.
        terminate(state.get('processes', []))
        # 2. Whatever else lives in a lab namespace: SSH sessions, a crashed `up`'s unrecorded children.
        strays = []
        for netns in lab_namespaces():
            strays += [record(pid, 'stray', netns) for pid in netns_pids(netns)]
        terminate([r for r in strays if r['start'] is not None])
        for child in self._children:
            if child.poll() is None:
                child.wait(timeout=5)
        self._children = []
        # 3. The root-namespace link (its addresses and routes go with it), then the namespaces.
        for link in sorted(set(state.get('root_links', []) + lab_links())):
            if link.startswith(config.PREFIX) and link in lab_links():
                run(['ip', 'link', 'del', link])
        for netns in sorted(set(state.get('namespaces', []) + lab_namespaces())):
            if netns.startswith(config.PREFIX) and netns in lab_namespaces():
                run(['ip', 'netns', 'del', netns])
        if state.get('run_netns_created') and os.path.isdir('/run/netns') and not os.listdir('/run/netns'):
            run(['umount', '/run/netns'], check=False)
            try:
                os.rmdir('/run/netns')
            except OSError:
                pass
        left = lab_namespaces() + lab_links() + ['mount %s in process %d' % (m, pid) for pid, m in lab_mounts()]
        if left:
            raise LabError('down left %s behind' % ', '.join(left))
        for path in (self.inventory, self.state_path):
            if os.path.exists(path):
                os.unlink(path)
        for path in (self.hosts_dir, self.edge_dir):
            shutil.rmtree(path, ignore_errors=True)
        self.state = {}
        return round(time.monotonic() - started, 2)


def describe(summary):
    """One line for people: what is up, how fast, how much memory."""
    if summary['phase'] != 'up':
        return 'lab: %s' % summary['phase']
    backends = {}
    for host in summary['hosts'].values():
        backends[host['backend']] = backends.get(host['backend'], 0) + 1
    return ('lab up: %d hosts (%s) in %.1f s; memory %.0f MiB RSS (%.0f MiB PSS) in %d processes; inventory %s'
            % (len(summary['hosts']), ', '.join('%s:%d' % kv for kv in sorted(backends.items())),
               summary['up_seconds'] or 0, summary['rss_bytes'] / 2 ** 20, summary['pss_bytes'] / 2 ** 20,
               summary['processes'], summary['inventory']))
