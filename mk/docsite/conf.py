# -*- coding: utf-8 -*-
"""Sphinx configuration for `make docs-html` (mk/packaging.mk): the collection's docs as an HTML site."""

from __future__ import annotations

project = 'tunnelwall.cloudflared'
html_title = html_short_title = 'tunnelwall.cloudflared'
author = 'tunnelwall developers'

# antsibull-docs' Sphinx extension understands the roles and directives of its RST (options, return values,
# semantic markup); the theme is the one docs.ansible.com uses.
extensions = ['sphinx_antsibull_ext']
html_theme = 'sphinx_ansible_theme'
pygments_style = 'ansible'
highlight_language = 'YAML+Jinja'

html_show_sphinx = False
html_use_index = False
html_copy_source = False
default_role = 'any'
nitpicky = True

# No intersphinx: the build runs offline. References into docs.ansible.com (ansible.builtin modules, the common
# return values, the configuration settings) cannot resolve and are left as plain text; references within the
# collection are checked by `make docs-lint`.
suppress_warnings = ['ref.ref']
