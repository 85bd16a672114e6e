# -*- coding: utf-8 -*-
"""The fleet report's HTML page as a person sees it: headless Chromium renders it and we read the page.

Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe:
JSON messages ending in a NUL byte, commands on its fd 3, answers on fd 4), so
no driver and no Python package is needed, only Debian's chromium, which
`make debian-packages` installs (tests/lab/requirements-debian.txt). Without
it these tests fail: they do not skip.

The browser gets no network: every request would go to a proxy on a closed
loopback port, and the background services are off.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time

import pytest

from ansible_collections.tunnelwall.cloudflared.plugins.plugin_utils import fleet_report

from tests.unit.plugins.plugin_utils.test_fleet_report import probed, report_of, udp_dropped

CHROMIUM = os.environ.get('TUNNELWALL_CHROMIUM', '/usr/bin/chromium')
FLAGS = [
    '--headless', '--no-sandbox', '--disable-gpu', '--remote-debugging-pipe', '--no-first-run',
    '--no-default-browser-check', '--disable-extensions', '--disable-background-networking', '--disable-sync',
    '--disable-component-update', '--disable-default-apps', '--disable-domain-reliability', '--no-pings',
    '--disable-features=Translate,OptimizationHints,MediaRouter', '--proxy-server=127.0.0.1:9',
    '--window-size=1400,1000',
]
TIMEOUT = 30


class Chromium:
    """A headless Chromium and one page, over the DevTools protocol on a pipe."""

    def __init__(self, profile):
        if not os.access(CHROMIUM, os.X_OK):
            pytest.fail('%s not found: run `make debian-packages` (it installs Debian\'s chromium)' % CHROMIUM)
        commands_read, self._commands = os.pipe()
        self._answers, answers_write = os.pipe()

        def on_fds_3_and_4():
            # Duplicated above 10 first, so that neither pipe end is overwritten by the other's dup2.
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (commands_read, answers_write)]
            for target, fd in zip((3, 4), high):
                os.dup2(fd, target)  # dup2 leaves the copy inheritable

        self.process = subprocess.Popen(  # pylint: disable=subprocess-popen-preexec-fn
            [CHROMIUM, *FLAGS, '--user-data-dir=%s' % profile, 'about:blank'], preexec_fn=on_fds_3_and_4,
            close_fds=False, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(commands_read)
        os.close(answers_write)
        self._buffer, self._next_id, self.events = b'', 0, []
        target = self.call('Target.createTarget', url='about:blank')['targetId']
        self.session = self.call('Target.attachToTarget', targetId=target, flatten=True)['sessionId']
        for domain in ('Page', 'Runtime', 'Log'):
            self.call(domain + '.enable', session=True)

    def _message(self, deadline):
        while b'\0' not in self._buffer:
            ready = select.select([self._answers], [], [], max(deadline - time.time(), 0))[0]
            if not ready:
                raise TimeoutError('chromium did not answer within %ds' % TIMEOUT)
            chunk = os.read(self._answers, 1 << 20)
            if not chunk:
                raise RuntimeError('chromium exited: %s' % self.process.stderr.read().decode(errors='replace')[-2000:])
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b'\0', 1)
        return json.loads(message)

    def call(self, method, session=False, **params):
        """Send one command and return its result; events that arrive meanwhile are kept in ``events``."""
        self._next_id += 1
        command = {'id': self._next_id, 'method': method, 'params': params}
        if session:
            command['sessionId'] = self.session
        os.write(self._commands, json.dumps(command).encode() + b'\0')
        deadline = time.time() + TIMEOUT
        while True:
            message = self._message(deadline)
            if message.get('id') == self._next_id:
                if 'error' in message:
                    raise RuntimeError('%s: %s' % (method, message['error']))
                return message['result']
            self.events.append(message)

    def wait_for(self, method):
        deadline = time.time() + TIMEOUT
        while not any(event.get('method') == method for event in self.events):
            self.events.append(self._message(deadline))

    def open(self, path):
        """Load a file and wait for its load event; returns the page's errors."""
        self.events = []
        self.call('Page.navigate', session=True, url='file://' + os.path.abspath(path))
        self.wait_for('Page.loadEventFired')
        return self.errors()

    def errors(self):
        """What a person would see as red in the DevTools console: errors, exceptions, failed loads, CSP violations."""
        found = []
        for event in self.events:
            method, params = event.get('method'), event.get('params', {})
            if method == 'Runtime.exceptionThrown':
                found.append(params['exceptionDetails'].get('text'))
            elif method == 'Runtime.consoleAPICalled' and params.get('type') in ('error', 'assert'):
                found.append(' '.join(str(a.get('value', a.get('description'))) for a in params.get('args', [])))
            elif method == 'Log.entryAdded' and params['entry'].get('level') == 'error':
                found.append(params['entry'].get('text'))
        return found

    def evaluate(self, expression):
        """The JSON value of an expression in the page (DevTools may evaluate; the page itself has no script)."""
        answer = self.call('Runtime.evaluate', session=True, expression=expression, returnByValue=True)
        if 'exceptionDetails' in answer:
            raise RuntimeError(answer['exceptionDetails'])
        return answer['result'].get('value')

    def screenshot(self, path):
        with open(path, 'wb') as handle:
            handle.write(base64.b64decode(self.call('Page.captureScreenshot', session=True, format='png')['data']))

    def close(self):
        try:
            self.call('Browser.close')
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._commands)
        os.close(self._answers)
        self.process.stderr.close()


@pytest.fixture(scope='module')
def browser(tmp_path_factory):
    chromium = Chromium(tmp_path_factory.mktemp('chromium-profile'))
    yield chromium
    chromium.close()
    shutil.rmtree(str(tmp_path_factory.getbasetemp() / 'chromium-profile0'), ignore_errors=True)


def test_the_console_check_sees_errors(browser, tmp_path):
    """Without this, 'no console errors' below could pass because nothing is ever seen."""
    page = tmp_path / 'broken.html'
    page.write_text('<!doctype html><html lang="en"><head><meta charset="utf-8"><title>x</title></head><body>'
                    '<script>console.error("deliberate"); undefinedFunction();</script>'
                    '<img src="missing.png" alt=""></body></html>')
    errors = browser.open(str(page))
    assert any('deliberate' in (e or '') for e in errors), errors
    assert any('undefinedFunction' in (e or '') or 'Uncaught' in (e or '') for e in errors), errors
    assert any('missing.png' in (e or '') or 'ERR_FILE_NOT_FOUND' in (e or '') for e in errors), errors


def test_the_report_page_shows_every_host_and_its_failures_without_console_errors(browser, tmp_path):
    report = report_of()
    page = tmp_path / 'report.html'
    page.write_text(fleet_report.render_html(report), encoding='utf-8')
    errors = browser.open(str(page))
    browser.screenshot(str(tmp_path / 'report.png'))
    assert errors == [], errors

    assert browser.evaluate('document.title') == 'Cloudflare Tunnel egress: fleet report (6 hosts: 2 ok, 1 degraded, 1 failing, 2 unreachable)'
    assert browser.evaluate('document.getElementById("totals").innerText').split() == [
        '6', 'hosts', '2', 'ok', '1', 'degraded', '1', 'failing', '2', 'unreachable']
    rows = browser.evaluate('Array.from(document.querySelectorAll("#fleet tbody tr"), tr => '
                            'Array.from(tr.children, c => c.innerText.trim()))')
    assert [row[0] for row in rows] == ['web2', 'db1', 'db2', 'web3', 'web1', 'v4only']  # worst first
    assert [row[1] for row in rows] == ['failing', 'unreachable', 'unreachable', 'degraded', 'ok', 'ok']
    headers = browser.evaluate('Array.from(document.querySelectorAll("#fleet thead tr:last-child th"), th => th.innerText)')
    assert headers == ['TCP 7844', 'TLS 7844', 'QUIC 7844', 'api 443', 'update 443'] + ['TCP 7844', 'TLS 7844', 'QUIC 7844', 'api 443']
    # host, state, why, protocol, cloudflared settings, DNS, then IPv4's five checks and IPv6's four.
    by_host = dict((row[0], row) for row in rows)
    assert by_host['web2'][2].startswith('requirement not met: quic: quic udp/7844 timeout')
    assert by_host['web2'][3:] == ['http2', '--protocol http2 --edge-ip-version auto', '✓ 11/11'] + [
        '✓ 4/4', '✓ 4/4', '✗ 0/4', '✓ 1/1', '✓ 1/1'] + ['✓ 3/3', '✓ 3/3', '✗ 0/3', '✓ 1/1']
    assert by_host['web3'][8] == '◐ 2/4' and by_host['v4only'][11:] == ['–'] * 4 and set(by_host['db1'][5:]) == {'?'}

    # What to fix: the failing and unreachable hosts, each with its failures, in the page as shown.
    text = browser.evaluate('document.body.innerText')
    for needle in ('QUIC 7844 IPv4: 0/4 answered, 4 timeout',
                   'To open: open outbound UDP 7844 to 198.51.100.11/32, 198.51.100.12/31, 198.51.100.21/32, 198.51.100.22/32, '
                   '2001:db8:e::11/128, 2001:db8:e::12/128, 2001:db8:e::21/128 (tunnel)',
                   'QUIC 7844 IPv6: 2/3 answered, 1 refused',
                   'unreachable: Failed to connect to the host via ssh',
                   'no probe result: the host was not probed'):
        assert needle in text, needle
    sections = browser.evaluate('Array.from(document.querySelectorAll("section.host h3"), h => h.innerText)')
    assert sections == ['web2 failing', 'db1 unreachable', 'db2 unreachable', 'web3 degraded']

    # The colours came through (the style was allowed by the page's policy): red, amber and green cells differ.
    colour = 'getComputedStyle(document.querySelector("td.cell.%s")).backgroundColor'
    failed, partial, ok = (browser.evaluate(colour % state) for state in ('failed', 'partial', 'ok'))
    assert failed == 'rgb(255, 235, 233)' and partial == 'rgb(255, 248, 197)' and ok == 'rgb(218, 251, 225)'
    assert browser.evaluate('getComputedStyle(document.querySelector(".badge.failing")).backgroundColor') == 'rgb(207, 34, 46)'


def test_hostile_names_stay_text(browser, tmp_path):
    hostile = '<img src=x onerror=console.error(1)><script>console.error(2)</script>'
    # Failing, so that it is the first row (worst first).
    report = report_of([(hostile, probed(udp_dropped, require=['quic'])), ('db1', {'unreachable': True, 'msg': hostile})])
    page = tmp_path / 'hostile.html'
    page.write_text(fleet_report.render_html(report), encoding='utf-8')
    assert browser.open(str(page)) == []
    assert browser.evaluate('document.querySelectorAll("script, img").length') == 0
    assert browser.evaluate('document.querySelector("#fleet tbody th").innerText') == hostile
    assert hostile in browser.evaluate('document.body.innerText')
