#!/usr/bin/env bash
# Check a *normal* (non-editable) install of kwik_twisted, as a user gets it from pip:
# a throwaway virtualenv, `pip install` of the working tree, then, from a directory outside the
# checkout (so that nothing is found through it), Twisted must find the kwik: endpoint parsers
# and the `twistd kwik` plugin in site-packages, both endpoint kinds must build from strings,
# and the wheel must ship twisted/plugins/kwik_twisted_plugins.py without adding any
# __init__.py to Twisted's namespace.  Prints one line; exits non-zero on any failure.
#
# The working tree is copied first (tracked and untracked files, minus what .gitignore
# ignores) and installed from the copy: pip builds in the source directory, and setuptools'
# build/ directory would otherwise be left in the checkout, where stale files in build/lib
# can leak into later wheels.
set -euo pipefail

REPO="$(dirname "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")")"
PYTHON="${PYTHON:-python3}"
START=$SECONDS
WORK="$(mktemp -d "${TMPDIR:-/tmp}/kwik-install-check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

copy_source() {
    mkdir -p "$WORK/src"
    if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        # -c and -o: tracked and new files; --exclude-standard drops ignored ones (.venv, ...).
        (cd "$REPO" && git ls-files -z -c -o --exclude-standard |
            xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh |
            tar --null -T - -cf -) | tar -xf - -C "$WORK/src"
    else
        tar -C "$REPO" --exclude=.venv --exclude=.tox --exclude=build --exclude='*.egg-info' \
            --exclude=__pycache__ --exclude=dropin.cache -cf - . | tar -xf - -C "$WORK/src"
    fi
}

copy_source
"$PYTHON" -m venv "$WORK/venv"
VENV_PY="$WORK/venv/bin/python"
if ! "$VENV_PY" -m pip install --quiet --disable-pip-version-check "$WORK/src" \
        >"$WORK/pip.log" 2>&1; then
    cat "$WORK/pip.log" >&2
    echo "check_install: FAILED: pip install of $REPO" >&2
    exit 1
fi

mkdir "$WORK/elsewhere"
cd "$WORK/elsewhere"
# Nothing from the caller's environment may put the checkout on sys.path.
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP

"$VENV_PY" -I - "$WORK" "$REPO" <<'PY'
import sys
from importlib import metadata
from pathlib import Path, PurePosixPath

work, repo = Path(sys.argv[1]), Path(sys.argv[2]).resolve()
failures = []


def check(condition, message):
    if not condition:
        failures.append(message)


import kwik_twisted  # noqa: E402
import twisted.plugins  # noqa: E402

site = Path(kwik_twisted.__file__).resolve().parents[1]
check(site.is_relative_to((work / "venv").resolve()),
      f"kwik_twisted imported from {kwik_twisted.__file__}, not from the new venv")
for entry in sys.path:
    check(not (entry and Path(entry).resolve().is_relative_to(repo)),
          f"the checkout is on sys.path: {entry}")

# The files the distribution installed: the plugin module, and no __init__.py of ours.
files = {PurePosixPath(str(f)) for f in (metadata.files("kwik_twisted") or [])}
check(PurePosixPath("twisted/plugins/kwik_twisted_plugins.py") in files,
      "the wheel does not install twisted/plugins/kwik_twisted_plugins.py")
for ours in ("twisted/__init__.py", "twisted/plugins/__init__.py"):
    check(PurePosixPath(ours) not in files, f"the wheel installs {ours} (it belongs to Twisted)")
plugin_dirs = [Path(p).resolve() for p in twisted.plugins.__path__]
check(any((d / "kwik_twisted_plugins.py").is_file() and d.is_relative_to(site)
          for d in plugin_dirs),
      f"kwik_twisted_plugins.py is not in site-packages' twisted/plugins ({plugin_dirs})")

from twisted.application.service import IServiceMaker  # noqa: E402
from twisted.internet import reactor  # noqa: E402
from twisted.internet.endpoints import clientFromString, serverFromString  # noqa: E402
from twisted.internet.interfaces import (  # noqa: E402
    IStreamClientEndpointStringParserWithReactor,
    IStreamServerEndpointStringParser,
)
from twisted.plugin import getPlugins  # noqa: E402

from kwik_twisted.tools import devcerts  # noqa: E402
from kwik_twisted.endpoints import KwikClientEndpoint, KwikServerEndpoint  # noqa: E402
from kwik_twisted.tap import quote_endpoint_value as q  # noqa: E402

for interface in (IStreamServerEndpointStringParser, IStreamClientEndpointStringParserWithReactor):
    prefixes = [getattr(p, "prefix", None) for p in getPlugins(interface)]
    check(prefixes.count("kwik") == 1, f"{interface.__name__}: kwik parsers found: {prefixes}")
tapnames = [m.tapname for m in getPlugins(IServiceMaker)]
check(tapnames.count("kwik") == 1, f"IServiceMaker tapnames: {tapnames}")



def build(function, description, expected):
    try:
        endpoint = function(reactor, description)
    except Exception as e:
        failures.append(f"{function.__name__}({description!r}): {type(e).__name__}: {e}")
    else:
        check(isinstance(endpoint, expected), f"{function.__name__} gave {endpoint!r}")


paths = devcerts.write_pem_files(work / "certs")
build(serverFromString, f"kwik:0:privateKey={q(str(paths.key))}:certKey={q(str(paths.chain))}",
      KwikServerEndpoint)
build(clientFromString, f"kwik:host=127.0.0.1:port=4433:trustRoots={q(str(paths.ca))}",
      KwikClientEndpoint)

if failures:
    print("check_install: FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
    sys.exit(1)
PY

# The installed twistd script finds the plugin too.
if ! "$WORK/venv/bin/twistd" kwik --help >"$WORK/twistd.log" 2>&1; then
    cat "$WORK/twistd.log" >&2
    echo "check_install: FAILED: twistd kwik --help" >&2
    exit 1
fi

VERSION="$("$VENV_PY" -I -c 'from importlib.metadata import version; print(version("kwik_twisted"))')"
echo "check_install: OK: kwik_twisted $VERSION installed non-editable; kwik: parsers, twistd kwik" \
     "and kwik_twisted_plugins.py found from site-packages ($((SECONDS - START)) s)"
