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

from tests.bench import bench_lookup  # noqa: E402  pylint: disable=wrong-import-position


def main():
    runs = int(os.environ.get('BENCH_RUNS', '7'))
    bench_lookup.main(runs)
    return 0


if __name__ == '__main__':
    sys.exit(main())
