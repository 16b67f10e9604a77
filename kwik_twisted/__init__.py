"""
kwik_twisted: Kwik, a multipath, encrypted transport over UDP, for Twisted.

Applications use it through ``kwik:`` endpoint strings (see the README); the
sans-I/O protocol machinery lives in :mod:`kwik_twisted.wire` (codecs) and
:mod:`kwik_twisted.core` (the connection), and only the modules at this
package's top level know the reactor.
"""

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]
