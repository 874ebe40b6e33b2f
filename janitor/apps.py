from django.apps import AppConfig


class JanitorConfig(AppConfig):
    name = "janitor"
    verbose_name = "Janitor"
