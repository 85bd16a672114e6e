# -*- coding: utf-8 -*-
"""Loading the lookup plugin imports neither dnspython nor netaddr: they come with the first resolution."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.bench import bench_lookup

PROBE = """
import json, sys
%s
import %s
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('dns', 'netaddr', 'aioquic', 'asyncio'))))
""" % (bench_lookup.PRELOADED, bench_lookup.PLUGIN_MODULE)


def test_loading_the_lookup_imports_no_dns_or_netaddr_code():
    result = subprocess.run([sys.executable, '-c', PROBE], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == []


def test_the_first_resolution_imports_dnspython_without_dns_over_quic():
    code = PROBE.replace('print(', 'from ansible_collections.tunnelwall.cloudflared.plugins.plugin_utils import '
                                   'edge_resolver\nedge_resolver._dnspython()\nprint(', 1)
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    loaded = json.loads(result.stdout)
    assert 'dns.asyncresolver' in loaded and 'dns.asyncquery' in loaded
    assert not [m for m in loaded if m.startswith('aioquic')], 'aioquic is installed here, but DoQ is never used'
