# -*- coding: utf-8 -*-
"""The execution environment can reach every kind of host: mk/check_ee.py's definition check, on the real file."""

from __future__ import annotations

import os
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, 'mk'))

import check_ee  # noqa: E402  pylint: disable=wrong-import-position


def definition():
    with open(os.path.join(REPO, 'ee', 'execution-environment.yml'), encoding='utf-8') as handle:
        return yaml.safe_load(handle)


def test_the_ee_carries_the_windows_connection_libraries_and_an_ssh_client():
    assert check_ee.check_definition(definition()) == []
    deps = definition()['dependencies']
    assert {check_ee.requirement_name(line) for line in deps['python']} >= {'pypsrp', 'pywinrm'}
    assert 'openssh-clients' in {check_ee.requirement_name(line) for line in deps['system']}


def test_the_check_fails_an_ee_without_them():
    bare = definition()
    bare['dependencies'] = dict(bare['dependencies'], python=['pywinrm>=0.4.3'])
    del bare['dependencies']['system']
    problems = check_ee.check_definition(bare)
    assert len(problems) == 2 and 'pypsrp' in problems[0] and 'openssh-clients' in problems[1]


def test_requirement_names():
    assert check_ee.requirement_name('pypsrp>=0.8,<1.0  # x') == 'pypsrp'
    assert check_ee.requirement_name('openssh-clients [platform:rpm]') == 'openssh-clients'
