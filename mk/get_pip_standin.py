"""Stand-in for ansible-test's get-pip.py (mk/sanity.mk copies it into ansible-test's cache).

ansible-test bootstraps pip in each sanity venv with a get-pip.py it downloads from ci-files.testing.ansible.com,
which is not reachable here; it uses ~/.ansible/test/cache/get_pip_<version>.py instead when that exists. This one
bootstraps pip from the Python's own ensurepip, then lets pip install the requested pip version from PyPI.
"""
import subprocess
import sys

# ensurepip runs in a child process: it points PIP_CONFIG_FILE at /dev/null in its own environment, and the pip run
# below must still read the machine's pip configuration (certificate bundle, constraints).
subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", *args])
if "--no-setuptools" in sys.argv:
    # ensurepip of Python < 3.12 also brings setuptools; the real get-pip would not.
    subprocess.call([sys.executable, "-m", "pip", "uninstall", "--yes", "--quiet", "setuptools"],
                    stderr=subprocess.DEVNULL)
