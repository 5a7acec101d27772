"""A minimal Django project holding the original chat app's models, so that
the importer's tests read a database Django itself created and filled."""

import os
from urllib.parse import urlparse

SECRET_KEY = "django-fixture-only-not-a-secret"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "chat",
]
# DJANGO_FIXTURE_PG (a postgres:// URL) builds the fixture in PostgreSQL;
# otherwise DJANGO_FIXTURE_DB names the SQLite file.
if os.environ.get("DJANGO_FIXTURE_PG"):
    _url = urlparse(os.environ["DJANGO_FIXTURE_PG"])
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": _url.path.lstrip("/"),
            "USER": _url.username or "",
            "PASSWORD": _url.password or "",
            "HOST": _url.hostname or "",
            "PORT": str(_url.port or ""),
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ["DJANGO_FIXTURE_DB"],
        }
    }
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
