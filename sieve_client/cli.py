"""The `sieve` command: Sieve's API from a shell.

    sieve predict IMAGE... [--classifier-only] [--wait [SECONDS]] [--webhook URL]
    sieve status ID [--wait SECONDS]
    sieve follow ID
    sieve runs submit [--model M] [--epochs N] [--optimizer O] [--lr X] ...
    sieve runs status ID | sieve runs cancel ID
    sieve models list | sieve models promote NAME VERSION [--alias A]

The server and token come from --url/--token, SIEVE_URL/SIEVE_TOKEN or the configuration
file (see sieve_client.config). --json prints the API's JSON instead of lines. Exit
status: 0 done, 1 an error answer or no server, 2 a usage error, 3 --wait ran out first.
"""

import argparse
import json
import sys

import requests

from sieve_client.client import Client
from sieve_client.config import ConfigError
from sieve_client.results import Prediction, SieveError, TrainingRun


def get_args_parser() -> argparse.ArgumentParser:
    """The command line's parser."""
    parser = argparse.ArgumentParser(prog="sieve", description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="the server (default: SIEVE_URL, the config file, "
                                      "http://127.0.0.1:5000)")
    parser.add_argument("--token", help="the API token (default: SIEVE_TOKEN, the config file)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds for each request (default: 30)")
    parser.add_argument("--json", action="store_true", help="print the API's JSON")
    commands = parser.add_subparsers(dest="command", required=True)

    predict = commands.add_parser("predict", help="submit images")
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    predict.add_argument("--classifier-only", action="store_true",
                         help="skip the filter (default: filter, then classifier)")
    predict.add_argument("--wait", nargs="?", type=float, const=300.0, default=None,
                         metavar="SECONDS", help="wait for the results (default: 300 s)")
    predict.add_argument("--webhook", metavar="URL", help="post the results to this URL")
    predict.add_argument("--webhook-events", choices=("final", "all"), default="final",
                         help="which state changes to post (default: final)")

    status = commands.add_parser("status", help="show a prediction")
    status.add_argument("id")
    status.add_argument("--wait", type=float, default=None, metavar="SECONDS",
                        help="wait up to SECONDS for its final state")

    follow = commands.add_parser("follow", help="print a prediction's states as they happen")
    follow.add_argument("id")

    runs = commands.add_parser("runs", help="training runs").add_subparsers(
        dest="action", required=True)
    submit = runs.add_parser("submit", help="submit a training run")
    submit.add_argument("--model", choices=("classifier", "filter"), default="classifier")
    submit.add_argument("--epochs", type=int)
    submit.add_argument("--optimizer", choices=("sgd", "adam", "adamw"))
    submit.add_argument("--lr", type=float)
    submit.add_argument("--subset", type=int)
    submit.add_argument("--seed", type=int)
    submit.add_argument("--promote", action="store_true", help="promote it if it does better")
    for action in ("status", "cancel"):
        runs.add_parser(action, help=f"{action} a training run").add_argument("id")

    models = commands.add_parser("models", help="the model registry").add_subparsers(
        dest="action", required=True)
    models.add_parser("list", help="list models, versions and aliases")
    promote = models.add_parser("promote", help="point an alias at a version")
    promote.add_argument("name")
    promote.add_argument("version")
    promote.add_argument("--alias", default="production")
    promote.add_argument("--note")
    return parser


def describe(p: Prediction) -> str:
    """One line about a prediction."""
    if p.state == "done":
        outcome = f"{p.label} ({p.probability:.1%})"
    elif p.state in ("rejected", "failed", "cancelled"):
        outcome = p.reason or ""
    else:
        outcome = ""
    return "\t".join(part for part in (p.id, p.filename, p.state, outcome) if part)


def describe_run(run: TrainingRun) -> str:
    """One line about a training run."""
    progress = run.progress
    detail = (f"epoch {progress['epoch']}" if run.state == "running" and "epoch" in progress
              else run.version or run.reason or "")
    return "\t".join(part for part in (run.id, run.model, run.state, str(detail)) if part)


def _print(args, items, line) -> None:
    """Items as JSON (--json) or one line each."""
    for item in items:
        print(json.dumps(item.raw) if args.json else line(item), flush=True)


def run(args: argparse.Namespace, client: Client) -> int:
    """Carry out the command; its exit status."""
    if args.command == "predict":
        found = client.predict(args.images, classifier_only=args.classifier_only,
                               wait=args.wait, webhook=args.webhook,
                               webhook_events=args.webhook_events)
        _print(args, found, describe)
        return 3 if args.wait and not all(p.final for p in found) else 0
    if args.command == "status":
        prediction = client.prediction(args.id, wait=args.wait)
        _print(args, [prediction], describe)
        return 3 if args.wait and not prediction.final else 0
    if args.command == "follow":
        for prediction in client.events(args.id):
            _print(args, [prediction], describe)
        return 0
    if args.command == "runs":
        if args.action == "submit":
            params = {key: getattr(args, key) for key in
                      ("model", "epochs", "optimizer", "lr", "subset", "seed")
                      if getattr(args, key) is not None}
            if args.promote:
                params["promote"] = True
            found = client.submit_run(**params)
        else:
            found = (client.run if args.action == "status" else client.cancel_run)(args.id)
        _print(args, [found], describe_run)
        return 0
    if args.action == "list":
        for model in client.models():
            if args.json:
                print(json.dumps(model.raw))
            else:
                aliases = ", ".join(f"{a}={v}" for a, v in sorted(model.aliases.items()))
                print(f"{model.name}\tserved {model.served or '-'}\t{aliases}\t"
                      f"{len(model.versions)} versions")
        return 0
    entry = client.promote(args.name, args.version, args.alias, args.note)
    print(json.dumps(entry) if args.json else
          f"{entry['name']}: {entry['alias']} -> {entry['version']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `sieve` command."""
    args = get_args_parser().parse_args(argv)
    try:
        client = Client(args.url, args.token, timeout=args.timeout)
        return run(args, client)
    except ConfigError as exc:
        print(f"sieve: {exc}", file=sys.stderr)
        return 2
    except SieveError as exc:
        print(f"sieve: {exc}", file=sys.stderr)
        return 1
    except (requests.ConnectionError, requests.Timeout) as exc:
        print(f"sieve: cannot reach the server: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # an image that cannot be read
        print(f"sieve: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
