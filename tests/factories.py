"""factory-boy factories for the models the tests build."""

from datetime import timedelta

import factory
from django.contrib.auth.models import Group
from django.utils import timezone

from accounts.models import (
    AccessStatus,
    Account,
    ActivityKind,
    ActivityLog,
    User,
    public_id_generate,
)
from reconciliation.models import Dispute, Flag, FlagKind, Subscription, WebhookEvent

PASSWORD = "correct-horse-battery"


class AccountFactory(factory.django.DjangoModelFactory):
    """A customer account. `members=N` (default 1) creates its members: the first one has the
    account's public id and email (someone who pays for themselves), the others their own.
    The first member is also on `account.member`."""

    class Meta:
        model = Account
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"customer{n}@example.com")
    name = factory.Faker("name")
    stripe_customer_id = factory.Sequence(lambda n: f"cus_test{n:06d}")
    access_status = AccessStatus.ACTIVE
    is_active = factory.LazyAttribute(lambda o: o.access_status != AccessStatus.REVOKED)

    @factory.post_generation
    def members(obj, create, extracted, **kwargs):
        if not create:
            return
        count = 1 if extracted is None else extracted
        people = []
        for k in range(count):
            people.append(
                UserFactory(
                    account=obj,
                    public_id=obj.public_id if k == 0 else f"{obj.public_id}-m{k}",
                    email=obj.email
                    if k == 0 and obj.email
                    else f"m{k}.{obj.public_id}@example.com",
                    name=obj.name if k == 0 else f"Member {k}",
                    **kwargs,
                )
            )
        obj.member = people[0] if people else None
        obj.team = people


class UserFactory(factory.django.DjangoModelFactory):
    """A member of a customer account (its own account unless `account=` is given). The
    account's access_status, grace_ends_at and stripe_customer_id may be passed through."""

    class Meta:
        model = User
        skip_postgeneration_save = True

    class Params:
        access_status = AccessStatus.ACTIVE
        grace_ends_at = None
        stripe_customer_id = factory.Sequence(lambda n: f"cus_mtest{n:06d}")

    public_id = factory.LazyFunction(public_id_generate)
    email = factory.Sequence(lambda n: f"member{n}@example.com")
    name = factory.Faker("name")
    # Its own account (someone who pays for themselves) has the member's public id and email.
    account = factory.SubFactory(
        AccountFactory,
        members=0,
        public_id=factory.SelfAttribute("..public_id"),
        email=factory.SelfAttribute("..email"),
        name=factory.SelfAttribute("..name"),
        access_status=factory.SelfAttribute("..access_status"),
        grace_ends_at=factory.SelfAttribute("..grace_ends_at"),
        stripe_customer_id=factory.SelfAttribute("..stripe_customer_id"),
    )
    is_active = True
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def saved(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class StaffFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"staff{n}@janitor.test")
    name = factory.Faker("name")
    account = None
    is_staff = True
    is_active = True
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def saved(obj, create, extracted, **kwargs):
        if create:
            obj.save()

    @factory.post_generation
    def role(obj, create, extracted, **kwargs):
        if create and extracted:
            obj.groups.add(Group.objects.get(name=extracted))


class SubscriptionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Subscription

    provider_id = factory.Sequence(lambda n: f"sub_test{n:06d}")
    account = factory.SubFactory(AccountFactory)
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

    class Params:
        account = None  # an Account (its first member did it) or a member

    member = factory.LazyAttribute(
        lambda o: (
            UserFactory()
            if o.account is None
            else o.account
            if isinstance(o.account, User)
            else o.account.members.order_by("pk").first()
        )
    )
    occurred_at = factory.LazyFunction(timezone.now)
    kind = ActivityKind.REQUEST
    path = "/app/"
    ip_address = "203.0.113.7"
    user_agent = "Mozilla/5.0 (test)"


class FlagFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Flag

    account = factory.SubFactory(AccountFactory)
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
    account = factory.SubFactory(AccountFactory)
    customer_id = factory.LazyAttribute(lambda o: o.account.stripe_customer_id if o.account else "")
    charge_id = factory.Sequence(lambda n: f"ch_test{n:06d}")
    amount = 1500
    currency = "usd"
    reason = "subscription_canceled"
    status = "needs_response"
    due_by = factory.LazyFunction(lambda: timezone.now() + timedelta(days=5))
    provider_updated_at = factory.LazyFunction(timezone.now)
