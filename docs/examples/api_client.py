"""Submit images to Sieve's API with requests and follow each one's Server-Sent Events.

    SIEVE_URL=http://127.0.0.1:5000 SIEVE_TOKEN=sieve_... python api_client.py a.png b.png
"""

import json
import os
import sys
import uuid

import requests

FINAL = {"done", "rejected", "failed", "cancelled"}


def submit(session: requests.Session, url: str, paths: list[str]) -> list[dict]:
    """POST the images in one request; the answer lists one prediction per image."""
    files = [("image", (os.path.basename(p), open(p, "rb"))) for p in paths]
    answer = session.post(f"{url}/api/v1/predictions", files=files,
                          data={"pipeline": "filter"},
                          headers={"Idempotency-Key": str(uuid.uuid4())}, timeout=30)
    if answer.status_code != 202:  # problem details: title, status, detail
        sys.exit(f"{answer.status_code}: {answer.json()['detail']}")
    return answer.json()["items"]


def follow(session: requests.Session, url: str, prediction: dict) -> dict:
    """Read the prediction's event stream until its final state; return that state."""
    last_event_id = "0"
    while True:  # the server ends a stream after a while: resume where it stopped
        with session.get(url + prediction["links"]["events"], stream=True, timeout=60,
                         headers={"Last-Event-ID": last_event_id}) as stream:
            for line in stream.iter_lines(decode_unicode=True):
                if line.startswith("id: "):
                    last_event_id = line[4:]
                elif line.startswith("data: "):
                    event = json.loads(line[6:])
                    if event["state"] in FINAL:
                        return event


def main() -> None:
    url = os.environ.get("SIEVE_URL", "http://127.0.0.1:5000")
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {os.environ['SIEVE_TOKEN']}"
    for prediction in submit(session, url, sys.argv[1:]):
        final = follow(session, url, prediction)
        print(json.dumps({"file": final["filename"], "state": final["state"],
                          "label": final["label"], "probability": final["probability"],
                          "filter_score": final["filter_score"]}))


if __name__ == "__main__":
    main()
