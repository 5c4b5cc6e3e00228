# Stand-in for the get-pip script ansible-test downloads to bootstrap pip in its sanity virtualenvs.
# The download host is unreachable here. The packages it asks for (pip==<version>; setuptools and wheel unless told
# not to) are installed into the new virtualenv by uv, which `make` installs into .cache/venv and puts on PATH: a
# sanity run makes ten virtualenvs, and ensurepip followed by pip took ~5 CPU-seconds for each, uv a fraction of one.
# Where uv is not found, ansible-test passes an option this script does not know, or uv fails (an index it cannot
# reach), the interpreter's bundled pip is bootstrapped with ensurepip and installs the packages as pip is configured.
# Installed by `make` as ~/.ansible/test/cache/get_pip_<version>.py.
from __future__ import annotations

import ensurepip
import os
import shutil
import subprocess
import sys

# get-pip's own switches; plain pip does not know them.
GET_PIP_ONLY = {'--no-setuptools', '--no-wheel'}
# Options ansible-test passes that change nothing uv does.
PIP_ONLY = {'--disable-pip-version-check'}


def with_uv(args: list[str]) -> bool:
    """Installs what get-pip would with uv; False when uv is missing, an option is unknown or uv failed."""
    uv = shutil.which('uv')
    options = [arg for arg in args if arg.startswith('-')]
    if uv is None or set(options) - GET_PIP_ONLY - PIP_ONLY:
        return False
    packages = [arg for arg in args if not arg.startswith('-')]
    packages += [name for name in ('setuptools', 'wheel') if f'--no-{name}' not in options]
    # ansible-test passes on no TLS or index variables, only HOME and PATH (pip finds its settings in pip.conf, which uv
    # does not read): the system's certificate store is where a machine's own CA is found.
    installed = subprocess.run([uv, 'pip', 'install', '--quiet', '--system-certs', '--python', sys.executable, *packages],
                               capture_output=True, text=True, check=False)
    if installed.returncode != 0:
        print(f'uv could not install {" ".join(packages)} (bootstrapping pip with ensurepip instead):\n{installed.stderr}', file=sys.stderr)
    return installed.returncode == 0


def with_ensurepip(args: list[str]) -> None:
    # ensurepip points PIP_CONFIG_FILE at /dev/null for its own run; the install below must see the
    # machine's pip configuration (index, CA bundle) again.
    environment = dict(os.environ)
    ensurepip.bootstrap(upgrade=True)
    pip_args = [arg for arg in args if arg not in GET_PIP_ONLY]
    subprocess.run([sys.executable, '-m', 'pip', 'install', *pip_args], check=True, env=environment)


def main() -> None:
    if not with_uv(sys.argv[1:]):
        with_ensurepip(sys.argv[1:])


if __name__ == '__main__':
    main()
