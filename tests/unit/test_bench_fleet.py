# -*- coding: utf-8 -*-
"""The fleet benchmark's controller figure counts the whole process tree of the command, and nothing else."""

from __future__ import annotations

import sys
import time

from tests.bench import bench_fleet

# A child that burns about 0.3 s of CPU itself and starts a grandchild that burns as much: both count.
BURN = 'import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n'
TREE = BURN + 'import subprocess, sys\nsubprocess.run([sys.executable, "-c", %r], check=True)\n' % BURN


def test_the_controller_figure_is_the_cpu_of_the_command_and_its_descendants():
    result, cpu = bench_fleet.controller_run([sys.executable, '-c', TREE])
    assert result.returncode == 0, result.stderr
    assert 0.55 <= cpu < 3, cpu


def test_time_spent_waiting_is_not_cpu():
    started = time.monotonic()
    result, cpu = bench_fleet.controller_run([sys.executable, '-c', 'import time; time.sleep(0.5)'])
    assert result.returncode == 0 and time.monotonic() - started >= 0.5 and cpu < 0.4, cpu
