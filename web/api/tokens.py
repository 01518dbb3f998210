"""API tokens: made and shown once, stored as SHA-256, checked on every API request.

The account page and `flask --app web tokens create --email ...` make them with
`create_token`; `revoke_token` withdraws one. A request presents one as
`Authorization: Bearer <token>`; `require_token(scope)` checks it, its scope and the
token's rate limit before the view runs.
"""

import functools
import hashlib
import secrets

import click
from flask import g, request
from flask.cli import AppGroup

from sieve.models import ApiToken, User
from sieve.webhooks import new_secret
from web.api.errors import fail
from web.api.limits import check_rate
from web.services import services

PREDICT, TRAIN = "predict", "train"
SCOPES = (PREDICT, TRAIN)
TOKEN_PREFIX = "sieve_"


def hash_token(token: str) -> str:
    """The SHA-256 under which a token is stored and looked up."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(user_id: int, name: str, scopes=(PREDICT,)) -> tuple[str, ApiToken]:
    """Make a token for a user: (the plaintext, to show once; the stored record)."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ValueError(f"unknown scopes {unknown}: choose among {', '.join(SCOPES)}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = services().db.create_api_token(user_id, name or "token", hash_token(token),
                                            token[:12], sorted(set(scopes)),
                                            webhook_secret=new_secret())
    return token, record


def revoke_token(user_id: int, token_id: int) -> bool:
    """Revoke one of the user's tokens; False when it is not theirs or already revoked."""
    return services().db.revoke_api_token(user_id, token_id)


def _unauthorized(detail: str, error: str | None = None) -> None:
    """401 with the challenge that says how to authenticate (RFC 6750)."""
    challenge = 'Bearer realm="sieve"' + (f', error="{error}"' if error else "")
    fail(401, detail, {"WWW-Authenticate": challenge})


def authenticate(*scopes: str) -> tuple[ApiToken, User]:
    """The request's token and its user; 401 without a valid one, 403 without a scope."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        _unauthorized("send an API token as `Authorization: Bearer <token>`")
    found = services().db.api_token_owner(hash_token(value.strip()))
    if found is None:
        _unauthorized("the token is not valid", "invalid_token")
    token, user = found
    if token.revoked_at is not None:
        _unauthorized("the token has been revoked", "invalid_token")
    if scopes and not set(scopes) & set(token.scopes):
        fail(403, f"the token lacks the scope {' or '.join(scopes)}",
             {"WWW-Authenticate": f'Bearer realm="sieve", error="insufficient_scope", '
                                  f'scope="{" ".join(scopes)}"'})
    check_rate(token.id)
    services().db.touch_api_token(token)
    return token, user


def require_token(*scopes: str):
    """Decorate a view: a valid token with one of `scopes` (any scope when none given)."""
    def decorate(view):
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            g.api_token, g.api_user = authenticate(*scopes)
            return view(*args, **kwargs)
        return wrapped
    return decorate


def require_admin() -> None:
    """403 unless the token's user is an administrator."""
    if not g.api_user.is_admin:
        fail(403, "this needs an administrator's account")


tokens_cli = AppGroup("tokens", help="Create, list and revoke API tokens.")


def _user(email: str) -> User:
    """The user with this email, or a usage error."""
    user = services().db.user_by_email(email.strip().lower())
    if user is None:
        raise click.UsageError(f"no user with the email {email}: register first")
    return user


@tokens_cli.command("create")
@click.option("--email", required=True, help="the account the token acts for")
@click.option("--scope", "scopes", multiple=True, type=click.Choice(SCOPES),
              default=(PREDICT,), show_default=True, help="repeat for several scopes")
@click.option("--name", default="cli", show_default=True, help="a label to recognise it")
def create_command(email: str, scopes: tuple[str, ...], name: str) -> None:
    """Make a token and print it (it is shown this once), and its webhook secret."""
    user = _user(email)
    if TRAIN in scopes and not user.is_admin:
        raise click.UsageError(f"{email} is not an administrator: only administrators "
                               "may have tokens with the train scope")
    token, record = create_token(user.id, name, scopes)
    click.echo(token)
    click.echo(f"token {record.id} ({', '.join(record.scopes)}): store it now, it is "
               "not shown again", err=True)
    click.echo(f"webhook signing secret: {record.webhook_secret}", err=True)


@tokens_cli.command("list")
@click.option("--email", required=True)
def list_command(email: str) -> None:
    """List a user's tokens (their prefixes; the tokens themselves are not stored)."""
    for token in services().db.api_tokens(_user(email).id):
        state = "revoked" if token.revoked_at else "active"
        click.echo(f"{token.id}\t{token.prefix}...\t{','.join(token.scopes)}\t{state}\t"
                   f"{token.name}")


@tokens_cli.command("revoke")
@click.option("--email", required=True)
@click.argument("token_id", type=int)
def revoke_command(email: str, token_id: int) -> None:
    """Revoke a user's token by its id."""
    if not revoke_token(_user(email).id, token_id):
        raise click.UsageError(f"no active token {token_id} for {email}")
    click.echo(f"token {token_id} revoked")
