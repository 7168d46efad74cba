"""A small Django project for the framework tier: the ORM on SQLite, a form
with CSRF protection, a static file, the admin's login page. The database
file is GORGON_FW_DJANGO_DB; the tests run `migrate --run-syncdb` first."""
