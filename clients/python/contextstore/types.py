"""What the server answers, as dataclasses. Fields are named as in docs/PROTOCOL.md; a field a
newer server adds is ignored rather than refused, so this client keeps working with it."""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple


@dataclass
class Memory:
    id: str
    user: str
    text: str
    created_at: int
    session: Optional[str] = None
    role: Optional[str] = None
    speaker: Optional[str] = None
    metadata: Dict[str, Any] = field(default_factory=dict)
    vector: Optional[List[float]] = None
    expires_at: Optional[int] = None
    # When it holds (valid_from: None = from created_at; valid_to: None = still) and its links.
    valid_from: Optional[int] = None
    valid_to: Optional[int] = None
    supersedes: Optional[str] = None
    superseded_by: Optional[str] = None
    # Where it came from: turn ids or other references, in order.
    sources: List[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, obj: Dict[str, Any]) -> "Memory":
        return cls(
            id=obj["id"], user=obj["user"], text=obj["text"], created_at=obj["created_at"],
            session=obj.get("session"), role=obj.get("role"), speaker=obj.get("speaker"),
            metadata=obj.get("metadata") or {}, vector=obj.get("vector"), expires_at=obj.get("expires_at"),
            valid_from=obj.get("valid_from"), valid_to=obj.get("valid_to"), supersedes=obj.get("supersedes"),
            superseded_by=obj.get("superseded_by"), sources=obj.get("sources") or [],
        )


@dataclass
class SideScore:
    """One side's own score of a hit and the hit's rank on that side."""

    score: float
    rank: int


@dataclass
class Explain:
    """Why a hit ranks where it does (``search`` with ``explain=True``)."""

    vector: Optional[SideScore]
    keyword: Optional[SideScore]
    neighbours: Optional[float]
    recency: Optional[float]
    #: What the best fused scores of the hit's session added (hybrid).
    session: Optional[float] = None
    #: The factor the hit weighs because the query names its speaker (hybrid).
    speaker: Optional[float] = None
    #: ``{"from", "to", "phrase"}``: the span of time the query names, when the hit was said in it.
    time: Optional[Dict[str, Any]] = None

    @classmethod
    def from_json(cls, obj: Dict[str, Any]) -> "Explain":
        def side(name: str) -> Optional[SideScore]:
            value = obj.get(name)
            return SideScore(value["score"], value["rank"]) if value else None

        return cls(
            side("vector"),
            side("keyword"),
            obj.get("neighbours"),
            obj.get("recency"),
            obj.get("session"),
            obj.get("speaker"),
            obj.get("time"),
        )


@dataclass
class Hit:
    """A memory a search found, its score, and (when asked) its explanation and neighbouring turns."""

    memory: Memory
    score: float
    explain: Optional[Explain] = None
    context: List[Memory] = field(default_factory=list)
    """With ``context=n``: the turns around it in its session (none that were given already)."""

    @property
    def id(self) -> str:
        return self.memory.id

    @property
    def text(self) -> str:
        return self.memory.text

    @classmethod
    def from_json(cls, obj: Dict[str, Any]) -> "Hit":
        explain = obj.get("explain")
        context = obj.get("context")
        return cls(
            memory=Memory.from_json(obj), score=obj["score"],
            explain=Explain.from_json(explain) if explain else None,
            context=[Memory.from_json(m) for m in context or []],
        )


@dataclass
class Truncation:
    """A text longer than the model's windows cover: its tokens, and those embedded."""

    index: int
    tokens: int
    kept: int


def _truncations(items: Optional[List[Dict[str, Any]]]) -> List[Truncation]:
    return [Truncation(t["index"], t["tokens"], t["kept"]) for t in items or []]


@dataclass
class Added:
    id: str
    truncated: List[Truncation] = field(default_factory=list)
    # The user had the memory (``dedupe``): nothing was stored; ``id`` is the one it had.
    duplicate: bool = False


@dataclass
class BatchAdded:
    count: int
    skipped: int
    ids: List[str]
    conflicts: List[int]
    truncated: List[Truncation]
    # Items (index, id of the memory the user had) that ``dedupe`` left out.
    duplicates: List[Tuple[int, str]] = field(default_factory=list)


@dataclass
class Memories:
    """``get`` of several ids: the memories found, in the order asked, and the ids missing."""

    memories: List[Memory]
    missing: List[str]
    #: The time the read was judged at (unix ms): the request's ``now``, else the server's clock.
    now: Optional[int] = None


@dataclass
class Page:
    memories: List[Memory]
    next_cursor: Optional[str]
    #: The time the read was judged at (unix ms): the request's ``now``, else the server's clock.
    now: Optional[int] = None


@dataclass
class ExportPage:
    """A page of ``export``: each memory as the server wrote it (a JSON object, every field, and
    ``vector`` as base64 float32 when asked), and the ``after`` of the next page (None: the last)."""
    memories: List[Dict[str, Any]]
    next: Optional[int]


@dataclass
class Session:
    session: Optional[str]
    turns: int
    first_at: int
    last_at: int


@dataclass
class Sessions:
    sessions: List[Session]
    more: bool
    #: The time the read was judged at (unix ms): the request's ``now``, else the server's clock.
    now: Optional[int] = None


@dataclass
class UserSummary:
    user: str
    memories: int


@dataclass
class Users:
    users: List[UserSummary]
    next: Optional[str]
    #: The time the read was judged at (unix ms): the request's ``now``, else the server's clock.
    now: Optional[int] = None


@dataclass
class Feedback:
    helped: int
    not_helped: int


@dataclass
class Embeddings:
    model: str
    vectors: List[List[float]]
    truncated: List[Truncation]


@dataclass
class Section:
    name: str
    tokens: int
    ids: List[str]


@dataclass
class Dropped:
    id: str
    reason: str


@dataclass
class Prompt:
    """A built prompt: its text (and chat messages with ``format="messages"``) and what went in."""

    prompt: str
    tokens: int
    counter: str
    sections: List[Section]
    used: List[str]
    dropped: List[Dropped]
    messages: Optional[List[Dict[str, str]]] = None
    #: The time the prompt was built as of (unix ms): the request's ``now``, else the server's clock.
    now: Optional[int] = None

    def section(self, name: str) -> Optional[Section]:
        return next((s for s in self.sections if s.name == name), None)

    @classmethod
    def from_json(cls, obj: Dict[str, Any]) -> "Prompt":
        return cls(
            prompt=obj["prompt"], tokens=obj["tokens"], counter=obj["counter"],
            sections=[Section(s["name"], s["tokens"], s["ids"]) for s in obj["sections"]],
            used=obj["used"], dropped=[Dropped(d["id"], d["reason"]) for d in obj["dropped"]],
            messages=obj.get("messages"), now=obj.get("now"),
        )


@dataclass
class Auth:
    key: str
    role: str


@dataclass
class Hello:
    server: str
    version: str
    protocol: int
    dimension: Optional[int]
    metric: str
    index: str
    blas: str
    kernels: str
    """The instruction set of the server's distance kernels ("avx2+fma+f16c" or "baseline")."""
    cpu: str
    """The server's processor, as its system names it."""
    memories: Optional[int]
    """The whole space's memories: for an admin key (or a server without keys); None otherwise."""
    embedder: Optional[str]


@dataclass
class Backup:
    path: str
    bytes: int
    seconds: float
    memories: int


@dataclass
class Digest:
    digest: str
    """SHA-256 (hex) of a user's rows, or of the whole space's."""
    applied_index: Optional[int] = None
    """The number of the last write the space applied (the whole space's digest only)."""


@dataclass
class Stats:
    memories: int
    users: int
    dimension: Optional[int]
    metric: str
    index: str
    bytes_on_disk: int
    bytes_in_memory: int
    flat_storage: str = "float32"
    """How the flat index keeps rows in memory: "float32", "float16" or "int8"."""
    expired: int = 0
    purged: int = 0
    embedding_cache_hits: int = 0
    embedding_cache_misses: int = 0
    embedding_cache_entries: int = 0
    embedding_cache_bytes: int = 0
    result_cache_hits: int = 0
    result_cache_misses: int = 0
    result_cache_entries: int = 0
    result_cache_bytes: int = 0


def known_fields(cls: type, obj: Dict[str, Any]) -> Any:
    """``cls`` made from the fields of ``obj`` it has (a flat dataclass)."""
    names = cls.__dataclass_fields__  # type: ignore[attr-defined]
    return cls(**{key: value for key, value in obj.items() if key in names})
