"""The environment `make run` gives Janitor's processes when the sandbox stands in for Stripe.

`python -m sandbox.wiring [PORT]` prints it as shell exports (scripts/run evals them); the
browser tests start their sandbox with the same function.
"""

from __future__ import annotations

import shlex
import sys

from sandbox import SANDBOX_API_KEY, SANDBOX_DEFAULT_PORT, SANDBOX_HOST, SANDBOX_WEBHOOK_SECRET


def sandbox_environment(*, port: int = SANDBOX_DEFAULT_PORT) -> dict[str, str]:
    return {
        "JANITOR_SANDBOX": "true",
        "JANITOR_SANDBOX_PORT": str(port),
        "STRIPE_API_KEY": SANDBOX_API_KEY,
        "STRIPE_API_BASE": f"http://{SANDBOX_HOST}:{port}",
        "STRIPE_WEBHOOK_SECRET": SANDBOX_WEBHOOK_SECRET,
    }


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else SANDBOX_DEFAULT_PORT
    for name, value in sandbox_environment(port=port).items():
        print(f"export {name}={shlex.quote(value)}")
