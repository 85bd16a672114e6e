# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Did a TCP SYN leave this host? Asked of the kernel's connection tracking, over netlink (standard library only).

A connect that fails with ``ECONNREFUSED`` cannot say who sent the TCP reset: the origin's own stack, or a reject rule
of this host's firewall (ufw's, firewalld's and nftables_egress' default deny reject TCP with a reset made here, as
any ``reject with tcp reset`` does). Connection tracking can. It creates an entry for the SYN before the filter
hooks, and *confirms* it only when the SYN has passed them all and leaves (postrouting); confirming it sends a
``NEW`` event to the listeners of the netlink group ``NFNLGRP_CONNTRACK_NEW``. A SYN that a rule of this host rejected
or dropped is never confirmed: no event. A SYN that left, whatever became of it beyond (refused by the origin,
rejected by a router, unanswered), gave one. (Its entry itself cannot be asked for afterwards: conntrack deletes an
entry at once when the only answer was a reset - nf_conntrack_proto_tcp.c.)

So ``Watch`` listens while the connects run, and ``left(...)`` tells them apart:

- True: a NEW event for the exact tuple (source address and port, destination, TCP): the SYN left this host;
- False: no event for it, although conntrack reported this watch's own loopback connect to a closed port (the
  positive control: every firewall lets loopback out) and no event was lost: the SYN was stopped on this host (its
  firewall, or no route);
- None: cannot tell (no CAP_NET_ADMIN or no ctnetlink, conntrack not tracking that family in this network
  namespace, or events lost on a busy host).

Layouts: linux/netlink.h, linux/netfilter/nfnetlink.h, linux/netfilter/nfnetlink_conntrack.h.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import socket
import struct

NETLINK_NETFILTER = 12
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_NEW = 0
NLA_F_NESTED = 0x8000
CTA_TUPLE_ORIG = 1
CTA_TUPLE_IP = 1
CTA_TUPLE_PROTO = 2
CTA_IP_V4_SRC, CTA_IP_V4_DST, CTA_IP_V6_SRC, CTA_IP_V6_DST = 1, 2, 3, 4
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3
NLMSG_HEADER = struct.Struct('=LHHLL')
TIMEOUT = 1.0
NFNLGRP_CONNTRACK_NEW = 1
NLMSG_OVERRUN = 4
RECEIVE_BUFFER = 4 * 1024 * 1024
LOOPBACK = {socket.AF_INET: '127.0.0.1', socket.AF_INET6: '::1'}


def _attributes(data, offset, end):
    """{type: payload} of the netlink attributes in data[offset:end] (nested flag cleared)."""
    found = {}
    while offset + 4 <= end:
        length, kind = struct.unpack_from('=HH', data, offset)
        if length < 4:
            break
        found[kind & ~NLA_F_NESTED & 0x7fff] = data[offset + 4:offset + length]
        offset += (length + 3) & ~3
    return found


def event_tuple(message):
    """(family, source, source port, destination, destination port) of a conntrack message's original TCP tuple, or
    None (another protocol, or a message this does not understand). ``message``: one netlink message."""
    if len(message) < NLMSG_HEADER.size + 4:
        return None
    family = struct.unpack_from('B', message, NLMSG_HEADER.size)[0]
    top = _attributes(message, NLMSG_HEADER.size + 4, len(message))
    if CTA_TUPLE_ORIG not in top:
        return None
    orig = _attributes(top[CTA_TUPLE_ORIG], 0, len(top[CTA_TUPLE_ORIG]))
    addresses = _attributes(orig.get(CTA_TUPLE_IP, b''), 0, len(orig.get(CTA_TUPLE_IP, b'')))
    ports = _attributes(orig.get(CTA_TUPLE_PROTO, b''), 0, len(orig.get(CTA_TUPLE_PROTO, b'')))
    if ports.get(CTA_PROTO_NUM, b'')[:1] != struct.pack('B', socket.IPPROTO_TCP):
        return None
    src, dst, packed = (CTA_IP_V6_SRC, CTA_IP_V6_DST, socket.AF_INET6) if family == socket.AF_INET6 else \
        (CTA_IP_V4_SRC, CTA_IP_V4_DST, socket.AF_INET)
    try:
        return (packed, socket.inet_ntop(packed, addresses[src]), struct.unpack('!H', ports[CTA_PROTO_SRC_PORT])[0],
                socket.inet_ntop(packed, addresses[dst]), struct.unpack('!H', ports[CTA_PROTO_DST_PORT])[0])
    except (KeyError, ValueError, struct.error):
        return None


def messages(data):
    """The netlink messages of one datagram, as (type, bytes)."""
    offset = 0
    while offset + NLMSG_HEADER.size <= len(data):
        length, kind = NLMSG_HEADER.unpack_from(data, offset)[:2]
        if length < NLMSG_HEADER.size:
            break
        yield kind, data[offset:offset + length]
        offset += (length + 3) & ~3


def source_for(family, address, port):
    """The source address this host would use towards ``address`` (a route look-up; a UDP connect sends nothing)."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.connect((address, port))
        return sock.getsockname()[0]
    except OSError:
        return None
    finally:
        sock.close()


def _canonical(family, address):
    return socket.inet_ntop(family, socket.inet_pton(family, address))


class Watch(object):
    """Listens to conntrack's NEW events from ``start()`` to ``left()``. ``listen``: a callable returning the event
    socket (tests give their own); None or an error: every answer is None (cannot tell)."""

    def __init__(self, listen=None):
        self.listen = listen or self._listen
        self.sock = None
        self.seen = set()
        self.lost = False
        self.controls = {}

    @staticmethod
    def _listen():
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            # As root past net.core.rmem_max (SO_RCVBUFFORCE): a busy host's events must not overflow while the
            # connects run: lost events make every refusal "cannot tell", which the verification counts as blocked.
            try:
                sock.setsockopt(socket.SOL_SOCKET, getattr(socket, 'SO_RCVBUFFORCE', 33), RECEIVE_BUFFER)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            sock.bind((0, 1 << (NFNLGRP_CONNTRACK_NEW - 1)))
        except OSError:
            sock.close()
            raise
        return sock

    def start(self):
        """Open the event socket before the connects; without one (no netlink, not allowed) every answer is None. Returns self."""
        try:
            self.sock = self.listen()
        except (AttributeError, OSError):
            self.sock = None
        return self

    def control(self, family):
        """The positive control: a loopback connect to a closed port, whose NEW event must come."""
        if self.sock is None or family in self.controls:
            return
        closed = client = None
        try:
            closed = socket.socket(family, socket.SOCK_STREAM)
            closed.bind((LOOPBACK[family], 0))  # bound, never listening: a SYN to it gets the kernel's reset
            client = socket.socket(family, socket.SOCK_STREAM)
            client.bind((LOOPBACK[family], 0))
            client.settimeout(TIMEOUT)
            self.controls[family] = (family, LOOPBACK[family], client.getsockname()[1], LOOPBACK[family],
                                     closed.getsockname()[1])
            try:
                client.connect((LOOPBACK[family], closed.getsockname()[1]))
            except (OSError, socket.timeout):
                pass
        except OSError:
            self.controls[family] = None
        finally:
            for sock in (client, closed):
                if sock is not None:
                    sock.close()

    def drain(self):
        """Read every queued event into ``seen``; an overrun or a receive error sets ``lost`` (an absent event proves nothing)."""
        if self.sock is None:
            return
        self.sock.setblocking(False)
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            except OSError as error:
                if error.errno == errno.ENOBUFS:  # the kernel dropped events: an absent one proves nothing
                    self.lost = True
                    continue
                self.lost = True
                return
            for kind, message in messages(data):
                if kind == NLMSG_OVERRUN:
                    self.lost = True
                elif kind == (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW:
                    found = event_tuple(message)
                    if found:
                        self.seen.add(found)

    def left(self, family, source, source_port, destination, destination_port):
        """True, False or None for this TCP tuple (see the module's docstring)."""
        if self.sock is None or source is None:
            return None
        self.drain()
        wanted = (family, _canonical(family, source), source_port, _canonical(family, destination), destination_port)
        if wanted in self.seen:
            return True
        control = self.controls.get(family)
        if self.lost or control is None or control not in self.seen:
            return None
        return False

    def close(self):
        """Close the event socket; harmless when it is closed already."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
