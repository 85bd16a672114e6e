# -*- coding: utf-8 -*-
"""Import a collection tarball the way Galaxy does, and say plainly how it went.

Usage (mk/packaging.mk runs it in .venv/packaging):

    python mk/galaxy_import.py TARBALL WORKDIR

Runs galaxy-importer on TARBALL with WORKDIR as its working directory (it
writes importer_result.json there), shows its log, then summarises the result:
what Galaxy would list, which plugins it would show documentation for, and the
number of warnings and errors. Exits non-zero when the import fails, when the
importer logs an error, or when a module, lookup or role would have no
documentation on Galaxy. Warnings (ansible-lint findings, mostly) are shown
and counted; GALAXY_IMPORTER_STRICT=1 makes them fail the run too.
"""

from __future__ import annotations

import collections
import json
import os
import pathlib
import subprocess
import sys

# Content Galaxy renders a documentation page for, and where it takes it from.
DOCUMENTED = {'module': 'doc_strings', 'lookup': 'doc_strings', 'role': 'readme_html'}


def run_importer(tarball, workdir):
    """Run galaxy-importer, echo its log, return (exit code, warning lines, error lines)."""
    warnings, errors = [], []
    with subprocess.Popen([sys.executable, '-m', 'galaxy_importer.main', str(tarball)], cwd=workdir,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            line = line.rstrip('\n')
            if not line.startswith('Loading '):   # one line per plugin; the summary lists them
                print('    ' + line, flush=True)
            if line.startswith('WARNING:'):
                warnings.append(line)
            elif line.startswith(('ERROR:', 'CRITICAL:')) or line.startswith('Traceback'):
                errors.append(line)
    return proc.returncode, warnings, errors


def summarise(result):
    """Print what Galaxy would show; return the problems that must fail the run."""
    meta = result['metadata']
    print('>>> %s.%s %s, requires ansible-core %s, license %s' % (
        meta['namespace'], meta['name'], meta['version'], result.get('requires_ansible'),
        ', '.join(meta.get('license') or []) or result.get('custom_license')))
    by_type = collections.defaultdict(set)
    for item in result['contents']:
        by_type[item['content_type']].add(item['name'])
    for content_type in sorted(by_type):
        print('    %-14s %s' % (content_type, ', '.join(sorted(by_type[content_type]))))

    problems = []
    blob = result.get('docs_blob') or {}
    for item in blob.get('contents', []):
        field = DOCUMENTED.get(item['content_type'])
        if field and not item.get(field):
            problems.append('%s %s: Galaxy would show no documentation for it (no %s)'
                            % (item['content_type'], item['content_name'], field))
    if not (blob.get('collection_readme') or {}).get('html'):
        problems.append('the collection README was not rendered')
    documented = sorted('%s (%s)' % (item['content_name'], item['content_type']) for item in blob.get('contents', [])
                        if DOCUMENTED.get(item['content_type']) and item.get(DOCUMENTED[item['content_type']]))
    print('    documented:    %s' % ', '.join(documented))
    files = [f['name'] for f in blob.get('documentation_files', [])]
    print('    docs/ pages:   %s' % (', '.join(files) or 'none'))
    return problems


def main(argv):
    if len(argv) != 3:
        sys.exit(__doc__)
    tarball = pathlib.Path(argv[1]).resolve()
    workdir = pathlib.Path(argv[2]).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / 'importer_result.json').unlink(missing_ok=True)

    print('>>> galaxy-importer on %s' % tarball.name, flush=True)
    code, warnings, errors = run_importer(tarball, workdir)
    result_file = workdir / 'importer_result.json'
    problems = []
    if code != 0 or not result_file.exists():
        problems.append('galaxy-importer failed (exit code %s): Galaxy would reject this tarball' % code)
    else:
        problems.extend(summarise(json.loads(result_file.read_text(encoding='utf-8'))))
    problems.extend('importer error: ' + line for line in errors)
    strict = os.environ.get('GALAXY_IMPORTER_STRICT', '') not in ('', '0')
    if strict:
        problems.extend('importer warning (GALAXY_IMPORTER_STRICT=1): ' + line for line in warnings)

    print('>>> galaxy-importer: %d error(s), %d warning(s)%s; full result in %s' % (
        len(errors), len(warnings), '' if strict or not warnings else ' (warnings do not fail the import)', result_file))
    if problems:
        print('FAILED: the Galaxy import of %s:' % tarball.name, file=sys.stderr)
        for problem in problems:
            print('  - ' + problem, file=sys.stderr)
        return 1
    print('>>> the Galaxy import of %s passes' % tarball.name)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
