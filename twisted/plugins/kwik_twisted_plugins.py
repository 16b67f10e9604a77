"""
Twisted plugins of kwik_twisted: the ``kwik:`` endpoint-string parsers and the
``twistd kwik`` service maker.

Placeholder: the parser and ServiceMaker instances land with the
Twisted-integration issue.  This file must stay cheap to import (Twisted imports
every plugin module while scanning), so it will only instantiate objects defined
in kwik_twisted and will never import the reactor.  This directory must never get
an ``__init__.py``: ``twisted.plugins`` belongs to Twisted.
"""
