"""
Twisted plugins of kwik_twisted: the ``kwik:`` endpoint-string parsers and the
``twistd kwik`` service maker.

Twisted imports every module in ``twisted/plugins/`` while it scans for plugins, so this one only
instantiates objects defined in kwik_twisted and never imports the reactor (the parsers import
their heavy dependencies when they parse).  This directory must never get an ``__init__.py``:
``twisted.plugins`` belongs to Twisted.
"""

from twisted.application.service import ServiceMaker

from kwik_twisted.parsers import KwikClientParser, KwikServerParser

#: ``serverFromString(reactor, "kwik:4433:privateKey=...:certKey=...")``
kwikServer = KwikServerParser()
#: ``clientFromString(reactor, "kwik:host=example.com:port=4433")``
kwikClient = KwikClientParser()
#: ``twistd kwik --listen ENDPOINT (--forward ENDPOINT | --echo)``
kwikService = ServiceMaker(
    "Kwik tunnel",
    "kwik_twisted.tap",
    "Relay connections between endpoints (for example TCP and kwik:), or echo them.",
    "kwik",
)
