"""Run localstripe on 127.0.0.1:<port>, in memory only (started by tests/integration/conftest.py).

localstripe has no option to turn persistence off: its store rewrites /tmp/localstripe.pickle on
every write (and `start()` loads it back), and it listens on every interface. This launcher,
like ../shared/peer-djstripe/launcher.py, patches out the disk dump and binds loopback only;
its Stripe behaviour is left exactly as published.
"""

import sys

from aiohttp import web
from localstripe import resources
from localstripe.server import app

resources.Store.dump_to_disk = lambda self: None

if __name__ == "__main__":
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
