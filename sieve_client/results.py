"""What the API answers, as typed results. Each keeps the whole answer in `raw`, so that
fields the server adds later are not lost."""

from dataclasses import dataclass, field

FINAL_STATES = frozenset({"done", "rejected", "failed", "cancelled"})
RUN_FINAL_STATES = frozenset({"done", "failed", "cancelled"})


class SieveError(Exception):
    """The API answered with an error (problem details): its status, title and detail."""

    def __init__(self, status: int, title: str, detail: str, body: dict | None = None):
        super().__init__(f"{status} {title}: {detail}")
        self.status, self.title, self.detail = status, title, detail
        self.body = body or {}


@dataclass(frozen=True)
class Prediction:
    """One image's prediction: its state and, once final, its outcome."""

    id: str
    state: str
    pipeline: str
    filename: str = ""
    label: str | None = None
    probability: float | None = None
    top_k: list | None = None
    filter_score: float | None = None
    filter_threshold: float | None = None
    reason: str | None = None
    model_versions: dict = field(default_factory=dict)
    created_at: str | None = None
    finished_at: str | None = None
    event_id: int | None = None  # set on predictions read from the event stream
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict, event_id: int | None = None) -> "Prediction":
        """A Prediction from the API's JSON."""
        return cls(id=data["id"], state=data["state"], pipeline=data.get("pipeline", ""),
                   filename=data.get("filename") or "", label=data.get("label"),
                   probability=data.get("probability"), top_k=data.get("top_k"),
                   filter_score=data.get("filter_score"),
                   filter_threshold=data.get("filter_threshold"), reason=data.get("reason"),
                   model_versions=data.get("model_versions") or {},
                   created_at=data.get("created_at"), finished_at=data.get("finished_at"),
                   event_id=event_id, raw=data)

    @property
    def final(self) -> bool:
        """True once nothing will change the prediction any more."""
        return self.state in FINAL_STATES


@dataclass(frozen=True)
class TrainingRun:
    """A training run: parameters, state, progress and outcome."""

    id: str
    model: str
    state: str
    params: dict = field(default_factory=dict)
    progress: dict = field(default_factory=dict)
    version: str | None = None
    metrics: dict | None = None
    reason: str | None = None
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict) -> "TrainingRun":
        """A TrainingRun from the API's JSON."""
        return cls(id=data["id"], model=data.get("model", ""), state=data["state"],
                   params=data.get("params") or {}, progress=data.get("progress") or {},
                   version=data.get("version"), metrics=data.get("metrics"),
                   reason=data.get("reason"), raw=data)

    @property
    def final(self) -> bool:
        """True once the run has ended: done, failed or cancelled."""
        return self.state in RUN_FINAL_STATES


@dataclass(frozen=True)
class Model:
    """A published model: its versions, its aliases and the version served."""

    name: str
    served: str | None
    aliases: dict
    versions: list[str]
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict) -> "Model":
        """A Model from an item of GET /models."""
        return cls(name=data["name"], served=data.get("served"),
                   aliases=data.get("aliases") or {},
                   versions=[v["version"] for v in data.get("versions", [])], raw=data)
