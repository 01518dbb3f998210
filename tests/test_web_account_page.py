"""The account page: API tokens made (shown once) and revoked by their owner only."""

import re

from tests.fixtures_web import csrf_token


def _make(web_client, auth, name="laptop", **scopes):
    data = {"csrf_token": auth.token("/account"), "name": name, **scopes}
    return web_client.post("/account", data=data).get_data(as_text=True)


def _api(web_client, token):
    return web_client.get("/api/v1/predictions", headers={"Authorization": f"Bearer {token}"})


def test_a_token_is_shown_once_works_and_can_be_revoked(web_client, auth):
    auth.register()
    page = _make(web_client, auth, predict="y")
    token = re.search(r'<code id="token-value">([^<]+)</code>', page)[1]
    assert _api(web_client, token).status_code == 200
    listing = web_client.get("/account").get_data(as_text=True)
    assert token not in listing and "laptop" in listing  # only its prefix is shown again
    token_id = re.search(r'id="revoke-(\d+)"', listing)[1]
    revoked = web_client.post(f"/account/tokens/{token_id}/revoke",
                              data={"csrf_token": csrf_token(listing)}, follow_redirects=True)
    assert "Token revoked" in revoked.get_data(as_text=True)
    assert _api(web_client, token).status_code == 401


def test_only_administrators_get_training_tokens(web_client, auth):
    auth.register()
    page = _make(web_client, auth, predict="y", train="y")
    assert "Only administrators" in page and 'id="token-value"' not in page
    assert "at least one" in _make(web_client, auth)


def test_another_users_token_cannot_be_revoked(web_client, auth):
    auth.register("ada@example.com")
    _make(web_client, auth, predict="y")
    token_id = re.search(r'id="revoke-(\d+)"', web_client.get("/account").get_data(
        as_text=True))[1]
    auth.logout()
    auth.register("bob@example.com")
    listing = web_client.get("/account").get_data(as_text=True)
    answer = web_client.post(f"/account/tokens/{token_id}/revoke",
                             data={"csrf_token": csrf_token(listing)})
    assert answer.status_code == 404


def test_the_account_page_needs_a_login(web_client):
    assert web_client.get("/account").status_code in (302, 303)
