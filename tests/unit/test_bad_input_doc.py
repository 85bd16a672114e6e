# -*- coding: utf-8 -*-
"""docs/bad-input.md is what the table of the property-based suite gives (tools/bad_input_table.py)."""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, 'tools'))

import bad_input_table  # noqa: E402  pylint: disable=wrong-import-position,import-error

from tests.unit.properties.bad_inputs import TABLE  # noqa: E402  pylint: disable=wrong-import-position


def test_the_page_is_current(capsys):
    assert bad_input_table.main(['--check']) == 0, capsys.readouterr().err


def test_the_page_lists_every_row():
    with open(bad_input_table.DOC, encoding='utf-8') as handle:
        page = handle.read()
    for row in TABLE:
        assert '| `%s` | %s |' % (row.option, row.kind) in page, (row.plugin, row.option, row.kind)


def test_a_stale_page_is_caught(tmp_path, monkeypatch):
    stale = tmp_path / 'bad-input.md'
    with open(bad_input_table.DOC, encoding='utf-8') as handle:
        stale.write_text(handle.read().replace('| out of range |', '| out of bounds |', 1))
    monkeypatch.setattr(bad_input_table, 'DOC', str(stale))
    assert bad_input_table.main(['--check']) == 1
