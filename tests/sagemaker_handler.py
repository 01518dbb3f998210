"""The SageMaker inference handler of an unpacked model archive, driven in a fresh Python
process that sees only the archive's `code/`, as the PyTorch container runs it."""

import json
import subprocess
import sys
from pathlib import Path

# Runs in the fresh process: the handler contract, driven like the PyTorch container does.
HARNESS = r"""
import json, sys
from pathlib import Path
import inference
code = Path(sys.argv[1]).resolve() / "code"
requests = json.loads(Path(sys.argv[2]).read_text())
model = inference.model_fn(sys.argv[1])
answers = []
for request in requests:
    body = Path(request["file"]).read_bytes()
    try:
        data = inference.input_fn(body, request["content_type"])
        output, kind = inference.output_fn(inference.predict_fn(data, model), "application/json")
        answers.append({"kind": kind, "body": json.loads(output)})
    except inference.RequestError as exc:
        answers.append({"error": str(exc), "status": exc.status_code})
outside = [m.__file__ for n, m in sys.modules.items() if n.split(".")[0] == "training"
           and not Path(m.__file__).resolve().is_relative_to(code)]
assert not outside, f"project modules from outside the archive: {outside}"
print(json.dumps(answers))
"""


def run_handler(model_dir: Path, tmp_path: Path, requests: list[tuple[bytes, str]]) -> list[dict]:
    """Send requests through the unpacked handler in a new process; its answers."""
    listed = []
    for index, (body, content_type) in enumerate(requests):
        path = tmp_path / f"request-{index}"
        path.write_bytes(body)
        listed.append({"file": str(path), "content_type": content_type})
    (tmp_path / "requests.json").write_text(json.dumps(listed))
    done = subprocess.run(
        [sys.executable, "-c", HARNESS, str(model_dir), str(tmp_path / "requests.json")],
        cwd=tmp_path, env={"PYTHONPATH": str(model_dir / "code"), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
