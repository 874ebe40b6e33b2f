"""factory-boy factories for the models the tests build."""

from datetime import timedelta

import factory
from django.contrib.auth.models import Group
from django.utils import timezone

from accounts.models import AccessStatus, ActivityKind, ActivityLog, User
from reconciliation.models import Dispute, Flag, FlagKind, Subscription, WebhookEvent

PASSWORD = "correct-horse-battery"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"customer{n}@example.com")
    name = factory.Faker("name")
    stripe_customer_id = factory.Sequence(lambda n: f"cus_test{n:06d}")
    access_status = AccessStatus.ACTIVE
    is_active = True
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def saved(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class StaffFactory(UserFactory):
    email = factory.Sequence(lambda n: f"staff{n}@janitor.test")
    stripe_customer_id = ""
    is_staff = True

    @factory.post_generation
    def role(obj, create, extracted, **kwargs):
        if create and extracted:
            obj.groups.add(Group.objects.get(name=extracted))


class SubscriptionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Subscription

    provider_id = factory.Sequence(lambda n: f"sub_test{n:06d}")
    account = factory.SubFactory(UserFactory)
    customer_id = factory.LazyAttribute(lambda o: o.account.stripe_customer_id if o.account else "")
    status = "active"
    price_id = "price_basic"
    plan_name = "Basic"
    amount = 1500
    currency = "usd"
    interval = "month"
    current_period_end = factory.LazyFunction(lambda: timezone.now() + timedelta(days=20))
    provider_updated_at = factory.LazyFunction(timezone.now)


class ActivityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ActivityLog

    account = factory.SubFactory(UserFactory)
    occurred_at = factory.LazyFunction(timezone.now)
    kind = ActivityKind.REQUEST
    path = "/app/"
    ip_address = "203.0.113.7"
    user_agent = "Mozilla/5.0 (test)"


class FlagFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Flag

    account = factory.SubFactory(UserFactory)
    kind = FlagKind.MISSING_SUBSCRIPTION
    reason = "No access-granting subscription at the provider."


class WebhookEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = WebhookEvent

    provider_event_id = factory.Sequence(lambda n: f"evt_test{n:06d}")
    type = "customer.subscription.updated"
    created = factory.LazyFunction(timezone.now)
    payload = factory.LazyAttribute(
        lambda o: {"id": o.provider_event_id, "type": o.type, "data": {"object": {}}}
    )


class DisputeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Dispute

    provider_id = factory.Sequence(lambda n: f"dp_test{n:06d}")
    account = factory.SubFactory(UserFactory)
    customer_id = factory.LazyAttribute(lambda o: o.account.stripe_customer_id if o.account else "")
    charge_id = factory.Sequence(lambda n: f"ch_test{n:06d}")
    amount = 1500
    currency = "usd"
    reason = "subscription_canceled"
    status = "needs_response"
    due_by = factory.LazyFunction(lambda: timezone.now() + timedelta(days=5))
    provider_updated_at = factory.LazyFunction(timezone.now)
