# -*- coding: utf-8 -*-
"""Bad input, generated: every row of tests/unit/properties/bad_inputs.py, through the plugin's real code.

For each row hypothesis generates EXAMPLES values (deterministically, so CI
sees the same ones; TW_EXPLORE=1 draws new ones) and the row's own example is
tried as well. Each must end in a clear error naming the option, or (rows
marked may_pass) in a normalised value; never in a traceback. See
bad_inputs.py for how to add a plugin.
"""

from __future__ import annotations

import collections
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.properties.bad_inputs import PLUGINS, TABLE, options_for, problem

EXAMPLES = int(os.environ.get('TW_EXAMPLES', '25'))
TRIED = collections.Counter()


def row_id(row):
    return '%s:%s:%s' % (row.plugin, row.option, row.kind)


def attempt(row, value):
    TRIED[row.plugin.split(' ')[0]] += 1
    outcome = PLUGINS[row.plugin].run(options_for(row, value))
    found = problem(row, outcome)
    assert found is None, '%s with %r: %s' % (row_id(row), value if len(repr(value)) < 300 else repr(value)[:300], found)
    return outcome


@pytest.mark.parametrize('row', TABLE, ids=row_id)
def test_the_example(row):
    attempt(row, row.example)


@pytest.mark.parametrize('row', TABLE, ids=row_id)
@settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get('TW_EXPLORE'), database=None,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_generated(row, data):
    attempt(row, data.draw(row.values, label=row_id(row)))


def test_every_plugin_and_kind_is_covered():
    plugins = {row.plugin for row in TABLE}
    assert plugins == set(PLUGINS)
    for plugin in plugins:
        assert len([row for row in TABLE if row.plugin == plugin]) >= 8, plugin


@pytest.fixture(scope='module', autouse=True)
def report_counts():
    yield
    if TRIED and os.environ.get('TW_COUNT_FILE'):
        with open(os.environ['TW_COUNT_FILE'], 'w', encoding='utf-8') as handle:
            handle.write(''.join('%s %d\n' % item for item in sorted(TRIED.items())))
