# -*- coding: utf-8 -*-
"""fleet_report's files: no symbolic link followed at the destination, no directory other users can write.

The action runs in this process (tests/support/module_runner.run_action) with real files.
"""

from __future__ import annotations

import json
import os
import pwd

import pytest

from tests.support.module_runner import run_action

NOBODY = pwd.getpwnam('nobody').pw_uid


def report(dest, diff=False, check_mode=False, **options):
    args = dict({'results': {'web1': None}, 'dest': str(dest), 'formats': ['json']}, **options)
    return run_action('fleet_report', args, diff=diff, check_mode=check_mode)


@pytest.fixture
def dest(tmp_path):
    directory = tmp_path / 'reports'
    directory.mkdir(mode=0o755)
    return directory


@pytest.fixture
def secret(tmp_path):
    path = tmp_path / 'secret.txt'
    path.write_text('root password: hunter2\n')
    os.chmod(path, 0o600)
    return path


@pytest.mark.parametrize('diff', [True, False])
def test_a_symlink_at_the_report_is_neither_read_nor_written(dest, secret, diff):
    link = dest / 'tunnelwall-fleet-report.json'
    link.symlink_to(secret)
    result = report(dest, diff=diff)
    assert result['failed'] is True
    assert result['msg'] == ('fleet_report: dest: %s is a symbolic link; fleet_report neither follows nor replaces one '
                             '(remove it, or choose another dest)' % link)
    assert 'hunter2' not in json.dumps(result)
    assert secret.read_text() == 'root password: hunter2\n'
    assert os.path.islink(link)


def test_a_dangling_symlink_is_not_written_through(dest, tmp_path):
    link = dest / 'tunnelwall-fleet-report.json'
    link.symlink_to(tmp_path / 'created-elsewhere')
    result = report(dest)
    assert result['failed'] is True and 'is a symbolic link' in result['msg']
    assert not (tmp_path / 'created-elsewhere').exists()


def test_a_fifo_at_the_report_does_not_hang(dest):
    os.mkfifo(str(dest / 'tunnelwall-fleet-report.json'))
    result = report(dest)
    assert result['failed'] is True and 'is not a regular file' in result['msg']


@pytest.mark.parametrize('mode', [0o777, 0o1777, 0o775, 0o757])
def test_a_directory_others_can_write_is_refused(dest, mode):
    os.chmod(dest, mode)
    for check_mode in (True, False):
        result = report(dest, check_mode=check_mode)
        assert result['failed'] is True
        assert 'is writable by other users (mode %04o)' % mode in result['msg'] and str(dest) in result['msg']
    assert os.listdir(dest) == []


@pytest.mark.root
def test_a_directory_of_another_user_is_refused(dest):
    os.chown(dest, NOBODY, NOBODY)
    result = report(dest)
    assert result['failed'] is True and 'owned by uid %d' % NOBODY in result['msg']
    assert os.listdir(dest) == []


def test_written_through_a_temporary_file_and_renamed(dest):
    first = report(dest, diff=True)
    assert first['changed'] is True and os.listdir(dest) == ['tunnelwall-fleet-report.json']
    path = dest / 'tunnelwall-fleet-report.json'
    inode = os.stat(path).st_ino
    os.chmod(path, 0o640)
    second = report(dest, results={'web1': None, 'web2': None}, diff=True)
    assert second['changed'] is True
    # A new inode (renamed into place, not rewritten in place), the file's own mode kept, no temporary left.
    assert os.stat(path).st_ino != inode
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert os.listdir(dest) == ['tunnelwall-fleet-report.json']
    assert '"web1"' in second['diff'][0]['before'] and '"web2"' in second['diff'][0]['after']


def test_a_new_directory_is_created_and_used(tmp_path):
    result = report(tmp_path / 'new' / 'reports')
    assert result['changed'] is True
    assert os.listdir(tmp_path / 'new' / 'reports') == ['tunnelwall-fleet-report.json']
