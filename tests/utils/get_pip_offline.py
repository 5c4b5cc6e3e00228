# Stand-in for the get-pip script ansible-test downloads to bootstrap pip in its sanity virtualenvs.
# The download host is unreachable here, so bootstrap the interpreter's bundled pip with ensurepip
# and let that pip install the requested version from the package index.
# Installed by `make` as ~/.ansible/test/cache/get_pip_<version>.py.
from __future__ import annotations

import ensurepip
import os
import subprocess
import sys

# get-pip's own switches; plain pip does not know them.
GET_PIP_ONLY = {'--no-setuptools', '--no-wheel'}


def main() -> None:
    # ensurepip points PIP_CONFIG_FILE at /dev/null for its own run; the install below must see the
    # machine's pip configuration (index, CA bundle) again.
    environment = dict(os.environ)
    ensurepip.bootstrap(upgrade=True)
    args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
    subprocess.run([sys.executable, '-m', 'pip', 'install', *args], check=True, env=environment)


if __name__ == '__main__':
    main()
