# -*- coding: utf-8 -*-
"""Run a module's main() in this process, with real AnsibleModule argument handling, and return its JSON result.

For refusals only: a module that gets past its validation would really probe or change this machine.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json

from ansible.module_utils.testing import patch_module_args


def run_module(name, args):
    """``name`` is the module's short name in tunnelwall.cloudflared; returns the dict it printed."""
    module = importlib.import_module('ansible_collections.tunnelwall.cloudflared.plugins.modules.%s' % name)
    output = io.StringIO()
    with patch_module_args(args), contextlib.redirect_stdout(output):
        try:
            module.main()
        except SystemExit:
            pass
    text = output.getvalue()
    try:
        return json.loads(text)
    except ValueError:
        raise AssertionError('%s printed no JSON result:\n%s' % (name, text)) from None


def run_action(name, args, check_mode=False, diff=False, task_vars=None):
    """Run a controller-side action plugin of tunnelwall.cloudflared in this process, as a task would."""
    # Imported here: only tests that run actions need the executor's objects.
    import ansible.plugins.loader as plugin_loader
    from ansible.parsing.dataloader import DataLoader
    from ansible.playbook.play_context import PlayContext
    from ansible.playbook.task import Task
    from ansible.template import Templar

    task = Task()
    task.action = 'tunnelwall.cloudflared.%s' % name
    task.args = args
    task.check_mode = check_mode
    task.diff = diff
    loader = DataLoader()
    play_context = PlayContext()
    connection = plugin_loader.connection_loader.get('local', play_context, None)
    action = plugin_loader.action_loader.get(task.action, task=task, connection=connection, play_context=play_context,
                                             loader=loader, templar=Templar(loader=loader),
                                             shared_loader_obj=plugin_loader)
    return action.run(task_vars=task_vars or {})
