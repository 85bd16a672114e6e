# -*- coding: utf-8 -*-
"""Check the execution environment's build context, as `ansible-builder create` wrote it.

Usage (mk/packaging.mk runs it in .venv/packaging, after `ansible-builder create`):

    python mk/check_ee.py EE_FILE CONTEXT_DIR TARBALL COLLECTIONS_DIR

- the Containerfile builds FROM the base image EE_FILE names, installs the ansible-core and ansible-runner it asks
  for, installs the galaxy requirements, and introspects the installed collections for their Python and system
  requirements;
- the galaxy requirements install this collection from TARBALL (the one `make collection` built, same version),
  copied byte for byte into the context;
- the definition installs what the controller needs to reach hosts (pypsrp, pywinrm, an ssh client), and the build
  context carries them;
- `ansible-builder introspect` on COLLECTIONS_DIR (the installed collection) finds every requirement of the
  collection's requirements.txt and bindep.txt, i.e. meta/execution-environment.yml is what ansible-builder reads
  and it names those files.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import yaml

COLLECTION = 'tunnelwall.cloudflared'
# What the EE needs to reach hosts at all (not requirements of the collection's code): the connection plugins'
# Python libraries for Windows and an ssh client. (kind, requirement name) as in ee/execution-environment.yml.
CONNECTION_REQUIREMENTS = (('python', 'pypsrp'), ('python', 'pywinrm'), ('system', 'openssh-clients'))


def requirement_name(line):
    """``pypsrp`` of ``pypsrp>=0.8,<1.0``; ``openssh-clients`` of ``openssh-clients [platform:rpm]``."""
    line = line.split('#', 1)[0].strip()
    for mark in ' [<>=!~;':
        line = line.split(mark, 1)[0]
    return line.strip().lower()


def check_definition(definition):
    """The EE definition installs the connection libraries and the ssh client (CONNECTION_REQUIREMENTS)."""
    problems = []
    deps = definition.get('dependencies') or {}
    for kind, name in CONNECTION_REQUIREMENTS:
        listed = deps.get(kind)
        names = {requirement_name(line) for line in listed} if isinstance(listed, list) else set()
        if name not in names:
            problems.append('%s: dependencies.%s does not install %s (needed to reach the hosts)'
                            % ('ee/execution-environment.yml', kind, name))
    return problems


def check_context_requirements(context):
    """ansible-builder wrote the definition's own requirements into the build context."""
    problems = []
    for kind, filename in (('python', 'requirements.txt'), ('system', 'bindep.txt')):
        path = context / '_build' / filename
        names = {requirement_name(line) for line in requirement_lines(path)} if path.is_file() else set()
        for wanted_kind, name in CONNECTION_REQUIREMENTS:
            if wanted_kind == kind and name not in names:
                problems.append('%s does not install %s' % (path, name))
    return problems


def requirement_lines(path):
    """The requirement lines of a pip or bindep file, without comments."""
    lines = []
    for line in path.read_text(encoding='utf-8').splitlines():
        line = line.split('#', 1)[0].strip()
        if line:
            lines.append(line)
    return lines


def check_containerfile(definition, context):
    problems = []
    containerfile = context / 'Containerfile'
    if not containerfile.is_file():
        return ['%s was not written' % containerfile]
    text = containerfile.read_text(encoding='utf-8')
    deps = definition['dependencies']
    expected = {
        'the base image': 'ARG EE_BASE_IMAGE="%s"' % definition['images']['base_image']['name'],
        'the build stages on the base image': 'FROM $EE_BASE_IMAGE AS base',
        'ansible-core': deps['ansible_core']['package_pip'],
        'ansible-runner': deps['ansible_runner']['package_pip'],
        'the galaxy requirements': 'ansible-galaxy collection install $ANSIBLE_GALAXY_CLI_COLLECTION_OPTS -r requirements.yml',
        "the collections' Python and system requirements": 'introspect.py introspect',
        "the definition's own Python and system requirements": '--user-pip=requirements.txt --user-bindep=bindep.txt',
        'their installation': '/output/scripts/assemble',
    }
    for step in definition.get('additional_build_steps', {}).get('prepend_galaxy', []):
        expected['the step %r' % step] = step
    for what, needle in expected.items():
        if needle not in text:
            problems.append('Containerfile: nothing installs %s (no %r)' % (what, needle))
    return problems


def check_collection_tarball(context, tarball):
    problems = []
    requirements = yaml.safe_load((context / '_build' / 'requirements.yml').read_text(encoding='utf-8'))
    names = [c['name'] for c in requirements.get('collections', []) if c.get('type') == 'file']
    if [pathlib.PurePosixPath(n).name for n in names] != [tarball.name]:
        problems.append('_build/requirements.yml installs %s, but `make collection` built %s: update the file name '
                        'in ee/execution-environment.yml (it must follow the version in galaxy.yml)' % (names, tarball.name))
    copied = context / '_build' / 'collections' / tarball.name
    if not copied.is_file():
        problems.append('%s is not in the build context (additional_build_files)' % tarball.name)
    elif copied.read_bytes() != tarball.read_bytes():
        problems.append('%s in the build context is not the tarball just built' % copied)
    return problems


def check_introspection(collections_dir, collection_root):
    """ansible-builder introspect must find the collection's requirements, as the image build will."""
    out = subprocess.run([sys.executable, '-m', 'ansible_builder', 'introspect', str(collections_dir)],
                         check=True, capture_output=True, text=True).stdout
    found = yaml.safe_load(out.split('\n', 1)[1]) or {}   # the first line is a comment naming the folder
    problems = []
    for kind, filename in (('python', 'requirements.txt'), ('system', 'bindep.txt')):
        got = {line.split('#', 1)[0].strip() for line in found.get(kind) or [] if 'from collection %s' % COLLECTION in line}
        for requirement in requirement_lines(collection_root / filename):
            if requirement not in got:
                problems.append('ansible-builder introspect does not find %r of %s (meta/execution-environment.yml)'
                                % (requirement, filename))
    print('>>> ansible-builder introspect: python %s; system %s' % (
        ', '.join(found.get('python') or []) or 'none', ', '.join(found.get('system') or []) or 'none'))
    return problems


def main(argv):
    if len(argv) != 5:
        sys.exit(__doc__)
    ee_file, context, tarball, collections_dir = (pathlib.Path(a) for a in argv[1:])
    definition = yaml.safe_load(ee_file.read_text(encoding='utf-8'))
    collection_root = collections_dir.joinpath('ansible_collections', *COLLECTION.split('.'))
    problems = check_definition(definition)
    problems += check_context_requirements(context)
    problems += check_containerfile(definition, context)
    problems += check_collection_tarball(context, tarball)
    problems += check_introspection(collections_dir, collection_root)
    if problems:
        print('FAILED: the execution environment build context (%s):' % context, file=sys.stderr)
        for problem in problems:
            print('  - ' + problem, file=sys.stderr)
        return 1
    print('>>> %s: FROM %s, %s, %s, %s from %s, and its requirements by introspection' % (
        context / 'Containerfile', definition['images']['base_image']['name'],
        definition['dependencies']['ansible_core']['package_pip'], definition['dependencies']['ansible_runner']['package_pip'],
        COLLECTION, tarball.name))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
