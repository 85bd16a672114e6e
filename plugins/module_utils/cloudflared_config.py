# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""cloudflared's own config on the host: where cloudflared finds it, and the origins its ingress rules connect to.

Read in cloudflared's source (release 2026.8.x), never copied:

- where: ``config/configuration.go`` ``FindDefaultConfigPath`` - the first of ``config.yml``, ``config.yaml`` in
  ``~/.cloudflared``, ``~/.cloudflare-warp``, ``~/cloudflare-warp`` (home of the user cloudflared runs as), then
  ``/etc/cloudflared``, ``/usr/local/etc/cloudflared``; a ``--config`` on the command line wins (the unit that
  ``cloudflared service install`` writes passes ``--config /etc/cloudflared/config.yml``);
- what: ``ingress/ingress.go`` ``validateIngress`` and ``isHTTPService``, ``ingress/origin_service.go``
  ``newTCPOverWSService`` (default ports), ``config/configuration.go`` (``OriginRequestConfig``, ``AccessConfig``,
  ``IngressIPRule``), ``ingress/middleware/jwtvalidator.go`` (the Access certificates' host), ``ipaccess/access.go``
  (socks-proxy rules: first match wins, default deny).

YAML: managed hosts have no PyYAML guarantee. PyYAML's ``safe_load`` is used when the host has it; otherwise
``parse_yaml`` reads the subset cloudflared configs are written in (block mappings and sequences, plain and quoted
scalars, flow lists of scalars, comments) and refuses anything else (anchors, aliases, tags, multi-line scalars) with
the file and line, so a config is never read as less than it says.

Pure functions of plain data (the host is read only by ``find`` through the callables it is given).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import re

try:
    from urllib.parse import urlsplit
except ImportError:  # pragma: no cover - Python 2 is not supported by the collection
    urlsplit = None

# config/configuration.go: DefaultConfigFiles, defaultUserConfigDirs, defaultNixConfigDirs - in this order.
CONFIG_FILES = ('config.yml', 'config.yaml')
USER_DIRS = ('.cloudflared', '.cloudflare-warp', 'cloudflare-warp')
SYSTEM_DIRS = ('/etc/cloudflared', '/usr/local/etc/cloudflared')
# Where the unit of the service is (cloudflared service install writes /etc/systemd/system/cloudflared.service).
UNIT_DIRS = ('/etc/systemd/system', '/run/systemd/system', '/usr/lib/systemd/system', '/lib/systemd/system')
UNIT_NAMES = ('cloudflared.service',)
# ingress/origin_service.go newTCPOverWSService; http/https/ws/wss: Go's HTTP transport defaults.
DEFAULT_PORTS = {'http': 80, 'ws': 80, 'https': 443, 'wss': 443, 'ssh': 22, 'rdp': 3389, 'smb': 445, 'tcp': 7864}
HTTP_SCHEMES = ('http', 'https', 'ws', 'wss')  # ingress/ingress.go isHTTPService
# ingress/ingress.go: services that open no connection of their own.
LOCAL_SERVICES = ('hello_world', 'hello-world')
ACCESS_HOST = '%s.cloudflareaccess.com'        # ingress/middleware/jwtvalidator.go cloudflareAccessCertsURL
ACCESS_FED_HOST = '%s.fed.cloudflareaccess.com'  # ... cloudflareAccessFedCertsURL (environment "fed")
HTTPS_PORT = 443


class ConfigError(ValueError):
    """A config that cannot be read or understood; the message names the file (and the rule or line)."""


# ----------------------------------------------------------------------------------------------------------------
# where
# ----------------------------------------------------------------------------------------------------------------
PROXY_VARIABLES = ('HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'ALL_PROXY', 'all_proxy')


def unit_proxies(text):
    """The proxy variables a unit's Environment= lines set: cloudflared's HTTP origins are then reached through the
    proxy (ingress/origin_service.go: http.ProxyFromEnvironment), which the firewall must allow instead."""
    found = []
    for raw in text.splitlines():
        key, dummy, value = raw.strip().partition('=')
        if key.strip() == 'Environment':
            for word in value.replace('"', ' ').split():
                name, equals, setting = word.partition('=')
                if equals and name in PROXY_VARIABLES and setting:
                    found.append('%s=%s' % (name, setting))
    return found


def unit_command(text):
    """(config path or None, token run, user or None) from a systemd unit's text (ExecStart, Environment, User)."""
    config = user = None
    token = False
    for raw in text.splitlines():
        line = raw.strip()
        key, dummy, value = line.partition('=')
        key = key.strip()
        if key == 'User':
            user = value.strip() or None
        elif key == 'Environment' and ('TUNNEL_TOKEN=' in value or 'TUNNEL_TOKEN_FILE=' in value):
            token = True
        elif key == 'ExecStart':
            words = value.split()
            for position, word in enumerate(words):
                if word in ('--config', '-config') and position + 1 < len(words):
                    config = words[position + 1].strip('"\'')
                elif word.startswith(('--config=', '-config=')):
                    config = word.split('=', 1)[1].strip('"\'')
                elif word.startswith(('--token', '-token')):
                    token = True
    return config, token, user


def candidates(homes):
    """The paths cloudflared tries without --config, in its order, for the given home directories."""
    paths = []
    for home in homes:
        for directory in USER_DIRS:
            paths.extend('%s/%s/%s' % (home.rstrip('/'), directory, name) for name in CONFIG_FILES)
    for directory in SYSTEM_DIRS:
        paths.extend('%s/%s' % (directory, name) for name in CONFIG_FILES)
    return paths


def find(read_text, exists, home_of):
    """Where cloudflared's config is on this host: {'path', 'how', 'token', 'unit'}; path None when there is none.

    ``read_text(path)`` -> text or None, ``exists(path)`` -> bool, ``home_of(user)`` -> home directory or None.
    The service's unit first (its ``--config``, its ``User``, a ``--token`` run), then cloudflared's own search
    (``candidates``) in the homes of the service's user and of root.
    """
    unit = config = user = None
    token = False
    proxies = []
    for directory in UNIT_DIRS:
        for name in UNIT_NAMES:
            text = read_text('%s/%s' % (directory, name))
            if text is not None:
                unit = '%s/%s' % (directory, name)
                config, token, user = unit_command(text)
                proxies = unit_proxies(text)
                break
        if unit:
            break
    if config:
        return {'path': config, 'how': 'the --config of %s' % unit, 'token': token, 'unit': unit, 'proxies': proxies}
    homes = []
    for who in (user, 'root'):
        home = home_of(who) if who else None
        if home and home not in homes:
            homes.append(home)
    for path in candidates(homes):
        if exists(path):
            return {'path': path, 'how': "cloudflared's default search", 'token': token, 'unit': unit,
                    'proxies': proxies}
    return {'path': None, 'how': 'none found (%s)' % ', '.join(candidates(homes)), 'token': token, 'unit': unit,
            'proxies': proxies}


# ----------------------------------------------------------------------------------------------------------------
# where, on Windows (the controller computes it from what the host reports: win_firewall_egress' origins step)
# ----------------------------------------------------------------------------------------------------------------
# cmd/cloudflared/windows_service.go: the service cloudflared service install creates; its ImagePath is the
# executable, plus "tunnel run --token-file %PROGRAMDATA%\cloudflared\token" when installed with a token.
WINDOWS_SERVICE = 'Cloudflared'


def split_command_line(text):
    """A Windows command line (a service's ImagePath) as argv, by the rules of CommandLineToArgvW / the C runtime:
    blanks separate, double quotes group, 2n backslashes before a quote are n and the quote counts, 2n+1 are n and a
    literal quote; other backslashes are literal (paths)."""
    words, current, quoted, started, index = [], [], False, False, 0
    text = text or ''
    while index < len(text):
        char = text[index]
        if char == '\\':
            run = len(text[index:]) - len(text[index:].lstrip('\\'))
            if index + run < len(text) and text[index + run] == '"':
                current.append('\\' * (run // 2))
                if run % 2:
                    current.append('"')
                    index += run + 1
                else:
                    index += run
                started = True
                continue
            current.append('\\' * run)
            index += run
            started = True
            continue
        if char == '"':
            quoted, started = not quoted, True
        elif char in ' \t' and not quoted:
            if started:
                words.append(''.join(current))
                current, started = [], False
        else:
            current.append(char)
            started = True
        index += 1
    if started:
        words.append(''.join(current))
    return words


def windows_service_command(image_path):
    """(config path or None, token run, service mode) from the Cloudflared service's ImagePath.

    Service mode: the executable alone (main.go handleServiceMode: the config found, else created, in the default
    config directory); otherwise a command line such as ``tunnel run`` (tunnel/cmd.go: --config defaults to the
    first file of the search, nothing is created).
    """
    words = split_command_line(image_path)
    # An unquoted executable path with blanks (C:\\Program Files\\...): the service manager tries the words up to
    # the first that ends in .exe as the program; so does this.
    ends = [index for index, word in enumerate(words) if word.lower().endswith('.exe')]
    if ends and not words[0].lower().endswith('.exe'):
        words = [' '.join(words[:ends[0] + 1])] + words[ends[0] + 1:]
    config, token = None, False
    for position, word in enumerate(words[1:], 1):
        if word in ('--config', '-config') and position + 1 < len(words):
            config = words[position + 1]
        elif word.startswith(('--config=', '-config=')):
            config = word.split('=', 1)[1]
        elif word.startswith(('--token', '-token')):
            token = True
    return config, token, len(words) <= 1


def windows_candidates(home, service_mode=False, cfdpath=None, program_files_x86=None):
    """The paths cloudflared tries on Windows without --config, in its order (config/configuration.go): config.yml,
    config.yaml in ~/.cloudflared, ~/.cloudflare-warp, ~/cloudflare-warp of the account it runs as (``home``: its
    profile, %USERPROFILE% - C:\\Windows\\System32\\config\\systemprofile for LocalSystem); in service mode also the
    default config directory (DefaultConfigDirectory: %CFDPATH%, else %ProgramFiles(x86)%\\cloudflared). The
    executable's own directory is not searched."""
    import ntpath  # pylint: disable=import-outside-toplevel
    paths = []
    if home:
        for directory in USER_DIRS:
            paths.extend(ntpath.join(home, directory, name) for name in CONFIG_FILES)
    if service_mode:
        default = cfdpath or (ntpath.join(program_files_x86, 'cloudflared') if program_files_x86 else None)
        if default:
            paths.append(ntpath.join(default, CONFIG_FILES[0]))
    return paths


# ----------------------------------------------------------------------------------------------------------------
# YAML, the subset cloudflared configs use
# ----------------------------------------------------------------------------------------------------------------
_INT_RE = re.compile(r'[-+]?[0-9]+\Z')
_KEY_RE = re.compile(r'''((?:"[^"]*"|'[^']*'|[^'"#\s][^#]*?))\s*:(?:\s+|\Z)(.*)\Z''')


def _scalar(text, where):
    text = text.strip()
    if text[:1] in ('&', '*', '!', '|', '>', '%', '@', '`'):
        raise ConfigError('%s: YAML %r is outside the subset this host can read without PyYAML (anchors, aliases, '
                          'tags, block scalars); install PyYAML (python3-yaml) on the host or simplify the file'
                          % (where, text))
    if text[:1] == '"':
        if len(text) < 2 or not text.endswith('"'):
            raise ConfigError('%s: unterminated string %s' % (where, text))
        body = text[1:-1]
        if '\\' in body:
            body = body.encode('latin-1', 'backslashreplace').decode('unicode_escape')
        return body
    if text[:1] == "'":
        if len(text) < 2 or not text.endswith("'"):
            raise ConfigError('%s: unterminated string %s' % (where, text))
        return text[1:-1].replace("''", "'")
    if text[:1] == '[':
        if not text.endswith(']'):
            raise ConfigError('%s: a flow list must end on its line: %s' % (where, text))
        inner = text[1:-1].strip()
        return [_scalar(item, where) for item in inner.split(',')] if inner else []
    if text == '{}':
        return {}
    if text[:1] == '{':
        raise ConfigError('%s: flow mappings ({...}) are outside the subset this host can read without PyYAML; '
                          'write the mapping in block style' % where)
    if text in ('', '~', 'null', 'Null', 'NULL'):
        return None
    if text in ('true', 'True', 'TRUE'):
        return True
    if text in ('false', 'False', 'FALSE'):
        return False
    if _INT_RE.match(text):
        return int(text)
    return text


def _strip_comment(line):
    """The line without its comment (a # at the start or after a blank, outside quotes)."""
    quote = None
    for position, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
        elif char in '"\'':
            if position == 0 or line[position - 1] in ' \t:-[,{':
                quote = char
        elif char == '#' and (position == 0 or line[position - 1] in ' \t'):
            return line[:position]
    return line


def parse_yaml(text, path):
    """The document of ``text`` (a cloudflared config) as dicts, lists and scalars; ConfigError naming path:line."""
    lines = []
    for number, raw in enumerate(text.splitlines(), 1):
        if '\t' in raw[:len(raw) - len(raw.lstrip())]:
            raise ConfigError('%s:%d: a tab in the indentation (YAML allows only spaces)' % (path, number))
        line = _strip_comment(raw).rstrip()
        if not line.strip() or line.strip() in ('---', '...'):
            continue
        lines.append((len(line) - len(line.lstrip(' ')), line.strip(), number))
    if not lines:
        return None
    value, position = _block(lines, 0, lines[0][0], path)
    if position != len(lines):
        raise ConfigError('%s:%d: unexpected indentation' % (path, lines[position][2]))
    return value


def _block(lines, position, indent, path):
    if lines[position][1].startswith('- ') or lines[position][1] == '-':
        return _sequence(lines, position, indent, path)
    return _mapping(lines, position, indent, path)


def _mapping(lines, position, indent, path, first=None):
    result = {}
    while position < len(lines):
        column, text, number = lines[position] if first is None else (indent, first, lines[position][2])
        if first is None and column != indent:
            if column > indent:
                raise ConfigError('%s:%d: unexpected indentation' % (path, number))
            break
        first = None
        match = _KEY_RE.match(text)
        if not match or text.startswith('- '):
            raise ConfigError('%s:%d: expected "key: value", found %r' % (path, number, text))
        key = _scalar(match.group(1), '%s:%d' % (path, number))
        if key in result:
            raise ConfigError('%s:%d: key %r appears twice' % (path, number, key))
        rest = match.group(2).strip()
        position += 1
        if rest:
            result[key] = _scalar(rest, '%s:%d' % (path, number))
        elif position < len(lines) and (lines[position][0] > column or
                                        (lines[position][0] == column and lines[position][1][:2] in ('- ', '-'))):
            result[key], position = _block(lines, position, lines[position][0], path)
        else:
            result[key] = None
    return result, position


def _sequence(lines, position, indent, path):
    result = []
    while position < len(lines):
        column, text, number = lines[position]
        if column != indent or not (text.startswith('- ') or text == '-'):
            if column > indent:
                raise ConfigError('%s:%d: unexpected indentation' % (path, number))
            break
        rest = text[1:].strip()
        item_indent = column + len(text) - len(text[1:].lstrip()) if rest else None
        if not rest:
            position += 1
            if position < len(lines) and lines[position][0] > column:
                item, position = _block(lines, position, lines[position][0], path)
            else:
                item = None
        elif _KEY_RE.match(rest) and rest[:1] not in '"\'[':
            # "- key: value" starts a mapping whose further keys sit at the column of "key".
            item, position = _mapping(lines, position, item_indent, path, first=rest)
        elif rest.startswith('- '):
            raise ConfigError('%s:%d: nested "- - " lists are outside the subset this host can read without PyYAML'
                              % (path, number))
        else:
            item = _scalar(rest, '%s:%d' % (path, number))
            position += 1
        result.append(item)
    return result, position


def load(text, path):
    """The config document: PyYAML's safe_load where the host has it, else parse_yaml. ConfigError naming path."""
    try:
        import yaml  # pylint: disable=import-outside-toplevel
    except ImportError:
        yaml = None
    if yaml is not None:
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError('%s: not valid YAML: %s' % (path, str(error).replace('\n', ' ')))
    else:
        document = parse_yaml(text, path)
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigError('%s: expected a mapping of settings at the top, found %s' % (path, type(document).__name__))
    return document


# ----------------------------------------------------------------------------------------------------------------
# what: ingress rules -> destinations
# ----------------------------------------------------------------------------------------------------------------
def is_loopback(host):
    """localhost and loopback addresses: always allowed (every backend lets loopback out), nothing to open."""
    if host.lower() in ('localhost', 'localhost.', 'ip6-localhost') or host.lower().endswith('.localhost'):
        return True
    try:
        return ipaddress.ip_address(host.strip('[]')).is_loopback
    except ValueError:
        return False


def _describe(path, index, rule):
    name = rule.get('hostname') if isinstance(rule, dict) else None
    return '%s ingress[%d]%s' % (path, index, ' (hostname %s)' % name if name else '')


def _flag(config, key):
    return isinstance(config, dict) and config.get(key) is True


def service_destinations(service, origin_request, defaults, where):
    """What one ingress rule's ``service`` connects to: (destinations, note or None). ConfigError when not understood.

    A destination is {host, port, protocol, kind}; host is a name, an address or (socks-proxy) a CIDR.
    """
    if not isinstance(service, str) or not service:
        raise ConfigError('%s: service=%r: every ingress rule needs a service (cloudflared refuses the file too)'
                          % (where, service))
    if service.startswith(('unix:', 'unix+tls:')):
        return [], 'a unix socket: nothing to open'
    if service.startswith('http_status:'):
        return [], 'answers itself (%s): nothing to open' % service
    if service in LOCAL_SERVICES:
        return [], 'the built-in hello world server: nothing to open'
    if service == 'socks-proxy':
        return _socks(origin_request, where), None
    if service == 'bastion' or _flag(origin_request, 'bastionMode') or _flag(defaults, 'bastionMode'):
        return [], ('bastion: the client chooses the destination, which no allow-list can bound; under a default deny '
                    'it reaches only the origins allowed here')
    if urlsplit is None:  # pragma: no cover
        raise ConfigError('%s: cannot parse URLs on this Python' % where)
    try:
        url = urlsplit(service)
        host = url.hostname
        port = url.port
    except ValueError as error:
        raise ConfigError('%s: service=%r: %s' % (where, service, error))
    scheme = (url.scheme or '').lower()
    if not scheme or not host:
        raise ConfigError('%s: service=%r: not an address cloudflared understands (a URL with a scheme and a host, '
                          'unix:, http_status:, hello_world, socks-proxy or bastion)' % (where, service))
    if url.path not in ('', '/') or url.query:
        raise ConfigError('%s: service=%r: ingress services take no path (cloudflared refuses it too)' % (where, service))
    if port is None:
        port = DEFAULT_PORTS.get(scheme)
    if port is None:
        raise ConfigError('%s: service=%r: scheme %s has no default port in cloudflared; give the port'
                          % (where, service, scheme))
    kind = scheme if scheme in DEFAULT_PORTS else 'tcp (%s)' % scheme
    if scheme not in HTTP_SCHEMES and (_proxy_type(origin_request) or _proxy_type(defaults)) == 'socks':
        return [], ('proxyType socks: the client chooses the destination, which no allow-list can bound; under a '
                    'default deny it reaches only the origins allowed here')
    if is_loopback(host):
        return [], 'loopback (%s): always allowed' % host
    return [{'host': host, 'port': port, 'protocol': 'tcp', 'kind': kind}], None


def _proxy_type(config):
    return config.get('proxyType') if isinstance(config, dict) else None


def _socks(origin_request, where):
    """socks-proxy: the CIDRs and ports its ipRules allow (ipaccess: first match wins, everything else denied)."""
    rules = origin_request.get('ipRules') if isinstance(origin_request, dict) else None
    destinations = []
    for position, rule in enumerate(rules or []):
        here = '%s originRequest.ipRules[%d]' % (where, position)
        if not isinstance(rule, dict) or not isinstance(rule.get('prefix'), str):
            raise ConfigError('%s=%r: expected prefix, ports and allow' % (here, rule))
        try:
            prefix = str(ipaddress.ip_network(rule['prefix'], strict=False))
        except ValueError as error:
            raise ConfigError('%s: prefix=%r: %s' % (here, rule['prefix'], error))
        if rule.get('allow') is not True:
            continue
        ports = rule.get('ports')
        if not ports:
            raise ConfigError('%s: allows every port of %s, which the egress request cannot express (one rule per '
                              'port); list the ports in the rule, or allow them with origins/private_networks'
                              % (here, prefix))
        for port in ports:
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
                raise ConfigError('%s: port %r: expected 1 to 65535' % (here, port))
            destinations.append({'host': prefix, 'port': port, 'protocol': 'tcp', 'kind': 'socks-proxy'})
    return destinations


def _access(origin_request, where):
    """The Access certificates' host when the rule requires Access (ingress.go: only with access.required)."""
    access = origin_request.get('access') if isinstance(origin_request, dict) else None
    if not isinstance(access, dict) or access.get('required') is not True:
        return []
    team = access.get('teamName')
    if not isinstance(team, str) or not re.match(r'[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?\Z', team):
        raise ConfigError('%s: originRequest.access.teamName=%r: expected your Access team name (cloudflared fetches '
                          'its keys from <teamName>.cloudflareaccess.com)' % (where, team))
    host = (ACCESS_FED_HOST if access.get('environment') == 'fed' else ACCESS_HOST) % team
    return [{'host': host, 'port': HTTPS_PORT, 'protocol': 'tcp', 'kind': 'access'}]


def destinations(document, path):
    """Everything cloudflared's config ``document`` (read from ``path``) makes it connect to, besides the edge.

    -> {'origins': [{host, port, protocol, kind, source}], 'notes': [text], 'warp_routing': bool, 'rules': int}.
    ConfigError naming the file and the rule for anything cloudflared itself would refuse or that is not understood.
    """
    ingress = document.get('ingress')
    defaults = document.get('originRequest') or {}
    if not isinstance(defaults, dict):
        raise ConfigError('%s: originRequest=%r: expected a mapping' % (path, defaults))
    if ingress is not None and not isinstance(ingress, list):
        raise ConfigError('%s: ingress=%r: expected a list of rules' % (path, ingress))
    found, notes = [], []
    for index, rule in enumerate(ingress or []):
        where = _describe(path, index, rule)
        if not isinstance(rule, dict):
            raise ConfigError('%s=%r: expected a mapping with service (and hostname, path, originRequest)'
                              % (where, rule))
        origin_request = rule.get('originRequest') or {}
        if not isinstance(origin_request, dict):
            raise ConfigError('%s: originRequest=%r: expected a mapping' % (where, origin_request))
        items, note = service_destinations(rule.get('service'), origin_request, defaults, where)
        items = items + _access(origin_request, where)
        if note:
            notes.append('%s: %s' % (where, note))
        for item in items:
            item['source'] = where
            found.append(item)
    return {'origins': found, 'notes': notes, 'warp_routing': 'warp-routing' in document,
            'rules': len(ingress or [])}
