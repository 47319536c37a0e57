from __future__ import annotations

import re
import stat
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from studio.models import Membership, Team, User
from studio.signin import client_address

LOGIN = "/accounts/login/"
ADMIN_LOGIN = "/admin/login/"


@pytest.fixture(autouse=True)
def _limits(settings):
    settings.S2V_SIGNIN_ACCOUNT_LIMIT = 3
    settings.S2V_SIGNIN_ADDRESS_LIMIT = 6
    settings.AXES_FAILURE_LIMIT = 3
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)
    settings.S2V_PROXY_COUNT = 0


@pytest.fixture
def bob(db: None) -> User:
    return User.objects.create_user("bob", "bob@example.com", "right-horse-42")


def sign_in(
    client: Client,
    username: str,
    password: str,
    address: str = "10.0.0.1",
    url: str = LOGIN,
    **extra: str,
):
    return client.post(
        url,
        {"username": username, "password": password},
        REMOTE_ADDR=address,
        **extra,
    )


def assert_locked_out(response) -> None:
    assert response.status_code == 429
    html = response.content.decode()
    assert '<link rel="stylesheet" href="/static/studio/studio.css">' in html
    assert re.search(
        r"Too many failed sign-ins\. Try again in 15 minutes, at \d\d:\d\d", html
    )
    assert response["Retry-After"] == "900"
    assert '<form method="post" action="/accounts/login/">' in html


def test_wrong_passwords_for_one_account_lock_it_from_every_address(bob, client):
    for i in range(3):
        response = sign_in(client, "bob", "wrong", address=f"10.0.1.{i}")
        assert response.status_code == 200 if i < 2 else 429
    # Even the right password, from a fresh address, waits out the cool-off.
    assert_locked_out(sign_in(client, "bob", "right-horse-42", address="10.0.9.9"))
    assert "_auth_user_id" not in client.session


def test_the_lockout_says_when_to_try_again_and_keeps_the_username(bob, client):
    for _ in range(3):
        response = sign_in(client, "bob", "wrong")
    assert_locked_out(response)
    assert 'value="bob"' in response.content.decode()
    retry_at = timezone.localtime(timezone.now() + timedelta(minutes=15))
    assert f"at {retry_at:%H:%M}" in response.content.decode() or (
        f"at {retry_at - timedelta(minutes=1):%H:%M}" in response.content.decode()
    )


def test_wrong_passwords_for_many_accounts_lock_the_address(db, client):
    for i in range(6):
        User.objects.create_user(f"user{i}", password="right-horse-42")
    for i in range(5):
        assert sign_in(client, f"user{i}", "wrong").status_code == 200
    assert_locked_out(sign_in(client, "user5", "wrong"))
    # The address is refused, even with a right password...
    assert_locked_out(sign_in(client, "user5", "right-horse-42"))
    # ...while the same account from another address is not.
    assert (
        sign_in(Client(), "user5", "right-horse-42", address="10.0.0.2").status_code
        == 302
    )


def test_a_success_resets_the_account_count(bob, client):
    for _ in range(2):
        assert sign_in(client, "bob", "wrong").status_code == 200
    assert sign_in(client, "bob", "right-horse-42").status_code == 302
    client.logout()
    # Two more failures would have locked it without the reset.
    for _ in range(2):
        assert sign_in(client, "bob", "wrong").status_code == 200
    assert sign_in(client, "bob", "right-horse-42").status_code == 302


def test_the_cool_off_ends(bob, client, settings):
    for _ in range(3):
        sign_in(client, "bob", "wrong")
    assert_locked_out(sign_in(client, "bob", "right-horse-42"))
    settings.AXES_COOLOFF_TIME = timedelta(seconds=0)
    assert sign_in(client, "bob", "right-horse-42").status_code == 302


def test_admin_sign_in_is_throttled_too(db, client):
    User.objects.create_superuser("root", "root@example.com", "right-horse-42")
    for _ in range(2):
        response = sign_in(client, "root", "wrong", url=ADMIN_LOGIN)
        assert response.status_code == 200
    assert_locked_out(sign_in(client, "root", "wrong", url=ADMIN_LOGIN))
    # The studio's sign-in counts for the same account.
    assert_locked_out(sign_in(client, "root", "right-horse-42"))


def test_admin_and_studio_failures_add_up(bob, client):
    sign_in(client, "bob", "wrong", url=ADMIN_LOGIN)
    sign_in(client, "bob", "wrong")
    assert_locked_out(sign_in(client, "bob", "wrong", url=ADMIN_LOGIN))


def test_a_spoofed_forwarded_for_does_not_escape_the_address_limit(db, client):
    for i in range(6):
        User.objects.create_user(f"user{i}", password="right-horse-42")
    for i in range(6):
        response = sign_in(
            client, f"user{i}", "wrong", HTTP_X_FORWARDED_FOR=f"203.0.113.{i}"
        )
    assert_locked_out(response)


def test_behind_a_proxy_the_proxys_entry_is_the_client(rf, settings):
    settings.S2V_PROXY_COUNT = 1
    request = rf.post(
        LOGIN, REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.7"
    )
    assert client_address(request) == "198.51.100.7"
    # Fewer entries than proxies, or rubbish: the connection's address.
    assert client_address(rf.post(LOGIN, REMOTE_ADDR="10.0.0.5")) == "10.0.0.5"
    junk = rf.post(LOGIN, REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="nonsense")
    assert client_address(junk) == "10.0.0.5"
    settings.S2V_PROXY_COUNT = 0
    assert client_address(request) == "10.0.0.5"


# -- the demo account -------------------------------------------------------------


@pytest.fixture
def data_dir(settings, tmp_path: Path) -> Path:
    settings.DATA_DIR = tmp_path
    return tmp_path


def seed(**options: str) -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out, **options)
    return out.getvalue()


def test_seed_demo_makes_a_random_password_and_keeps_it(db, data_dir):
    output = seed(url="http://127.0.0.1:8000/")
    path = data_dir / "demo-password"
    password = path.read_text().strip()
    assert len(password) >= 16 and password != "demo-studio"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert f"Open http://127.0.0.1:8000/ and sign in as demo / {password}" in output
    demo = User.objects.get(username="demo")
    assert demo.is_superuser and demo.check_password(password)
    assert Membership.objects.filter(user=demo, team__slug="demo").exists()

    # The next run prints the same password, and it still works.
    assert f"demo / {password}" in seed()
    assert path.read_text().strip() == password
    assert User.objects.get(username="demo").check_password(password)
    assert Team.objects.filter(slug="demo").count() == 1


def test_seed_demo_replaces_the_once_published_password(db, data_dir):
    User.objects.create_user("demo", password="demo-studio")
    seed()
    demo = User.objects.get(username="demo")
    assert not demo.check_password("demo-studio")
    assert demo.check_password((data_dir / "demo-password").read_text().strip())


def test_seed_demo_refuses_to_run_in_production(db, data_dir, settings):
    settings.PRODUCTION = True
    with pytest.raises(CommandError, match="production"):
        seed()
    assert not User.objects.filter(username="demo").exists()
    assert not (data_dir / "demo-password").exists()


# -- password change and reset ------------------------------------------------------


def test_the_user_menu_links_to_password_change(bob, client):
    client.force_login(bob)
    html = client.get(reverse("password_change")).content.decode()
    assert f'href="{reverse("password_change")}" aria-current="page"' in html
    assert '<link rel="stylesheet" href="/static/studio/studio.css">' in html
    assert '<label for="id_old_password">' in html


def test_password_change(bob, client):
    client.force_login(bob)
    response = client.post(
        reverse("password_change"),
        {
            "old_password": "right-horse-42",
            "new_password1": "purple-kettle-88",
            "new_password2": "purple-kettle-88",
        },
    )
    assert response.status_code == 302
    assert response.url == reverse("password_change_done")
    assert "Password changed" in client.get(response.url).content.decode()
    bob.refresh_from_db()
    assert bob.check_password("purple-kettle-88")


def test_password_change_shows_errors_on_the_fields(bob, client):
    client.force_login(bob)
    response = client.post(
        reverse("password_change"),
        {"old_password": "wrong", "new_password1": "a", "new_password2": "b"},
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert 'aria-invalid="true"' in html
    assert "Your old password was entered incorrectly" in html


def test_password_reset_end_to_end(bob, client):
    login_page = client.get(LOGIN).content.decode()
    assert f'href="{reverse("password_reset")}"' in login_page
    page = client.get(reverse("password_reset")).content.decode()
    assert '<label for="id_email">' in page

    response = client.post(reverse("password_reset"), {"email": "bob@example.com"})
    assert response.url == reverse("password_reset_done")
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["bob@example.com"]
    assert message.subject == "Reset your S2V Studio password"
    link = re.search(r"http://testserver(/accounts/reset/\S+/)", message.body)[1]

    # The link redirects to a token-free URL that shows the form.
    response = client.get(link, follow=True)
    assert '<label for="id_new_password1">' in response.content.decode()
    form_url = response.redirect_chain[-1][0]
    response = client.post(
        form_url,
        {"new_password1": "purple-kettle-88", "new_password2": "purple-kettle-88"},
    )
    assert response.url == reverse("password_reset_complete")
    assert "Password set" in client.get(response.url).content.decode()

    assert sign_in(Client(), "bob", "purple-kettle-88").status_code == 302
    assert sign_in(Client(), "bob", "right-horse-42").status_code == 200
    # The link works once.
    used = client.get(link, follow=True).content.decode()
    assert "expired or was already used" in used


def test_password_reset_does_not_tell_who_has_an_account(db, client):
    response = client.post(reverse("password_reset"), {"email": "nobody@example.com"})
    assert response.url == reverse("password_reset_done")
    assert mail.outbox == []
