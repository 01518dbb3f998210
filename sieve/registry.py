"""The model registry: aliases (`production`, `staging`, ...) that point at model versions.

Aliases live in the model store itself (`<name>/ALIASES.json` next to the versions), so
workers, this command line and packaging read them without the database. Each alias keeps
the versions it pointed at before, so a rollback returns it to the previous one; every
change is appended to the model's history. Workers serve the `production` version when
the alias is set, else the latest version.

Examples:
  python -m sieve.registry list                             # models, versions, aliases
  python -m sieve.registry show classifier                  # the served version's card
  python -m sieve.registry show classifier v3
  python -m sieve.registry promote classifier v3            # production -> v3
  python -m sieve.registry promote filter v2 --alias staging
  python -m sieve.registry rollback classifier              # production -> what it was
  python -m sieve.registry history classifier
"""

import argparse
import json
import sys
from datetime import UTC, datetime

from sieve.cli import HelpFormatter
from sieve.deployments import request_deployment
from sieve.store import PRODUCTION, Store, StoreError, check_name, open_store

# The test-set figure that ranks versions of each model (higher is better).
HEADLINE = {"classifier": "test_accuracy", "filter": "held_out_auroc"}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def headline(name: str, card: dict) -> tuple[str, float | None]:
    """The metric that ranks versions of a model, and its value in `card`."""
    key = HEADLINE.get(name, "test_accuracy")
    value = (card.get("metrics") or {}).get(key)
    return key, (float(value) if value is not None else None)


def worst_upload_kind(card: dict) -> dict | None:
    """The upload kind (`training.uploads`) a version does worst on: the filter's lowest
    acceptance, the classifier's lowest accuracy; None when the card has no such figures."""
    rows = (card.get("metrics") or {}).get("uploads") or {}
    figures = [(kind, metric, float(value)) for kind, row in rows.items()
               for metric, value in row.items()]
    if not figures:
        return None
    kind, metric, value = min(figures, key=lambda figure: figure[2])
    return {"kind": kind, "metric": metric, "value": value}


def list_models(store: Store | None = None) -> list[dict]:
    """Every model with its versions (headline metric, creation time), aliases and the
    version served: what `GET /api/v1/models` answers."""
    store = store or open_store()
    answer = []
    for name in store.models():
        aliases = store.aliases(name)
        versions = []
        for version in store.versions(name):
            try:
                card = store.card(name, version)
            except StoreError as exc:
                versions.append({"version": version, "error": str(exc)})
                continue
            metric, value = headline(name, card)
            versions.append({
                "version": version, "created": card.get("created"),
                "aliases": sorted(a for a, v in aliases.items() if v == version),
                "metric": metric, "value": value, "data": (card.get("data") or {}).get("name"),
                "worst_upload_kind": worst_upload_kind(card),
            })
        answer.append({"name": name, "served": store.served(name), "aliases": aliases,
                       "versions": versions})
    return answer


def show(name: str, version: str | None = None, store: Store | None = None) -> dict:
    """A version's model card (the served version by default), with its aliases."""
    store = store or open_store()
    resolved = store.resolve(check_name(name), version)
    if resolved is None:
        raise StoreError(f"{name} has no published version yet")
    card = store.card(name, resolved)
    aliases = sorted(a for a, v in store.aliases(name).items() if v == resolved)
    return {"name": name, "version": resolved, "aliases": aliases, "card": card}


def promote(name: str, version: str, alias: str = PRODUCTION, store: Store | None = None,
            by: str | None = None, note: str | None = None) -> dict:
    """Point `alias` at `version` (it must be published); returns the alias entry.

    The version the alias left is remembered for `rollback`. Promoting the version the alias
    already points at changes nothing. A new `production` version is deployed to SageMaker
    when SIEVE_SAGEMAKER_AUTODEPLOY is on (sieve/deployments.py).
    """
    store = store or open_store()
    check_name(alias, "alias")
    if version not in store.versions(check_name(name)):
        raise StoreError(f"{name} {version} is not published in {store.url}: "
                         f"published are {', '.join(store.versions(name)) or 'none'}")

    changed = []

    def change(document: dict) -> dict:
        entry = document["aliases"].get(alias)
        if entry and entry["version"] == version:
            return document
        changed.append(version)
        previous = [*entry["previous"], entry["version"]] if entry else []
        document["aliases"][alias] = {"version": version, "previous": previous,
                                      "updated": _now(), "by": by}
        document["history"].append({"action": "promote", "alias": alias, "version": version,
                                    "from": entry["version"] if entry else None,
                                    "at": _now(), "by": by, "note": note})
        return document

    entry = store.update_aliases(name, change)["aliases"][alias]
    if changed and alias == PRODUCTION:
        request_deployment(name, version)
    return entry


def rollback(name: str, alias: str = PRODUCTION, store: Store | None = None,
             by: str | None = None) -> dict:
    """Return `alias` to the version it pointed at before its last promotion (deployed to
    SageMaker like a promotion, for `production`)."""
    store = store or open_store()
    check_name(alias, "alias")

    def change(document: dict) -> dict:
        entry = document["aliases"].get(alias)
        if not entry or not entry["previous"]:
            raise StoreError(f"the {alias} alias of {name} has no earlier version to roll "
                             "back to")
        back = entry["previous"][-1]
        document["aliases"][alias] = {"version": back, "previous": entry["previous"][:-1],
                                      "updated": _now(), "by": by}
        document["history"].append({"action": "rollback", "alias": alias, "version": back,
                                    "from": entry["version"], "at": _now(), "by": by,
                                    "note": None})
        return document

    entry = store.update_aliases(check_name(name), change)["aliases"][alias]
    if alias == PRODUCTION:
        request_deployment(name, entry["version"])
    return entry


def history(name: str, store: Store | None = None) -> list[dict]:
    """Every promotion and rollback of a model's aliases, oldest first."""
    return (store or open_store()).alias_document(name)["history"]


def promote_if_better(name: str, version: str, alias: str = PRODUCTION,
                      store: Store | None = None, by: str | None = None) -> tuple[bool, str]:
    """Promote `version` when its headline metric beats the alias's version on the same
    test set (same data checksum and size), or when the alias is not set yet.

    Returns whether it was promoted and why, in words.
    """
    store = store or open_store()
    new = store.card(name, version)
    current = store.aliases(name).get(alias)
    if current is None:
        promote(name, version, alias, store, by, note="first version promoted")
        return True, f"{alias} was not set: now {version}"
    if current == version:
        return False, f"{alias} already is {version}"
    old = store.card(name, current)
    metric, new_value = headline(name, new)
    _, old_value = headline(name, old)
    same = {k: (new.get("data") or {}).get(k) for k in ("checksum", "test")} == \
           {k: (old.get("data") or {}).get(k) for k in ("checksum", "test")}
    if not same:
        return False, f"{version} was tested on other data than {current}: not compared"
    if new_value is None or old_value is None or new_value <= old_value:
        return False, f"{metric} {new_value} of {version} does not beat {old_value} of {current}"
    promote(name, version, alias, store, by,
            note=f"{metric} {new_value:.4f} beats {old_value:.4f} of {current}")
    return True, f"{metric} {new_value:.4f} beats {old_value:.4f} of {current}"


def get_args_parser() -> argparse.ArgumentParser:
    """list, show, promote, rollback and history."""
    parser = argparse.ArgumentParser(
        prog="python -m sieve.registry", description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1], formatter_class=HelpFormatter)
    parser.add_argument("--model-store", default=None,
                        help="store URL (default: MODEL_STORE_URL, or var/models)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="models, versions, metrics and aliases",
                   formatter_class=HelpFormatter)
    for command, text in (("show", "a version's model card"),
                          ("history", "promotions and rollbacks of a model")):
        one = sub.add_parser(command, help=text, formatter_class=HelpFormatter)
        one.add_argument("name", help="model name, e.g. classifier")
        if command == "show":
            one.add_argument("version", nargs="?", default=None,
                             help="version or alias (default: the served version)")
    up = sub.add_parser("promote", help="point an alias at a version",
                        formatter_class=HelpFormatter)
    up.add_argument("name", help="model name, e.g. classifier")
    up.add_argument("version", help="published version, e.g. v3")
    back = sub.add_parser("rollback", help="return an alias to its previous version",
                          formatter_class=HelpFormatter)
    back.add_argument("name", help="model name, e.g. classifier")
    for command in (up, back):
        command.add_argument("--alias", default=PRODUCTION, help="which alias")
    return parser


def _print(args: argparse.Namespace, value) -> None:
    """JSON with --json, else a short human form."""
    if args.json or args.command == "show":
        print(json.dumps(value, indent=2))
    elif args.command == "list":
        for model in value:
            aliases = ", ".join(f"{a}={v}" for a, v in sorted(model["aliases"].items()))
            print(f"{model['name']}: serving {model['served']}"
                  + (f" ({aliases})" if aliases else ""))
            for row in model["versions"]:
                tags = f"  [{', '.join(row['aliases'])}]" if row.get("aliases") else ""
                figure = (f"{row['metric']} {row['value']:.4f}"
                          if row.get("value") is not None else row.get("error", ""))
                print(f"  {row['version']:>5}  {row.get('created') or '':25} {figure}{tags}")
    elif args.command == "history":
        for row in value:
            print(f"{row['at']}  {row['action']:8} {row['alias']}: {row['from']} -> "
                  f"{row['version']}" + (f"  ({row['note']})" if row.get("note") else ""))
    else:
        print(f"{args.name} {args.alias} -> {value['version']}")


def main(argv: list[str] | None = None) -> int:
    """Run one command; errors are one line on stderr and exit status 2."""
    args = get_args_parser().parse_args(argv)
    try:
        store = open_store(args.model_store)
        if args.command == "list":
            value = list_models(store)
        elif args.command == "show":
            value = show(args.name, args.version, store)
        elif args.command == "history":
            value = history(args.name, store)
        elif args.command == "promote":
            value = promote(args.name, args.version, args.alias, store, by="cli")
        else:
            value = rollback(args.name, args.alias, store, by="cli")
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _print(args, value)
    return 0


if __name__ == "__main__":
    sys.exit(main())
