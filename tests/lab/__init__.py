# -*- coding: utf-8 -*-
"""The tunnelwall lab: managed hosts with real firewalld and ufw, reached over SSH, behind a fake Cloudflare edge.

``python -m tests.lab --help`` for the command line; tests.lab.fixtures for pytest.
"""
