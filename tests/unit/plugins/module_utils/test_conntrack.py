# -*- coding: utf-8 -*-
"""conntrack.Watch: conntrack's NEW events, as the kernel sends them (netlink layouts built here by hand)."""

from __future__ import annotations

import socket
import struct

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import conntrack


def attribute(kind, payload, nested=False):
    return struct.pack('=HH', 4 + len(payload), kind | (0x8000 if nested else 0)) + payload + b'\0' * (-len(payload) % 4)


def event(family, source, source_port, destination, destination_port, protocol=socket.IPPROTO_TCP, kind=0x100):
    """One IPCTNL_MSG_CT_NEW event message with its original tuple (and a reply tuple the parser must ignore)."""
    src, dst = (3, 4) if family == socket.AF_INET6 else (1, 2)
    addresses = attribute(src, socket.inet_pton(family, source)) + attribute(dst, socket.inet_pton(family, destination))
    ports = attribute(1, struct.pack('B', protocol)) + attribute(2, struct.pack('!H', source_port)) + \
        attribute(3, struct.pack('!H', destination_port))
    orig = attribute(1, attribute(1, addresses, True) + attribute(2, ports, True), True)
    reply = attribute(2, attribute(1, addresses, True), True)
    body = struct.pack('=BBH', family, 0, 0) + orig + reply + attribute(12, struct.pack('!L', 7))
    return struct.pack('=LHHLL', 16 + len(body), kind, 0x600, 0, 0) + body


class FakeSocket(object):
    def __init__(self, datagrams):
        self.datagrams = list(datagrams)
        self.closed = False

    def setblocking(self, flag):
        assert flag is False

    def recv(self, size):
        if not self.datagrams:
            raise BlockingIOError()
        item = self.datagrams.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    def close(self):
        self.closed = True


def test_event_tuple_reads_the_original_tcp_tuple_of_both_families():
    assert conntrack.event_tuple(event(socket.AF_INET, '10.0.0.9', 40000, '10.1.2.3', 443)) == (
        socket.AF_INET, '10.0.0.9', 40000, '10.1.2.3', 443)
    assert conntrack.event_tuple(event(socket.AF_INET6, '2001:db8::9', 40001, '2001:db8::1', 22)) == (
        socket.AF_INET6, '2001:db8::9', 40001, '2001:db8::1', 22)
    assert conntrack.event_tuple(event(socket.AF_INET, '10.0.0.9', 53, '10.1.2.3', 53, socket.IPPROTO_UDP)) is None
    assert conntrack.event_tuple(b'\0' * 8) is None
    two = event(socket.AF_INET, '10.0.0.9', 1, '10.0.0.1', 2) + event(socket.AF_INET, '10.0.0.9', 3, '10.0.0.1', 4)
    assert [conntrack.event_tuple(m)[2] for dummy, m in conntrack.messages(two)] == [1, 3]


def watch_with(datagrams_for):
    watch = conntrack.Watch(listen=lambda: FakeSocket([]))
    watch.start()
    watch.control(socket.AF_INET)  # a real loopback connect to a closed port (harmless), its tuple recorded
    watch.sock.datagrams = datagrams_for(watch.controls[socket.AF_INET])
    return watch


def test_left_true_false_or_cannot_tell():
    seen = event(socket.AF_INET, '10.0.0.9', 40000, '10.1.2.3', 443)
    watch = watch_with(lambda control: [event(*control), seen])
    assert watch.left(socket.AF_INET, '10.0.0.9', 40000, '10.1.2.3', 443) is True
    assert watch.left(socket.AF_INET, '10.0.0.9', 40002, '10.1.2.3', 443) is False  # tracked here, never left
    assert watch.left(socket.AF_INET6, '2001:db8::9', 40000, '2001:db8::1', 443) is None  # no control for IPv6
    assert watch.left(socket.AF_INET, None, 40000, '10.1.2.3', 443) is None
    # No event for the control: conntrack does not track here - an absent event proves nothing.
    watch = watch_with(lambda control: [seen])
    assert watch.left(socket.AF_INET, '10.0.0.9', 40002, '10.1.2.3', 443) is None
    # Events lost (ENOBUFS): the same.
    watch = watch_with(lambda control: [event(*control), OSError(105, 'No buffer space available')])
    assert watch.left(socket.AF_INET, '10.0.0.9', 40002, '10.1.2.3', 443) is None
    sock = watch.sock
    watch.close()
    assert sock.closed and watch.sock is None


def test_no_netlink_means_cannot_tell():
    def refuse():
        raise PermissionError(1, 'Operation not permitted')
    watch = conntrack.Watch(listen=refuse).start()
    watch.control(socket.AF_INET)
    assert watch.left(socket.AF_INET, '10.0.0.9', 40000, '10.1.2.3', 443) is None
    watch.close()
