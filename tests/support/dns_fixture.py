# -*- coding: utf-8 -*-
"""Run tests/support/dns_server.py as a real process and drive it from tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from tests.support import edge_zone

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class DnsServer:
    """A DNS server process on loopback whose answers a test can change."""

    def __init__(self, workdir, listen=('127.0.0.1', '::1'), tls_cert=None, tls_key=None):
        self.workdir = workdir
        self.state_path = os.path.join(workdir, 'state.json')
        self.log_path = os.path.join(workdir, 'queries.jsonl')
        self.listen = listen
        self.tls = (tls_cert, tls_key)
        self.process = None
        self.ports = {}
        self.tls_ports = {}
        self.reset()

    def start(self):
        command = [sys.executable, '-m', 'tests.support.dns_server', '--port', '0', '--tls-port', '0',
                   '--state', self.state_path, '--log', self.log_path]
        for host in self.listen:
            command += ['--listen', host]
        if self.tls[0]:
            command += ['--tls-cert', self.tls[0], '--tls-key', self.tls[1]]
        self.process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
        ready = json.loads(self.process.stdout.readline())
        self.ports, self.tls_ports = ready['ports'], ready['tls_ports']
        return self

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    @property
    def address(self):
        return self.listen[0]

    @property
    def port(self):
        return self.ports[self.address]

    def set(self, records=None, faults=None, delay_ms=0, profile='lab', srv_port=7844, ttl=300):
        """Replace everything the server answers; it re-reads the file on the next query."""
        state = {
            'zones': list(edge_zone.ZONES),
            'records': records if records is not None else edge_zone.edge_records(profile, srv_port, ttl),
            'faults': faults or {},
            'delay_ms': delay_ms,
        }
        temporary = self.state_path + '.new'
        with open(temporary, 'w', encoding='utf-8') as handle:
            json.dump(state, handle)
        os.replace(temporary, self.state_path)
        # mtime granularity: make sure the server sees a new file.
        stamp = time.time_ns()
        os.utime(self.state_path, ns=(stamp, stamp))

    def reset(self):
        self.set()
        self.clear_log()

    def clear_log(self):
        open(self.log_path, 'w', encoding='utf-8').close()

    def queries(self):
        with open(self.log_path, encoding='utf-8') as handle:
            return [json.loads(line) for line in handle if line.strip()]
