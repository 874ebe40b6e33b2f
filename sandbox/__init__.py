"""The Stripe sandbox: one fake Stripe for the test suite and for the demo (`make run`)."""

# What `make run` wires when no STRIPE_API_KEY is set (sandbox/wiring.py). Demo-only values:
# the sandbox answers on 127.0.0.1 alone and refuses to start outside development mode.
SANDBOX_API_KEY = "sk_test_janitor_sandbox"
SANDBOX_WEBHOOK_SECRET = "whsec_janitor_sandbox_demo_only"
SANDBOX_HOST = "127.0.0.1"
SANDBOX_DEFAULT_PORT = 12111
