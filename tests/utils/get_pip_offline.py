# Stand-in for the get-pip script ansible-test downloads to bootstrap pip in its sanity virtualenvs.
# The download host is unreachable here. The packages it asks for (pip==<version>; setuptools and wheel unless told
# not to) are installed into the new virtualenv by uv, which `make` installs into .cache/venv and puts on PATH: a
# sanity run makes ten virtualenvs, and ensurepip followed by pip took ~5 CPU-seconds for each, uv a fraction of one.
# ansible-test passes the script no proxy, certificate or index variables, only HOME and PATH; pip finds its settings
# in pip.conf, which uv does not read. So the interpreter's bundled pip is bootstrapped with ensurepip and installs the
# packages, as pip is configured, where pip.conf names an index, links or a proxy (a mirror uv would bypass), where
# uv is not found or ansible-test passes an option this script does not know, and where uv fails (quickly: short
# timeouts, no retries). Each time it says why on stderr.
# Installed by `make` as ~/.ansible/test/cache/get_pip_<version>.py.
from __future__ import annotations

import configparser
import ensurepip
import os
import shutil
import subprocess
import sys

# get-pip's own switches; plain pip does not know them.
GET_PIP_ONLY = {'--no-setuptools', '--no-wheel'}
# Options ansible-test passes that change nothing uv does.
PIP_ONLY = {'--disable-pip-version-check'}
# pip.conf settings that send pip elsewhere than PyPI.
PIP_SOURCES = {'index-url', 'extra-index-url', 'find-links', 'proxy'}
# uv gives up on an index it cannot reach in seconds, not minutes, so the fallback is not slower than pip alone.
UV_ENVIRONMENT = {'UV_HTTP_TIMEOUT': '10', 'UV_HTTP_RETRIES': '0'}


def pip_config_files() -> list[str]:
    """The files pip reads its configuration from on Linux, global then user."""
    config_home = os.environ.get('XDG_CONFIG_HOME') or os.path.expanduser('~/.config')
    return ['/etc/pip.conf', '/etc/xdg/pip/pip.conf', os.path.expanduser('~/.pip/pip.conf'), os.path.join(config_home, 'pip', 'pip.conf')]


def pip_sources(paths: list[str]) -> list[str]:
    """The settings in these pip.conf files that send pip elsewhere than PyPI, as `file: name`."""
    found = []
    for path in paths:
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(path, encoding='utf-8')
        except (configparser.Error, UnicodeDecodeError):
            found.append(f'{path}: unreadable')
            continue
        found += [f'{path}: {name}' for section in parser.sections() for name in parser[section] if name in PIP_SOURCES]
    return found


def why_not_uv(args: list[str], uv: str | None, sources: list[str]) -> str | None:
    """Why uv must not install `args`; None if it may."""
    unknown = {arg for arg in args if arg.startswith('-')} - GET_PIP_ONLY - PIP_ONLY
    if uv is None:
        return 'no uv on PATH'
    if unknown:
        return f'options uv does not take: {" ".join(sorted(unknown))}'
    if sources:
        return f'pip is configured to install from elsewhere ({", ".join(sources)})'
    return None


def with_uv(uv: str, args: list[str]) -> str | None:
    """Installs what get-pip would with uv; why it could not (None when it did)."""
    options = [arg for arg in args if arg.startswith('-')]
    packages = [arg for arg in args if not arg.startswith('-')]
    packages += [name for name in ('setuptools', 'wheel') if f'--no-{name}' not in options]
    installed = subprocess.run([uv, 'pip', 'install', '--quiet', '--system-certs', '--python', sys.executable, *packages],
                               capture_output=True, text=True, check=False, env=dict(os.environ, **UV_ENVIRONMENT))
    return None if installed.returncode == 0 else f'uv failed:\n{installed.stderr}'


def with_ensurepip(args: list[str]) -> None:
    # ensurepip points PIP_CONFIG_FILE at /dev/null for its own run; the install below must see the
    # machine's pip configuration (index, CA bundle) again.
    environment = dict(os.environ)
    ensurepip.bootstrap(upgrade=True)
    pip_args = [arg for arg in args if arg not in GET_PIP_ONLY]
    subprocess.run([sys.executable, '-m', 'pip', 'install', *pip_args], check=True, env=environment)
    # ensurepip brings setuptools whatever get-pip was told: leave what get-pip would have left.
    unwanted = [name for name in ('setuptools', 'wheel') if f'--no-{name}' in args]
    if unwanted:
        subprocess.run([sys.executable, '-m', 'pip', 'uninstall', '--yes', '--quiet', *unwanted], check=True, env=environment)


def main() -> None:
    args = sys.argv[1:]
    uv = shutil.which('uv')
    reason = why_not_uv(args, uv, pip_sources(pip_config_files()))
    if reason is None:
        reason = with_uv(uv, args)
    if reason is not None:
        print(f'bootstrapping pip with ensurepip, not uv: {reason}', file=sys.stderr)
        with_ensurepip(args)


if __name__ == '__main__':
    main()
