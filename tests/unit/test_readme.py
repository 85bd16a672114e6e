# -*- coding: utf-8 -*-
"""The README's role variables table is what meta/argument_specs.yml says (tools/role_variables.py)."""

from __future__ import annotations

import copy
import os
import sys

import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'tools'))

import role_variables  # noqa: E402  pylint: disable=wrong-import-position,import-error


def load():
    with open(role_variables.SPECS, encoding='utf-8') as handle:
        specs = yaml.safe_load(handle)
    with open(role_variables.README, encoding='utf-8') as handle:
        return specs, handle.read()


def test_the_readme_table_is_up_to_date():
    assert role_variables.main(['--check']) == 0, 'run: python tools/role_variables.py'


def test_every_variable_has_exactly_one_row():
    specs, readme = load()
    names = list(specs['argument_specs']['main']['options'])
    rows = [row for row in readme.splitlines() if row.startswith('| `egress_firewall_')]
    assert [row.split('`')[1] for row in rows] == names


def test_a_changed_spec_makes_the_check_fail():
    specs, readme = load()
    changed = copy.deepcopy(specs)
    changed['argument_specs']['main']['options']['egress_firewall_verify']['default'] = False
    assert role_variables.render(readme, changed) != readme
    assert role_variables.render(readme, specs) == readme
