"""Django: the ORM on SQLite, a form POST with CSRF, a static file, the admin
login page, in every mode."""
import re
import subprocess
import sys

from conftest import FW_APPS, assert_mode, client, server_fixture  # noqa: F401


def migrate(logdir):
    db = str(logdir / "db.sqlite3")
    env = e2e_env({"GORGON_FW_DJANGO_DB": db})
    subprocess.run([sys.executable, "-m", "django", "migrate", "--run-syncdb", "-v", "0",
                    "--settings", "fwdjango.settings"], env=env, check=True, timeout=120)
    return {"GORGON_FW_DJANGO_DB": db}


def e2e_env(extra):
    from conftest import e2e
    env = e2e.server_env(extra)
    env["PYTHONPATH"] += ":" + str(FW_APPS)
    return env


srv = server_fixture("fwdjango.wsgi:application", auto_expected="interpreters", before=migrate)


def test_mode(srv, client):
    assert_mode(srv, client, "/who/")


def test_form_with_csrf_creates_rows(client):
    before = client.get("/items/").json()["count"]
    page = client.get("/form/")
    assert page.status_code == 200 and "csrftoken" in client.cookies
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    r = client.post("/form/", data={"csrfmiddlewaretoken": token, "name": "first"})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "first" and r.json()["count"] == before + 1
    items = client.get("/items/").json()
    assert items["count"] == before + 1 and items["names"][-1] == "first"


def test_post_without_csrf_token_is_403(client):
    client.get("/form/")
    r = client.post("/form/", data={"name": "sneaky"})
    assert r.status_code == 403 and "CSRF" in r.text


def test_invalid_form_is_400(client):
    page = client.get("/form/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    r = client.post("/form/", data={"csrfmiddlewaretoken": token, "name": ""})
    assert r.status_code == 400 and "name" in r.json()["errors"]


def test_static_file(client):
    r = client.get("/static/app.css")
    assert r.status_code == 200 and "#123456" in r.text and r.headers["content-type"].startswith("text/css")


def test_admin_login_page(client):
    r = client.get("/admin/", follow_redirects=False)
    assert r.status_code == 302 and "/admin/login/" in r.headers["location"]
    r = client.get("/admin/login/")
    assert r.status_code == 200 and "Django administration" in r.text and 'name="password"' in r.text
