"""Tokens: hashed at rest, shown once, scoped, revocable; rate limits per token."""

import hashlib
from datetime import timedelta

import pytest
from sqlalchemy import update

from sieve.database import Database
from sieve.models import ApiToken
from web.api.tokens import create_token, revoke_token
from web.users import create_user

PREDICTIONS = "/api/v1/predictions"


@pytest.mark.parametrize("authorization", [None, "", "Basic dXNlcjpwdw==", "Bearer ",
                                           "Bearer sieve_not-a-real-token"])
def test_missing_or_unknown_token_is_401(client, authorization):
    headers = {"Authorization": authorization} if authorization is not None else {}
    answer = client.get(PREDICTIONS, headers=headers)
    assert answer.status_code == 401
    assert answer.content_type == "application/problem+json"
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")


def test_token_is_stored_as_its_hash_and_revocation_refuses_it(api_app, client, make_user):
    user = make_user()
    tokens = Database(api_app.config["DATABASE_URL"]).api_tokens(user.id)
    assert tokens[0].token_hash == hashlib.sha256(user.token.encode()).hexdigest()
    assert user.token not in {t.token_hash for t in tokens} and tokens[0].prefix
    assert client.get(PREDICTIONS, headers=user.headers).status_code == 200
    with api_app.app_context():
        assert revoke_token(user.id, tokens[0].id)
        assert not revoke_token(user.id, tokens[0].id)
    answer = client.get(PREDICTIONS, headers=user.headers)
    assert answer.status_code == 401 and "revoked" in answer.get_json()["detail"]


def test_last_use_is_recorded_at_most_once_a_minute(api_app, client, make_user):
    user = make_user()
    db = Database(api_app.config["DATABASE_URL"])
    assert db.api_tokens(user.id)[0].last_used_at is None
    client.get(PREDICTIONS, headers=user.headers)
    first = db.api_tokens(user.id)[0].last_used_at
    assert first is not None
    client.get(PREDICTIONS, headers=user.headers)
    assert db.api_tokens(user.id)[0].last_used_at == first  # within the minute: no write
    with db.session() as s:
        s.execute(update(ApiToken).values(last_used_at=first - timedelta(minutes=2)))
    client.get(PREDICTIONS, headers=user.headers)
    assert db.api_tokens(user.id)[0].last_used_at > first


def test_a_token_without_the_scope_is_403(client, make_user):
    trainer = make_user(scopes=("train",), admin=True)
    answer = client.get(PREDICTIONS, headers=trainer.headers)
    assert answer.status_code == 403
    assert 'error="insufficient_scope"' in answer.headers["WWW-Authenticate"]


def test_create_token_refuses_unknown_scopes(api_app):
    with api_app.app_context():
        user = create_user("scopes@example.com", "a long enough password")
        with pytest.raises(ValueError, match="unknown scopes"):
            create_token(user.id, "x", ["admin"])


def test_cli_creates_a_token_that_is_printed_once_and_works(api_app, client):
    with api_app.app_context():  # an administrator: only they may have `train` tokens
        create_user("cli@example.com", "a long enough password", is_admin=True)
    runner = api_app.test_cli_runner()
    made = runner.invoke(args=["tokens", "create", "--email", "cli@example.com",
                               "--scope", "predict", "--scope", "train"])
    assert made.exit_code == 0, made.output
    token = made.stdout.strip()
    assert token.startswith("sieve_")
    assert client.get(PREDICTIONS, headers={"Authorization": f"Bearer {token}"}).status_code \
        == 200
    listed = runner.invoke(args=["tokens", "list", "--email", "cli@example.com"])
    assert "predict,train" in listed.output and token not in listed.output
    token_id = listed.output.split("\t")[0]
    assert runner.invoke(args=["tokens", "revoke", "--email", "cli@example.com",
                               token_id]).exit_code == 0
    assert client.get(PREDICTIONS, headers={"Authorization": f"Bearer {token}"}).status_code \
        == 401
    unknown = runner.invoke(args=["tokens", "create", "--email", "nobody@example.com"])
    assert unknown.exit_code != 0 and "no user" in unknown.output


def test_rate_limit_per_token_is_429_with_retry_after(make_api_app, make_user):
    app = make_api_app(SIEVE_RATE_LIMIT="3/minute")
    client, first, second = app.test_client(), make_user(app), make_user(app)
    assert [client.get(PREDICTIONS, headers=first.headers).status_code
            for _ in range(3)] == [200] * 3
    spent = client.get(PREDICTIONS, headers=first.headers)
    assert spent.status_code == 429 and spent.content_type == "application/problem+json"
    assert 1 <= int(spent.headers["Retry-After"]) <= 60
    assert client.get(PREDICTIONS, headers=second.headers).status_code == 200


def test_a_bad_rate_limit_setting_is_refused(make_api_app):
    with pytest.raises(ValueError, match="SIEVE_RATE_LIMIT"):
        make_api_app(SIEVE_RATE_LIMIT="lots")
