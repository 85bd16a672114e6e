# -*- coding: utf-8 -*-
"""make bench: every benchmark of the collection, each against what users would otherwise run.

Run with a Python that has PyPI's ``ansible`` package (community.general)
and the collection installed where ANSIBLE_COLLECTIONS_PATH points; the
Makefile does both. Prints medians and ratios; asserts nothing about time.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tests.bench import bench_firewall, bench_fleet, bench_lookup, bench_nftables, bench_probe  # noqa: E402  pylint: disable=wrong-import-position


def main():
    bench_lookup.main(int(os.environ.get('BENCH_RUNS', '7')))
    # The probe benchmark runs in the lab: root, network namespaces, a few minutes.
    if os.geteuid() == 0:
        bench_probe.main(int(os.environ.get('BENCH_PROBE_RUNS', '3')))
        bench_firewall.main(int(os.environ.get('BENCH_FIREWALL_RUNS', '2')))
        bench_nftables.main(int(os.environ.get('BENCH_NFTABLES_RUNS', '2')))
        bench_fleet.main(int(os.environ.get('BENCH_FLEET_RUNS', '2')))
    else:
        print('\n== probe, firewall, nftables and fleet: skipped, the lab needs root ==')
    return 0


if __name__ == '__main__':
    sys.exit(main())
