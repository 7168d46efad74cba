"""The WSGI application, with django.contrib.staticfiles serving /static/."""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fwdjango.settings")

from django.contrib.staticfiles.handlers import StaticFilesHandler  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402

application = StaticFilesHandler(get_wsgi_application())
