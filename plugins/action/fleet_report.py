# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""fleet_report: write the fleet's probe results as Markdown, HTML and JSON on the controller.

Everything happens here; there is no module to run on a host. The task runs
once per play whatever its hosts (BYPASS_HOST_LOOP, like add_host), since
it reports on all of them. The rows, cells and renderings come from
plugins/plugin_utils/fleet_report.py.
"""

from __future__ import annotations

import datetime
import errno
import os
import re
import stat
import tempfile
from collections.abc import Mapping

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.errors import UnsupportedError
from ansible.plugins.action import ActionBase

from ansible_collections.tunnelwall.cloudflared.plugins.plugin_utils import fleet_report

ARGUMENT_SPEC = dict(
    results=dict(type='dict'),
    probe_var=dict(type='str'),
    plan_var=dict(type='str'),
    applied_var=dict(type='str'),
    hosts=dict(type='list', elements='str'),
    dest=dict(type='path', required=True),
    formats=dict(type='list', elements='str', choices=list(fleet_report.FORMATS), default=list(fleet_report.FORMATS)),
    basename=dict(type='str', default='tunnelwall-fleet-report'),
    plan=dict(type='dict'),
)
BASENAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9._-]{0,199}')
CONTROL = re.compile(r'[\x00-\x1f\x7f]')
# New files get the usual mode of a report others read; a file that exists keeps its own.
NEW_FILE_MODE = 0o644
PLAIN_TYPES = ((str, 'str'), (bool, 'bool'), (int, 'int'), (float, 'float'), (list, 'list'), (Mapping, 'dict'))


class OptionError(Exception):
    """A bad option value; the message names the option and the value."""


def _described(value):
    """``str 'oops'``: the kind of a wrong value and its start (Ansible's own str/dict/list subclasses named plainly)."""
    kind = next((name for cls, name in PLAIN_TYPES if isinstance(value, cls)), type(value).__name__)
    text = str(value)
    return '%s %r' % (kind, text if len(text) <= 60 else text[:57] + '...')


def _utc_now():
    return datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def _read(path):
    """The report file as it is, for the change check and --diff; never through a symbolic link.

    A link planted at the report's name would show any file the controller user can read as the diff's
    "before" (and an O_NONBLOCK open keeps a planted FIFO from hanging the run).
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, 'O_CLOEXEC', 0))
    except FileNotFoundError:
        return None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise OptionError('dest: %s is a symbolic link; fleet_report neither follows nor replaces one '
                              '(remove it, or choose another dest)' % path) from error
        raise OptionError('dest: cannot read %s: %s' % (path, error)) from error
    with os.fdopen(descriptor, 'rb') as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise OptionError('dest: %s exists and is not a regular file' % path)
        try:
            return handle.read().decode('utf-8')
        except (OSError, UnicodeDecodeError) as error:
            raise OptionError('dest: cannot read %s: %s' % (path, error)) from error


def directory_problem(path):
    """Why ``path`` is no place for the report, or None.

    Another user who can write to the directory can swap the report after it is written (or plant a link
    before): refuse a directory writable by group or others, or owned by another user than this one or root.
    A sticky /tmp is refused too: pick a directory of your own.
    """
    info = os.stat(path)
    if not stat.S_ISDIR(info.st_mode):
        return 'exists and is not a directory'
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return ('is writable by other users (mode %04o): another user could replace the report; '
                'use a directory only you can write to' % stat.S_IMODE(info.st_mode))
    if info.st_uid not in (0, os.geteuid()):
        return 'is owned by uid %d, not by this user (uid %d)' % (info.st_uid, os.geteuid())
    return None


def _write_atomically(path, content):
    """Write beside the file, then rename over it: a reader never sees half a report."""
    try:
        info = os.lstat(path)
        # A link's own mode is 0777: never copy it onto the report.
        mode = stat.S_IMODE(info.st_mode) if stat.S_ISREG(info.st_mode) else NEW_FILE_MODE
    except FileNotFoundError:
        mode = NEW_FILE_MODE
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix='.%s.' % os.path.basename(path))
    try:
        with os.fdopen(handle, 'w', encoding='utf-8') as stream:
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    BYPASS_HOST_LOOP = True
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        """Build the fleet report from the probe results and write the files that change (none in check mode)."""
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        validation = ArgumentSpecValidator(ARGUMENT_SPEC, mutually_exclusive=[('results', 'probe_var')],
                                           required_one_of=[('results', 'probe_var')],
                                           required_by={'hosts': 'probe_var'}).validate(self._task.args)
        if validation.error_messages:
            # An unknown option's message is only "NAME. Supported parameters include: ..."; say what it is.
            messages = [('unsupported option %s' % error) if isinstance(error, UnsupportedError) else str(error)
                        for error in validation.errors]
            return dict(result, failed=True, msg='fleet_report: %s' % '; '.join(messages))
        params = validation.validated_parameters
        # An empty dest would be the current directory, a control character (NUL, a trailing newline) a
        # path nobody meant: refuse both before any file is touched.
        if not params['dest'] or CONTROL.search(params['dest']):
            return dict(result, failed=True, msg='fleet_report: dest=%r: expected a directory path without control '
                                                 'characters' % params['dest'][:200])
        # Relative to where ansible-playbook runs; absolute in what the task returns and says.
        params['dest'] = os.path.abspath(params['dest'])
        try:
            self._check(params)
            probe_results = self._probe_results(params, task_vars)
            outputs = self._outputs(params, probe_results)
        except OptionError as error:
            return dict(result, failed=True, msg='fleet_report: %s' % error)

        report, paths, pending = outputs['report'], outputs['paths'], outputs['pending']
        if pending and not self._task.check_mode:
            try:
                os.makedirs(params['dest'], mode=0o755, exist_ok=True)
                problem = directory_problem(params['dest'])
                if problem:
                    return dict(result, failed=True, msg='fleet_report: dest=%s %s' % (params['dest'], problem))
                for name in pending:
                    _write_atomically(paths[name], outputs['contents'][name])
            except OSError as error:
                return dict(result, failed=True, msg='fleet_report: cannot write to dest=%s: %s' % (params['dest'], error))
        verb = 'would write' if self._task.check_mode else 'wrote'
        result.update(
            changed=bool(pending), report=report, paths=paths, stats=fleet_report.fleet_stats(report),
            updated=pending,
            msg='%s; %s' % (fleet_report.totals_line(report),
                            '%s %s' % (verb, ', '.join(paths[name] for name in pending)) if pending
                            else 'the report on disk is up to date'))
        if self._task.diff and pending:
            result['diff'] = [{'before_header': paths[name], 'after_header': paths[name],
                               'before': outputs['old'][name] or '', 'after': outputs['contents'][name]}
                              for name in pending]
        return result

    @staticmethod
    def _check(params):
        if not params['formats']:
            raise OptionError('formats: empty; choose one or more of %s' % ', '.join(fleet_report.FORMATS))
        if not BASENAME.fullmatch(params['basename']):
            raise OptionError("basename=%r: expected a file name without directory or extension (letters, digits, "
                              "'.', '_', '-', starting with a letter or digit; at most 200)" % params['basename'][:200])
        if os.path.exists(params['dest']):
            problem = directory_problem(params['dest'])
            if problem:
                raise OptionError('dest=%s: %s' % (params['dest'], problem))
        plan = params['plan']
        if plan is not None and (plan.get('version') != 1 or isinstance(plan.get('version'), bool) or 'source' not in plan):
            raise OptionError('plan: expected the egress plan of the tunnelwall.cloudflared.edge_endpoints lookup '
                              '(version 1, with source and resolved_at); got keys %s' % ', '.join(sorted(map(str, plan))))
        for name in ('probe_var', 'plan_var', 'applied_var'):
            if params[name] is not None and not params[name].isidentifier():
                raise OptionError('%s=%r: expected the name of a variable' % (name, params[name]))

    @staticmethod
    def _probe_results(params, task_vars):
        """``[(host, probe result or None, plan or None, applied allow-list or None, fresh origins or None)]``, in the
        order to report them (fresh origins: egress_firewall_info's ``origins``, resolved on the host)."""
        if params['results'] is not None:
            if not params['results']:
                raise OptionError('results: empty; no host to report on')
            for host, value in params['results'].items():
                if value is not None and not isinstance(value, Mapping):
                    raise OptionError('results[%r]: expected the registered result of edge_probe (a dict) or null, got %s'
                                      % (to_text(host), _described(value)))
            return [(to_text(host), value, None, None, None) for host, value in params['results'].items()]
        hosts = params['hosts'] if params['hosts'] is not None else task_vars.get('ansible_play_hosts_all') or []
        if not hosts:
            raise OptionError('hosts: empty; no host to report on')
        hostvars = task_vars.get('hostvars') or {}
        probe_results = []
        for host in hosts:
            if host not in hostvars:
                raise OptionError('hosts: %r is not in the inventory' % host)
            variables = hostvars[host]
            value = variables[params['probe_var']] if params['probe_var'] in variables else None
            if value is not None and not isinstance(value, Mapping):
                raise OptionError('probe_var=%s: on %s it is %s, not a registered edge_probe result'
                                  % (params['probe_var'], host, _described(value)))
            plan = variables.get(params['plan_var']) if params['plan_var'] else None
            # applied_var: egress_firewall_info's registered result, or its `applied` alone.
            applied = variables.get(params['applied_var']) if params['applied_var'] else None
            fresh = None
            if isinstance(applied, Mapping) and 'backend' in applied:
                fresh = applied.get('origins')
                applied = applied.get('applied')
            probe_results.append((host, value, plan if isinstance(plan, Mapping) else None,
                                  applied if isinstance(applied, Mapping) else None,
                                  fresh if isinstance(fresh, Mapping) else None))
        return probe_results

    @staticmethod
    def _outputs(params, probe_results):
        """The report, its renderings, and which of them differ from the files on disk."""
        rows = [fleet_report.host_row(host, value, plan, applied, fresh) for host, value, plan, applied, fresh in probe_results]
        report = fleet_report.fleet_report(rows, _utc_now(), params['plan'])
        formats = [name for name in fleet_report.FORMATS if name in params['formats']]
        paths = dict((name, os.path.join(params['dest'], params['basename'] + fleet_report.EXTENSIONS[name]))
                     for name in formats)
        contents = dict((name, fleet_report.RENDERERS[name](report)) for name in formats)
        old = dict((name, _read(paths[name])) for name in formats)
        pending = [name for name in formats if not fleet_report.same_content(old[name], contents[name])]
        return {'report': report, 'paths': paths, 'contents': contents, 'old': old, 'pending': pending}
