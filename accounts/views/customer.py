"""The customer-facing surface: sign in, a page that says who is signed in, sign out."""

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.views.decorators.http import require_GET

from accounts.forms import CustomerLoginForm
from accounts.services.activity import activity_record_login


class CustomerLoginView(auth_views.LoginView):
    template_name = "accounts/customer_login.html"
    authentication_form = CustomerLoginForm
    redirect_authenticated_user = True
    # django-stubs types next_page as str | None; Django resolves a lazy URL the same way.
    next_page = reverse_lazy("customer_home")  # type: ignore[assignment]

    def form_valid(self, form):
        response = super().form_valid(form)
        # Every customer login is usage evidence (kind "login", never throttled).
        activity_record_login(user=form.get_user(), request=self.request)
        return response


class CustomerLogoutView(auth_views.LogoutView):
    next_page = reverse_lazy("customer_login")  # type: ignore[assignment]  # as above


@require_GET
@login_required(login_url=reverse_lazy("customer_login"))
def customer_home(request):
    if request.user.is_staff:
        # Staff never need the product surface; their place is the dashboard.
        return redirect("overview")
    return render(request, "accounts/customer_home.html", {"account": request.user})
