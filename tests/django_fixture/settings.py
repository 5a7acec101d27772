"""A minimal Django project holding the original chat app's models, so that
the importer's tests read a database Django itself created and filled."""

import os

SECRET_KEY = "django-fixture-only-not-a-secret"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "chat",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["DJANGO_FIXTURE_DB"],
    }
}
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
