# -*- coding: utf-8 -*-
"""docs/awx-survey.json, the survey of the AWX job template for tunnelwall.cloudflared.site (docs/awx.md).

AWX must accept it (the rules of its survey_spec endpoint), and every answer it can give must be one the playbook
takes: each question sets a variable that the egress_firewall role documents in meta/argument_specs.yml, or one of
the playbook's own variables, and offers only choices that variable accepts.
"""

from __future__ import annotations

import ast
import json
import pathlib
import re

import pytest
import yaml
from ansible.module_utils.parsing.convert_bool import boolean

REPO = pathlib.Path(__file__).resolve().parents[2]
SURVEY = json.loads((REPO / 'docs' / 'awx-survey.json').read_text(encoding='utf-8'))
QUESTIONS = SURVEY['spec']
ROLE_OPTIONS = yaml.safe_load((REPO / 'roles' / 'egress_firewall' / 'meta' / 'argument_specs.yml').read_text(
    encoding='utf-8'))['argument_specs']['main']['options']

# Variables of the playbooks themselves (not of the role); tunnelwall_edge_region is the edge_endpoints lookup's.
PLAYBOOK_VARIABLES = ('tunnelwall_targets', 'tunnelwall_edge_region', 'tunnelwall_report_dir')

# What AWX's survey_spec endpoint accepts as a question's default, by question type.
AWX_DEFAULT_TYPES = {'text': str, 'textarea': str, 'password': str, 'multiplechoice': str, 'multiselect': str,
                     'integer': int, 'float': (int, float)}


def plugin_doc(path):
    """The DOCUMENTATION of a plugin file, parsed, without importing the plugin."""
    for node in ast.parse(path.read_text(encoding='utf-8')).body:
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == 'DOCUMENTATION' for t in node.targets):
            return yaml.safe_load(node.value.value)
    raise AssertionError('%s has no DOCUMENTATION' % path)


def lookup_option_for_variable(variable):
    """The edge_endpoints lookup option that the variable sets (its `vars:`), or None."""
    doc = plugin_doc(REPO / 'plugins' / 'lookup' / 'edge_endpoints.py')
    for option in doc['options'].values():
        if any(v.get('name') == variable for v in option.get('vars') or []):
            return option
    return None


def valid_values(option):
    """The values an option documents as valid: its choices, else the values its description names with V().

    A list option that also takes its items as one comma- or newline-separated string cannot declare choices
    (Ansible would check the string before it is split), so its description lists them.
    """
    if option.get('choices'):
        return list(option['choices'])
    description = option.get('description', '')
    if isinstance(description, list):
        description = ' '.join(description)
    return re.findall(r'V\(([^()]*)\)', description)


def choices(question):
    """A question's choices as a list: AWX takes a list or a newline-separated string."""
    found = question.get('choices', [])
    return [c for c in found.splitlines() if c.strip()] if isinstance(found, str) else list(found)


def default_answer(question):
    """The default as the playbook gets it when the launch form keeps it: a list for multiselect."""
    default = question.get('default', '')
    if question['type'] == 'multiselect':
        return [c for c in default.splitlines() if c.strip()] if isinstance(default, str) else list(default)
    return default


def option_of(question):
    """The documented option the question's variable is (role option or lookup option), or None."""
    variable = question['variable']
    if variable in ROLE_OPTIONS:
        return ROLE_OPTIONS[variable]
    if variable == 'tunnelwall_edge_region':
        return lookup_option_for_variable(variable)
    return None


def ids(question):
    return question['variable']


def test_awx_accepts_the_survey_spec():
    """The checks AWX's POST .../survey_spec/ makes, in the order it makes them."""
    assert isinstance(SURVEY.get('name'), str)
    assert isinstance(SURVEY.get('description'), str)
    assert isinstance(QUESTIONS, list) and QUESTIONS
    variables = [q['variable'] for q in QUESTIONS]
    assert len(variables) == len(set(variables)), 'a variable is asked twice'
    for question in QUESTIONS:
        assert isinstance(question, dict)
        for field, kind in (('type', str), ('question_name', str), ('variable', str), ('required', bool)):
            assert isinstance(question.get(field), kind), '%s: %s must be a %s' % (question.get('variable'), field, kind.__name__)
        assert question['type'] in AWX_DEFAULT_TYPES
        if question.get('default', '') != '':
            assert isinstance(question['default'], AWX_DEFAULT_TYPES[question['type']]), question['variable']
        for key in ('min', 'max'):
            assert question.get(key) is None or isinstance(question[key], int), question['variable']
        if question['type'] in ('multiplechoice', 'multiselect'):
            assert choices(question), '%s needs choices' % question['variable']
            defaults = default_answer(question)
            if question['type'] == 'multiplechoice':
                defaults = [defaults] if defaults != '' else []
            assert set(defaults) <= set(choices(question)), '%s: default not among the choices' % question['variable']


def test_the_survey_asks_what_the_site_playbook_needs():
    assert [q['variable'] for q in QUESTIONS] == [
        'tunnelwall_edge_region', 'egress_firewall_purposes', 'egress_firewall_default_deny',
        'egress_firewall_require', 'egress_firewall_backend', 'egress_firewall_dns_servers',
        'egress_firewall_allow_metadata', 'tunnelwall_targets']


def test_the_hosts_have_no_default():
    """A launch that keeps the defaults must not run on every host of the inventory: the pattern is asked for."""
    question = [q for q in QUESTIONS if q['variable'] == 'tunnelwall_targets'][0]
    assert question['required'] is True and question['default'] == '' and question['min'] >= 1


def test_the_survey_offers_every_firewall_the_role_writes():
    """A backend added to the role (nftables) is offered too: the survey's choices are exactly the option's."""
    question = [q for q in QUESTIONS if q['variable'] == 'egress_firewall_backend'][0]
    assert choices(question) == ROLE_OPTIONS['egress_firewall_backend']['choices']
    assert 'nftables' in choices(question)


@pytest.mark.parametrize('question', QUESTIONS, ids=ids)
def test_every_variable_is_documented(question):
    variable = question['variable']
    assert variable in ROLE_OPTIONS or variable in PLAYBOOK_VARIABLES, (
        '%s is neither an option of roles/egress_firewall/meta/argument_specs.yml nor a playbook variable' % variable)


@pytest.mark.parametrize('variable', [v for v in PLAYBOOK_VARIABLES if v != 'tunnelwall_edge_region'])
def test_playbook_variables_are_used_by_the_playbooks(variable):
    assert any(variable in p.read_text(encoding='utf-8') for p in (REPO / 'playbooks').glob('*.yml')), variable


def test_the_region_variable_belongs_to_the_lookup():
    assert lookup_option_for_variable('tunnelwall_edge_region') is not None


@pytest.mark.parametrize('question', [q for q in QUESTIONS if q['type'] in ('multiplechoice', 'multiselect')], ids=ids)
def test_choices_are_valid_for_the_option(question):
    option = option_of(question)
    assert option is not None, '%s offers choices, but no documented option says which are valid' % question['variable']
    offered = choices(question)
    if option.get('type') == 'bool':
        assert question['type'] == 'multiplechoice'
        assert sorted(boolean(c, strict=True) for c in offered) == [False, True], (
            '%s: offer exactly one true and one false' % question['variable'])
        return
    valid = valid_values(option)
    assert valid, '%s documents no valid values (choices, or V() in its description)' % question['variable']
    assert set(offered) <= set(valid), '%s: %s are not valid choices' % (question['variable'], sorted(set(offered) - set(valid)))
    # A list option is a multiselect (AWX gives the playbook a list); a single value is a multiplechoice.
    assert question['type'] == ('multiselect' if option.get('type') == 'list' else 'multiplechoice'), question['variable']


@pytest.mark.parametrize('question', [q for q in QUESTIONS if q['type'] in ('text', 'textarea')], ids=ids)
def test_text_answers_go_to_text_variables(question):
    """A text answer is a string: a str option, or a list option (Ansible splits a string at commas)."""
    option = option_of(question)
    assert option is None or option.get('type', 'str') in ('str', 'path', 'raw', 'list'), question['variable']
    if option and option.get('type') == 'list':
        assert 'comma-separated' in question['question_description'], question['variable']


@pytest.mark.parametrize('question', [q for q in QUESTIONS if option_of(q) and 'default' in option_of(q)], ids=ids)
def test_defaults_match_the_documented_defaults(question):
    """Keeping the survey's defaults must behave as leaving the variable out."""
    option = option_of(question)
    answer = default_answer(question)
    if option.get('type') == 'bool':
        answer = boolean(answer, strict=True)
    assert answer == option['default'], question['variable']
