# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet report: one row per host, one column per check, from edge_probe results.

Pure functions of plain data, so that they can be tested on the results
the real probe report produces; the fleet_report action plugin only reads
the registered results and writes the files.

A report is a dict: ``columns`` (only those some host probed), ``rows`` (one
per host, in the order given), ``totals``, ``protocols`` and, when given,
``plan`` (where the egress plan came from). Every cell is
``{state, text}`` with state ok (all answered), partial (some answered),
failed (none answered), skipped (not probed on that host) or unreachable
(the host has no probe result at all).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from collections.abc import Mapping

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import egress_applied, egress_contract, probe_report

REPORT_VERSION = 1
FORMATS = ('markdown', 'html', 'json')
EXTENSIONS = {'markdown': '.md', 'html': '.html', 'json': '.json'}
FAMILY_LABELS = {'ipv4': 'IPv4', 'ipv6': 'IPv6'}
# failing: no tunnel protocol works, a requirement is unmet or the probe failed; degraded: the tunnel works
# (cloudflared runs) but something the probe checked does not - QUIC blocked with HTTP/2 working, one family,
# one region, the API, DNS drift.
HOST_STATES = ('ok', 'degraded', 'failing', 'unreachable', 'drifted')
# The report lists the hosts worst first (in the order given within a state): what needs a hand comes first.
# drifted: everything answered, but the firewall's allow-list differs from a fresh plan (the edge moved).
SEVERITY = ('failing', 'unreachable', 'degraded', 'drifted', 'ok')
SETTING_KEYS = ('protocol', 'edge_ip_version')
TITLE = 'Cloudflare Tunnel egress: fleet report'

# (id prefix, label, purpose, checks in order of preference). A column counts the first of its
# checks that the host probed: the api and update hosts get a TCP connect and then HTTPS on the
# same connection, and HTTPS is what proves the service; TCP alone counts when only it was probed.
CHECK_COLUMNS = (
    ('tcp', 'TCP %d' % egress_contract.TUNNEL_PORT, 'tunnel', ('tcp',)),
    ('tls', 'TLS %d' % egress_contract.TUNNEL_PORT, 'tunnel', ('tls',)),
    ('quic', 'QUIC %d' % egress_contract.TUNNEL_PORT, 'tunnel', ('quic',)),
    ('api', 'api %d' % egress_contract.HTTPS_PORT, 'api', ('https', 'tcp')),
    ('update', 'update %d' % egress_contract.HTTPS_PORT, 'update', ('https', 'tcp')),
)
COLUMNS = [{'id': 'dns', 'label': 'DNS', 'family': None, 'purpose': None, 'checks': ()}] + [
    {'id': '%s_%s' % (prefix, family), 'label': label, 'family': family, 'purpose': purpose, 'checks': checks}
    for family in egress_contract.FAMILIES for prefix, label, purpose, checks in CHECK_COLUMNS]

# cloudflared's origins: the ``origins`` rows of edge_probe or of a firewall module's verification; a
# row's state is reachable, refused, unreachable (the same before the change), blocked or not checked. Shown only
# when some host has them, after DNS.
ORIGINS_COLUMN = {'id': 'origins', 'label': 'origins', 'family': None, 'purpose': 'origin', 'checks': ()}

# DNS findings that mean the host cannot resolve at all or in part; the others are drift
# between the plan (resolved on the controller) and what the host itself sees.
DNS_FAILURES = ('no_resolver', 'unresolvable', 'txt_blocked')
# Every time stamp a report holds (generated_at, the plan's resolved_at): see same_content().
TIMESTAMP = re.compile(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?')


def _items(value):
    """The dicts of a list in a registered result; anything else (a hand-made or damaged result) counts as none."""
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _count(value):
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _cell(state, text=''):
    return {'state': state, 'text': text}


def _count_cell(ok, total):
    if not total:
        return _cell('skipped')
    return _cell('ok' if ok == total else 'partial' if ok else 'failed', '%d/%d' % (ok, total))


def _check_cell(column, summary, results):
    """The cell of one probe column, from the summary's counts and the failed results' error kinds."""
    for check in column['checks']:
        groups = [g for g in summary if (g.get('purpose'), g.get('check'), g.get('family'))
                  == (column['purpose'], check, column['family'])]
        if not groups:
            continue
        cell = _count_cell(sum(_count(g.get('ok')) for g in groups), sum(_count(g.get('total')) for g in groups))
        errors = {}
        for result in results:
            if (result.get('purpose'), result.get('check'), result.get('family')) == \
                    (column['purpose'], check, column['family']) and not result.get('ok'):
                kind = result.get('error_kind') or 'error'
                errors[kind] = errors.get(kind, 0) + 1
        if errors:
            cell['errors'] = dict(sorted(errors.items()))
        return cell
    return _cell('skipped')


def _dns_cell(dns):
    """DNS: how many of the host's questions were answered; drift from the plan makes it partial."""
    answers = _items(dns.get('answers'))
    findings = _items(dns.get('findings'))
    if not answers and not findings:
        return _cell('skipped')
    # A TXT record cloudflared asks for may not exist (the probe marks it absent): an answer all the same.
    ok = sum(1 for answer in answers if answer.get('ok') or answer.get('state') == 'absent')
    kinds = [finding.get('kind') for finding in findings]
    if 'no_resolver' in kinds:
        return _cell('failed', 'no resolver')
    cell = _count_cell(ok, len(answers))
    drift = sum(1 for kind in kinds if kind not in DNS_FAILURES)
    if drift:
        # The host resolves differently from the plan the firewall is built from: worth a look.
        cell['state'] = 'failed' if cell['state'] == 'failed' else 'partial'
        cell['text'] = ('%s, ' % cell['text'] if cell['text'] else '') + '%d drift' % drift
    return cell


def _origins_cell(origins):
    """origins: ok when every checked address is reachable, partial when some were refused (the origin down) or are
    blocked, failed when all checked are blocked; the blocked ones listed in the cell's ``blocked``."""
    rows = _items(origins)
    checked = [row for row in rows if row.get('checked')]
    if not checked:
        return _cell('skipped', 'not checked' if rows else '')
    blocked = [row for row in checked if row.get('state') == 'blocked' or row.get('ok') is False]
    refused = [row for row in checked if row.get('state') in ('refused', 'unreachable') and row not in blocked]
    reachable = len(checked) - len(blocked) - len(refused)
    text = '%d/%d reachable' % (reachable, len(checked))
    text += ''.join(', %d %s' % (len(group), word) for group, word in ((refused, 'refused'), (blocked, 'blocked'))
                    if group)
    state = 'ok' if reachable == len(checked) else 'failed' if len(blocked) == len(checked) else 'partial'
    cell = _cell(state, text)
    if blocked:
        cell['blocked'] = [{'address': str(row.get('address')), 'port': row.get('port'),
                            'protocol': str(row.get('protocol') or 'tcp'), 'host': str(row.get('host')),
                            'source': str(row.get('source'))} for row in blocked]
    return cell


def _origins_to_open(cell):
    """What to open for the blocked origins, one entry per protocol and port (purpose origin)."""
    entries = {}
    for item in cell.get('blocked', []):
        entry = entries.setdefault((item['protocol'], item['port']), {
            'purpose': 'origin', 'protocol': item['protocol'], 'port': item['port'], 'destinations': []})
        if item['address'] not in entry['destinations']:
            entry['destinations'].append(item['address'])
    return list(entries.values())


def _problem_line(column, cell):
    label = column_title(column)
    if column['id'] == 'dns':
        return None  # the findings themselves say what is wrong
    if column['id'] == 'origins':
        return 'origins: %s%s' % (cell['text'], ''.join(
            '; blocked %s port %s (%s, %s)' % (b['address'], b['port'], b['host'], b['source'])
            for b in cell.get('blocked', [])))
    line = '%s: %s answered' % (label, cell['text'])
    if cell.get('errors'):
        line += ', ' + ', '.join('%d %s' % (count, kind) for kind, count in cell['errors'].items())
    return line


def column_title(column):
    """``QUIC 7844 IPv4``; ``DNS``."""
    return column['label'] + (' ' + FAMILY_LABELS[column['family']] if column['family'] else '')


def _no_result_message(result):
    if not isinstance(result, Mapping):
        return 'no probe result: the host was not probed (unreachable before the probe, or not in the play)'
    message = str(result.get('msg') or '').strip()
    if result.get('unreachable'):
        return 'unreachable: %s' % (message or 'no connection')
    if result.get('skipped'):
        return 'not probed: the probe task was skipped%s' % (
            ' (%s)' % result['skip_reason'] if result.get('skip_reason') else '')
    if result.get('failed'):
        return 'the probe failed before probing: %s' % (message or 'no message')
    return 'not an edge_probe result (it has no summary)'


PLAN_KEYS = ('source', 'resolved_at', 'region', 'generation')
# The comparison runs on the host too (egress_firewall_info's plan option): one function, in module_utils.
plan_drift = egress_applied.plan_drift


def plan_summary(plan):
    """Where a plan came from: its source, resolved_at, region and generation; None without a plan."""
    return dict((key, plan.get(key)) for key in PLAN_KEYS) if isinstance(plan, Mapping) else None


def _unreachable_row(hostname, result, plan=None, drift=None):
    return {'host': hostname, 'state': 'unreachable', 'message': _no_result_message(result), 'protocol': None,
            'reason': None, 'cells': dict((column['id'], _cell('unreachable')) for column in COLUMNS),
            'failing': [], 'problems': [], 'to_open': [], 'unmet': [], 'settings': None, 'plan': plan_summary(plan),
            'why': _no_result_message(result), 'drift': drift, 'firewall': None}


def _fresh_origin_rules(fresh):
    """The origin rules of egress_firewall_info's ``origins`` (resolved on the host), or None: not compared."""
    rules = fresh.get('rules') if isinstance(fresh, Mapping) else None
    return rules if isinstance(rules, list) else None


def host_row(hostname, probe_result, plan=None, applied=None, fresh_origins=None):
    """One host's row, from its registered edge_probe (or win_edge_probe) result.

    A result without a summary (host unreachable, probe skipped or failed
    before it probed, or no result at all) is an ``unreachable`` row with
    the reason in ``message``; a probe that failed because a requirement
    was not met still has its results and is an ordinary ``failing`` row.
    ``plan`` is the host's own egress plan (hosts of one fleet may have
    different regions), summarised in the row's ``plan``; ``applied`` what
    its firewall allows now (egress_firewall_info's ``applied``), compared
    with the plan in the row's ``drift`` - an ok host that drifted is
    ``drifted``. ``fresh_origins`` (egress_firewall_info's ``origins``:
    cloudflared's origins resolved afresh on the host) adds purpose
    ``origin`` to the drift; its ``error`` (a config or name that cannot
    be used now) is a problem of the row.
    """
    drift = plan_drift(applied, plan, _fresh_origin_rules(fresh_origins))
    if not isinstance(probe_result, Mapping) or probe_result.get('unreachable') \
            or not isinstance(probe_result.get('summary'), list):
        return _unreachable_row(hostname, probe_result, plan, drift)
    summary = _items(probe_result['summary'])
    results = _items(probe_result.get('results'))
    dns = probe_result.get('dns') if isinstance(probe_result.get('dns'), Mapping) else {}
    unmet = probe_result.get('unmet_requirements')
    unmet = [str(message) for message in unmet] if isinstance(unmet, list) else []

    cells, failing, problems = {}, [], []
    for column in COLUMNS:
        cell = _dns_cell(dns) if column['id'] == 'dns' else _check_cell(column, summary, results)
        cells[column['id']] = cell
        if cell['state'] in ('failed', 'partial'):
            failing.append(column['id'])
            line = _problem_line(column, cell)
            if line:
                problems.append(line)
    if probe_result.get('origins') is not None:
        cell = cells['origins'] = _origins_cell(probe_result['origins'])
        if cell['state'] in ('failed', 'partial'):
            failing.append('origins')
            problems.append(_problem_line(ORIGINS_COLUMN, cell))
    problems.extend('DNS: %s' % finding.get('message') for finding in _items(dns.get('findings')))

    # What to open comes as data from the probe (probe_report.destinations_to_open), for every failed group.
    to_open = [_open_entry(entry) for entry in _items(probe_result.get('to_open'))]
    to_open += _origins_to_open(cells.get('origins', {}))
    what_failed = _what_failed(unmet, probe_result.get('unmet_detail'))
    for line in what_failed:
        # A DNS requirement repeats the findings listed above, an origins one the origins cell's problem line.
        if not line.startswith(('dns: ', 'origins: ')):
            problems.append('requirement not met: %s' % line)
    protocol = probe_result.get('recommended_protocol')
    protocol = protocol if isinstance(protocol, str) else None  # a damaged result: no recommendation
    if probe_result.get('failed') and not unmet:
        # The probe's own error, or what the site playbook adds when the change failed for another reason
        # (no firewall found, a module error): the message names its source.
        problems.append(probe_result.get('msg') or 'the probe failed without a message')
    tunnel_probed = any(r.get('purpose') == 'tunnel' for r in results)
    if unmet or probe_result.get('failed') or (protocol == 'none' and tunnel_probed):
        state = 'failing'
    else:
        state = 'degraded' if failing or problems else 'ok'
    if drift and (drift['new'] or drift['gone']):
        problems.append('drift: the firewall allows %s against a fresh plan (%s new, %s gone; %s); run the site '
                        'playbook to follow the edge'
                        % (drift['text'], drift['new'], drift['gone'], ', '.join(drift['purposes'])))
        state = 'drifted' if state == 'ok' else state
    origins_error = fresh_origins.get('error') if isinstance(fresh_origins, Mapping) else None
    if origins_error:
        problems.append('drift: origins not compared - %s (the next site run fails the same way)' % origins_error)
        state = 'degraded' if state in ('ok', 'drifted') else state
    return {'host': hostname, 'state': state, 'message': None, 'protocol': protocol, 'why': _why(state, problems, what_failed),
            'reason': str(probe_result.get('recommendation_reason') or '') or None, 'cells': cells, 'failing': failing,
            'problems': problems, 'to_open': to_open, 'unmet': unmet, 'settings': _settings(probe_result),
            'plan': plan_summary(plan), 'drift': drift, 'firewall': firewall_cell(probe_result)}


# What the site playbook's role did to the host's firewall (the probe result's firewall_change), as a cell.
FIREWALL_CHANGES = {'changed': 'ok', 'unchanged': 'ok', 'would change': 'ok', 'failed': 'failed', 'rolled back': 'failed'}


def firewall_cell(probe_result):
    """The Firewall cell: the change the role made (ok) or that failed (failed); None where no change was tried."""
    change = probe_result.get('firewall_change') if isinstance(probe_result, Mapping) else None
    if change not in FIREWALL_CHANGES:
        return None
    return _cell(FIREWALL_CHANGES[change], change)


def _what_failed(unmet, details):
    """Each unmet requirement without what to open (to_open shows that as data): from the probe's records
    (unmet_detail) where one renders to the message, else the message as it is (the origins check's own lines)."""
    failed = dict((probe_report.unmet_message(record), '%s: %s' % (record['requirement'], record['failed']))
                  for record in _items(details) if {'requirement', 'failed'} <= set(record)
                  and isinstance(record.get('to_open'), list) and all(isinstance(d, str) for d in record['to_open']))
    return [failed.get(message, message) for message in unmet]


def _why(state, problems, what_failed):
    """The row's reason in one line: what failed first (the change's error comes last in problems, so first here)."""
    if state == 'ok':
        return ''
    if problems and not what_failed and state == 'failing':
        return problems[-1]  # the probe's or the change's own error
    return ('requirement not met: %s' % what_failed[0]) if what_failed else (problems[0] if problems else '')


def _open_entry(entry):
    return {'purpose': str(entry.get('purpose')), 'protocol': str(entry.get('protocol')), 'port': entry.get('port'),
            'destinations': [str(d) for d in entry.get('destinations') or []]}


def _settings(probe_result):
    """The probe's recommended cloudflared settings, ``{key: {option, value, reason}}``, or None."""
    settings = probe_result.get('recommended_settings')
    if not isinstance(settings, Mapping):
        return None
    return dict((key, {'option': str(settings[key].get('option')), 'value': settings[key].get('value'),
                       'reason': str(settings[key].get('reason') or '')})
                for key in SETTING_KEYS if isinstance(settings.get(key), Mapping))


def settings_line(settings):
    """``--protocol quic --edge-ip-version auto``; '' when there is nothing to set."""
    return ' '.join('%s %s' % (s['option'], s['value']) for s in (settings or {}).values() if s.get('value'))


def fleet_report(rows, generated_at, plan=None):
    """The report of a fleet: the columns some host probed, the rows, the totals, where the plan came from."""
    rows = sorted(rows, key=lambda row: SEVERITY.index(row['state']))
    shown = [c for c in COLUMNS[:1] + [ORIGINS_COLUMN] + COLUMNS[1:]
             if any(row['cells'].get(c['id'], {}).get('state') not in (None, 'skipped', 'unreachable') for row in rows)]
    totals = {'hosts': len(rows)}
    totals.update((state, sum(1 for row in rows if row['state'] == state)) for state in HOST_STATES)
    protocols = {}
    for row in rows:
        if row['protocol']:
            protocols[row['protocol']] = protocols.get(row['protocol'], 0) + 1
    report = {
        'version': REPORT_VERSION,
        'title': TITLE,
        'generated_at': generated_at,
        'plan': None,
        'columns': [{'id': c['id'], 'label': c['label'], 'family': c['family']} for c in shown],
        # Only the shown columns' cells: an IPv4-only fleet has no IPv6 column in any row.
        'rows': [dict(row, cells=dict((c['id'], row['cells'].get(c['id'], _cell('skipped'))) for c in shown))
                 for row in rows],
        'totals': totals,
        'protocols': dict(sorted(protocols.items())),
    }
    if plan:
        report['plan'] = plan_summary(plan)
    # A fleet whose hosts have plans of different regions says so (the plan line names one plan only).
    regions = {}
    for row in rows:
        if row.get('plan') and row['plan'].get('region'):
            regions[row['plan']['region']] = regions.get(row['plan']['region'], 0) + 1
    report['regions'] = dict(sorted(regions.items()))
    return report


def fleet_stats(report):
    """A compact summary for ansible.builtin.set_stats: per host its state, protocol and failing checks."""
    hosts = {}
    for row in report['rows']:
        entry = {'state': row['state'], 'protocol': row['protocol'], 'failing': list(row['failing']),
                 'settings': dict((key, value['value']) for key, value in (row['settings'] or {}).items()),
                 'to_open': [dict(e) for e in row['to_open']]}
        if row['message']:
            entry['message'] = row['message']
        if row.get('drift'):
            entry['drift'] = dict(row['drift'])
        hosts[row['host']] = entry
    return {'generated_at': report['generated_at'], 'totals': dict(report['totals']), 'hosts': hosts}


def totals_line(report):
    """``4 hosts: 1 ok, 1 degraded, 1 failing, 1 unreachable``."""
    totals = report['totals']
    line = '%d host%s: %d ok, %d degraded, %d failing, %d unreachable' % (
        totals['hosts'], '' if totals['hosts'] == 1 else 's', totals['ok'], totals['degraded'], totals['failing'],
        totals['unreachable'])
    return line + (', %d drifted' % totals['drifted'] if totals.get('drifted') else '')


PLAN_SOURCES = {'dns': 'DNS', 'catalog': "Cloudflare's published list"}


def _plan_line(plan):
    if not plan:
        return None
    source = PLAN_SOURCES.get(plan.get('source'), plan.get('source') or 'an unknown source')
    line = 'Egress plan from %s, resolved at %s' % (source, plan.get('resolved_at') or 'an unknown time')
    extra = ', '.join('%s %s' % (key, plan[key]) for key in ('region', 'generation') if plan.get(key))
    if extra:
        line += ' (%s)' % extra
    if plan.get('source') == 'catalog':
        line += ': DNS failed when the plan was made, so the probe checked the published addresses, not what DNS gives today'
    return line


def _regions_line(report):
    regions = report.get('regions') or {}
    if len(regions) < 2:
        return None
    return 'Plans by region: %s' % ', '.join(
        '%s %d host%s' % (region, count, '' if count == 1 else 's') for region, count in regions.items())


def _protocols_line(report):
    if not report['protocols']:
        return None
    return 'Recommended protocol: %s' % ', '.join('%s %d' % item for item in report['protocols'].items())


WHY_LENGTH = 80


def _short(text):
    """The reason as a table shows it: at most WHY_LENGTH characters (the whole text is under "What to fix")."""
    text = ' '.join(str(text or '').split())
    return text if len(text) <= WHY_LENGTH else text[:WHY_LENGTH - 1] + '…'


def _has_firewall(report):
    return any(row.get('firewall') for row in report['rows'])


def _has_drift(report):
    return any(row.get('drift') for row in report['rows'])


def _drift_text(row):
    """``+2/−1 (tunnel)``; '' when the row has nothing to compare."""
    drift = row.get('drift')
    if not drift:
        return ''
    return drift['text'] + (' (%s)' % ', '.join(drift['purposes']) if drift['purposes'] else '')


def _needs_attention(report):
    return [row for row in report['rows'] if row['state'] != 'ok']


# ----------------------------------------------------------------------------------------------
# Markdown
# ----------------------------------------------------------------------------------------------
# Backslash-escape what Markdown (and GitHub's tables) would read as markup; newlines would end
# a table row, so every run of white space becomes one space.
MARKDOWN_SPECIAL = re.compile(r'([\\`*_\[\]<>|#~])')
MARKDOWN_MARKS = {'ok': '✅', 'failed': '❌', 'failing': '❌', 'partial': '⚠️', 'degraded': '⚠️', 'skipped': '➖',
                  'unreachable': '⛔', 'drifted': '🔀'}


def _md(text):
    return MARKDOWN_SPECIAL.sub(r'\\\1', ' '.join(str(text).split()))


def _md_cell(cell):
    return ('%s %s' % (MARKDOWN_MARKS[cell['state']], _md(cell['text']))).strip()


def render_markdown(report):
    """The report as GitHub-flavoured Markdown: totals, one table row per host, then what to fix."""
    lines = ['# %s' % _md(report['title']), '', '- Generated %s' % _md(report['generated_at'])]
    lines += ['- %s' % _md(line) for line in (_plan_line(report['plan']), _regions_line(report), _protocols_line(report))
              if line]
    lines += ['', '**%s**' % _md(totals_line(report)), '']
    drift, firewall = _has_drift(report), _has_firewall(report)
    header = ['Host', 'State', 'Why'] + (['Firewall'] if firewall else []) + (['Drift'] if drift else []) + \
        ['Protocol', 'cloudflared settings'] + [column_title(c) for c in report['columns']]
    lines.append('| %s |' % ' | '.join(_md(h) for h in header))
    lines.append('|' + ' --- |' * len(header))
    for row in report['rows']:
        cells = [_md(row['host']), '%s %s' % (MARKDOWN_MARKS[row['state']], row['state']), _md(_short(row.get('why')))]
        cells += [_md_cell(row.get('firewall') or _cell('skipped'))] if firewall else []
        cells += [_md(_drift_text(row))] if drift else []
        cells += [_md(row['protocol'] or ''), _md(settings_line(row.get('settings')))]
        cells += [_md_cell(row['cells'][c['id']]) for c in report['columns']]
        lines.append('| %s |' % ' | '.join(cells))
    lines += ['', '## What to fix', '']
    attention = _needs_attention(report)
    if not attention:
        lines += ['Every host reaches what it probed: nothing to fix.', '']
    for row in attention:
        lines += ['### %s: %s %s' % (_md(row['host']), MARKDOWN_MARKS[row['state']], row['state']), '']
        if row['message']:
            lines.append('- %s' % _md(row['message']))
        if row['protocol']:
            lines.append('- Recommended protocol %s: %s' % (_md(row['protocol']), _md(row['reason'] or '')))
        lines += ['- cloudflared %s %s: %s' % (_md(s['option']), _md(s['value']), _md(s['reason']))
                  for s in (row.get('settings') or {}).values() if s.get('value')]
        lines += ['- %s' % _md(problem) for problem in row['problems']]
        lines += ['- **To open:** %s' % _md(probe_report.open_line(entry)) for entry in row['to_open']]
        lines.append('')
    lines.append('Legend: ✅ all answered, ⚠️ some answered, ❌ none answered, ➖ not probed on that host, '
                 '⛔ no probe result for the host.')
    return '\n'.join(lines) + '\n'


# ----------------------------------------------------------------------------------------------
# HTML
# ----------------------------------------------------------------------------------------------
# One self-contained page: inline CSS, no script, nothing loaded from elsewhere. The Content
# Security Policy says so to the browser too (the style is allowed by its hash), so a page that
# ever did load something would show it as a console error instead of loading it silently.
CSS = """\
:root { color-scheme: light; --ok: #1a7f37; --failed: #cf222e; --partial: #9a6700; --skipped: #6e7781;
  --unreachable: #6639ba; --line: #d0d7de; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.5rem; color: #1f2328; }
h1 { font-size: 1.45rem; margin: 0 0 .3rem; }
h2 { font-size: 1.15rem; margin: 1.6rem 0 .6rem; }
h3 { font-size: 1rem; margin: 1rem 0 .3rem; }
.meta { color: #59636e; margin: .15rem 0; }
.totals { display: flex; flex-wrap: wrap; gap: .4rem; margin: 1rem 0; }
.badge { display: inline-block; padding: .1rem .6rem; border-radius: 1rem; color: #fff; font-weight: 600;
  background: var(--skipped); white-space: nowrap; }
.badge.all { background: #24292f; }
.badge.ok { background: var(--ok); }
.badge.failing, .badge.failed { background: var(--failed); }
.badge.partial, .badge.degraded { background: var(--partial); }
.badge.unreachable { background: var(--unreachable); }
.badge.drifted { background: #0969da; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; }
th, td { border: 1px solid var(--line); padding: .3rem .55rem; text-align: center; white-space: nowrap; }
thead th { background: #f6f8fa; }
tbody th { text-align: left; font-weight: 600; }
td.cell.ok { background: #dafbe1; color: #116329; }
td.cell.failed { background: #ffebe9; color: #a40e26; font-weight: 600; }
td.cell.partial { background: #fff8c5; color: #7d4e00; font-weight: 600; }
td.cell.skipped { color: var(--skipped); }
td.cell.unreachable { background: #fbefff; color: var(--unreachable); }
section.host { border-left: 4px solid var(--failed); padding: .1rem 0 .1rem .9rem; margin: .8rem 0; }
section.host.unreachable { border-color: var(--unreachable); }
section.host.degraded { border-color: var(--partial); }
section.host.drifted { border-color: #0969da; }
section.host ul { margin: .3rem 0; padding-left: 1.2rem; }
li.open { font-weight: 600; }
.legend { color: #59636e; margin-top: 1.6rem; }
"""
CELL_SYMBOLS = {'ok': '✓', 'failed': '✗', 'partial': '◐', 'skipped': '–', 'unreachable': '?'}
CELL_HINTS = {'ok': 'all answered', 'failed': 'none answered', 'partial': 'some answered',
              'skipped': 'not probed on this host', 'unreachable': 'no probe result for this host'}


def _e(text):
    return html.escape('' if text is None else str(text), quote=True)


def _content_security_policy():
    digest = base64.b64encode(hashlib.sha256(CSS.encode('utf-8')).digest()).decode('ascii')
    return "default-src 'none'; style-src 'sha256-%s'; base-uri 'none'; form-action 'none'" % digest


def _html_cell(cell, title, hint=None):
    hint = hint or CELL_HINTS[cell['state']]
    if cell.get('errors'):
        hint += ': ' + ', '.join('%d %s' % (count, kind) for kind, count in cell['errors'].items())
    text = ('%s %s' % (CELL_SYMBOLS[cell['state']], cell['text'])).strip()
    return '<td class="cell %s" title="%s">%s</td>' % (_e(cell['state']), _e('%s: %s' % (title, hint)), _e(text))


def _html_head_rows(columns, drift=False, firewall=False):
    """Two header rows: the address families span their checks."""
    first = ['<th scope="col" rowspan="2">Host</th>', '<th scope="col" rowspan="2">State</th>',
             '<th scope="col" rowspan="2">Why</th>']
    first += ['<th scope="col" rowspan="2">Firewall</th>'] if firewall else []
    first += ['<th scope="col" rowspan="2">Drift</th>'] if drift else []
    first += ['<th scope="col" rowspan="2">Protocol</th>', '<th scope="col" rowspan="2">cloudflared settings</th>']
    second = []
    for column in columns:
        if not column['family']:
            first.append('<th scope="col" rowspan="2">%s</th>' % _e(column['label']))
    for family in egress_contract.FAMILIES:
        mine = [c for c in columns if c['family'] == family]
        if mine:
            first.append('<th scope="colgroup" colspan="%d">%s</th>' % (len(mine), _e(FAMILY_LABELS[family])))
            second.extend('<th scope="col">%s</th>' % _e(c['label']) for c in mine)
    return '<tr>%s</tr>\n<tr>%s</tr>' % (''.join(first), ''.join(second))


def _html_columns(columns):
    """The columns in the order the header shows them: DNS first, then each family's checks."""
    return [c for c in columns if not c['family']] + [c for f in egress_contract.FAMILIES for c in columns if c['family'] == f]


def render_html(report):
    """The report as one self-contained HTML5 page (inline CSS, no script, no external resource)."""
    columns = _html_columns(report['columns'])
    totals = report['totals']
    out = ['<!doctype html>', '<html lang="en">', '<head>', '<meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           '<meta http-equiv="Content-Security-Policy" content="%s">' % _e(_content_security_policy()),
           '<title>%s</title>' % _e('%s (%s)' % (report['title'], totals_line(report))),
           '<style>%s</style>' % CSS, '</head>', '<body>', '<header>', '<h1>%s</h1>' % _e(report['title']),
           '<p class="meta">Generated <time datetime="%s">%s</time></p>' % ((_e(report['generated_at']),) * 2)]
    for line in (_plan_line(report['plan']), _regions_line(report), _protocols_line(report)):
        if line:
            out.append('<p class="meta">%s</p>' % _e(line))
    out.append('<p class="totals" id="totals"><span class="badge all">%d hosts</span> '
               '<span class="badge ok">%d ok</span> <span class="badge degraded">%d degraded</span> '
               '<span class="badge failing">%d failing</span> <span class="badge unreachable">%d unreachable</span>%s</p>'
               % (totals['hosts'], totals['ok'], totals['degraded'], totals['failing'], totals['unreachable'],
                  ' <span class="badge drifted">%d drifted</span>' % totals['drifted'] if totals.get('drifted') else ''))
    out += ['</header>', '<main>', '<div class="scroll">', '<table id="fleet">', '<thead>', _html_head_rows(columns, _has_drift(report), _has_firewall(report)),
            '</thead>', '<tbody>']
    for index, row in enumerate(report['rows']):
        host = ('<a href="#host-%d">%s</a>' % (index, _e(row['host'])) if row['state'] != 'ok' else _e(row['host']))
        cells = ''.join(_html_cell(row['cells'][c['id']], '%s %s' % (row['host'], column_title(c))) for c in columns)
        drift = '<td class="drift">%s</td>' % _e(_drift_text(row)) if _has_drift(report) else ''
        if _has_firewall(report):
            cell = row.get('firewall') or _cell('skipped')
            drift = _html_cell(cell, '%s Firewall' % row['host'], 'the change ' + (cell['text'] or 'was not tried')) + drift
        out.append('<tr class="%s"><th scope="row">%s</th><td><span class="badge %s">%s</span></td>'
                   '<td class="why" title="%s">%s</td>%s<td>%s</td><td class="settings">%s</td>%s</tr>'
                   % (_e(row['state']), host, _e(row['state']), _e(row['state']), _e(row.get('why') or ''),
                      _e(_short(row.get('why'))), drift, _e(row['protocol'] or ''),
                      _e(settings_line(row.get('settings'))), cells))
    out += ['</tbody>', '</table>', '</div>', '<h2>What to fix</h2>']
    attention = _needs_attention(report)
    if not attention:
        out.append('<p>Every host reaches what it probed: nothing to fix.</p>')
    for index, row in enumerate(report['rows']):
        if row['state'] == 'ok':
            continue
        items = ['<li>%s</li>' % _e(row['message'])] if row['message'] else []
        if row['protocol']:
            items.append('<li>Recommended protocol <strong>%s</strong>: %s</li>' % (_e(row['protocol']), _e(row['reason'] or '')))
        items += ['<li>cloudflared <code>%s %s</code>: %s</li>' % (_e(s['option']), _e(s['value']), _e(s['reason']))
                  for s in (row.get('settings') or {}).values() if s.get('value')]
        items += ['<li>%s</li>' % _e(problem) for problem in row['problems']]
        items += ['<li class="open">To open: %s</li>' % _e(probe_report.open_line(entry)) for entry in row['to_open']]
        out += ['<section class="host %s" id="host-%d">' % (_e(row['state']), index),
                '<h3>%s <span class="badge %s">%s</span></h3>' % (_e(row['host']), _e(row['state']), _e(row['state'])),
                '<ul>%s</ul>' % ''.join(items), '</section>']
    out += ['<p class="legend">%s</p>' % ' · '.join('%s %s' % (_e(CELL_SYMBOLS[s]), _e(CELL_HINTS[s])) for s in CELL_SYMBOLS),
            '</main>', '</body>', '</html>']
    return '\n'.join(out) + '\n'


def render_json(report):
    """The report as JSON, keys sorted so that the same report is always the same text."""
    return json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False, default=str) + '\n'


RENDERERS = {'markdown': render_markdown, 'html': render_html, 'json': render_json}


def same_content(old, new):
    """Whether two renderings say the same thing apart from their time stamps.

    The report carries when it was generated (and when the plan was
    resolved), which differ on every run; comparing with them masked lets a
    rerun over an unchanged fleet leave the files alone and report no change.
    """
    return old is not None and TIMESTAMP.sub('<time>', old) == TIMESTAMP.sub('<time>', new)
