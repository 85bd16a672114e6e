# -*- coding: utf-8 -*-
"""Command line of the lab (run as root from the repository root)::

    python -m tests.lab up [--hosts firewalld:2,ufw:2,nftables:1,none:1] [--mgmt-range 203.0.113.0/24] [--bench-addresses N]
    python -m tests.lab down
    python -m tests.lab status [--json]
    python -m tests.lab fault NAME [ARGS...]     (python -m tests.lab fault --help lists them)
    python -m tests.lab reset [--firewalls]
    python -m tests.lab exec HOST -- COMMAND [ARGS...]

``--dir`` (or TWLAB_DIR) chooses the lab directory (default .build/lab).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from tests.lab import config, faults
from tests.lab.lab import HOST_ENV, Lab, describe
from tests.lab.system import LabError


def _parser():
    parser = argparse.ArgumentParser(prog='python -m tests.lab', description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--dir', help='lab directory (default: $TWLAB_DIR or %s)' % config.DEFAULT_LAB_DIR)
    sub = parser.add_subparsers(dest='command', required=True)
    up = sub.add_parser('up', help='bring the lab up')
    up.add_argument('--hosts', default=os.environ.get('TWLAB_HOSTS', config.DEFAULT_HOSTS),
                    help='BACKEND:COUNT,... with BACKEND firewalld, ufw, nftables or none (default %(default)s)')
    up.add_argument('--mgmt-range', default=config.DEFAULT_MGMT_RANGE, help='IPv4 /24 for management (default %(default)s)')
    up.add_argument('--bench-addresses', type=int, default=0, help='extra IPv6 edge addresses serving TLS and QUIC (benchmarks)')
    up.add_argument('--replace', action='store_true', help='tear down a running or left-over lab first')
    sub.add_parser('down', help='tear the lab down (also after a crashed up; safe to repeat)')
    status = sub.add_parser('status', help='what is up, health, faults, memory')
    status.add_argument('--json', action='store_true')
    fault = sub.add_parser('fault', help='switch a fault on', epilog=faults.USAGE,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    fault.add_argument('fault', nargs='+')
    reset = sub.add_parser('reset', help='switch every fault off and restore DNS')
    reset.add_argument('--firewalls', action='store_true', help="also restore every host's firewall as up left it")
    execute = sub.add_parser('exec', help='run a command inside a host')
    execute.add_argument('host')
    execute.add_argument('argv', nargs=argparse.REMAINDER, help='-- COMMAND [ARGS...]')
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    lab = Lab(args.dir, log=lambda message: print(message, file=sys.stderr))
    try:
        if args.command == 'up':
            if args.replace:
                lab.down()
            print(describe(lab.up(args.hosts, args.mgmt_range, args.bench_addresses)))
            for name, host in sorted(lab.hosts.items()):
                print('  %-6s %-9s %-16s %s' % (name, host['backend'], host['ipv4'], host['ipv6']))
            print('  DNS for the controller: %s' % ', '.join(lab.nameservers))
        elif args.command == 'down':
            print('lab down in %.1f s' % lab.down())
        elif args.command == 'status':
            status = lab.status()
            if args.json:
                print(json.dumps(status, indent=1))
            else:
                print(describe(status))
                for key in ('faults', 'dead_processes', 'namespaces'):
                    print('  %s: %s' % (key, status[key] or 'none'))
            return 0 if status['healthy'] or status['phase'] == 'down' else 1
        elif args.command == 'fault':
            print('fault on: %s' % ' '.join(lab.fault(*args.fault)))
        elif args.command == 'reset':
            lab.reset()
            if args.firewalls:
                lab.reset_firewalls()
            print('faults off%s' % (', firewalls restored' if args.firewalls else ''))
        elif args.command == 'exec':
            command = args.argv[1:] if args.argv[:1] == ['--'] else args.argv
            if not command:
                raise LabError('exec HOST -- COMMAND [ARGS...]')
            return subprocess.call(lab.nsenter(args.host) + command, env=HOST_ENV)
    except (LabError, config.ConfigError, faults.FaultError) as error:
        print('lab: %s' % error, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('lab: interrupted', file=sys.stderr)
        return 130
    except BrokenPipeError:  # `... | head`: the reader is gone, nothing left to say
        return 0
    return 0


if __name__ == '__main__':
    sys.exit(main())
