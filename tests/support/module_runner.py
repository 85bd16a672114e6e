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
