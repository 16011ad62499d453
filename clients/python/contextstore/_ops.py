"""Every op of docs/PROTOCOL.md as a method, written once for the three ways of sending it.

A method builds a ``Request`` (the JSON fields, how to read the answer, whether it may be sent
again) and hands it to ``self._call``: ``Client`` sends it and returns the result,
``AsyncClient`` returns a coroutine of it, a sync ``Pipeline`` queues it and returns a
``Pending``. A keyword left at ``None`` is not sent (the server's default applies).
"""

import base64
import struct
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Union

from . import types as t
from .errors import TurnsExist

_UNSET: Any = object()
"""``update``: leave the field as it is (``None`` there means JSON null, which removes it)."""


@dataclass
class Request:
    fields: Dict[str, Any]
    """The request object, ``op`` included, without ``rid`` (the transport adds it)."""
    parse: Callable[[Dict[str, Any]], Any]
    """Reads a successful answer."""
    safe: bool
    """Whether sending it twice does no harm: reads, and writes that carry their ids. Only these
    are sent again after a lost connection, ``busy`` or ``rate_limited``."""


def _vector(value: Any) -> Any:
    """A vector as the wire carries it: base64 of little-endian float32 (a quarter of the bytes
    of decimal text, and what the server stores), or the numbers as given when they do not fit
    float32, so the server names the problem (``non_finite``)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if hasattr(value, "dtype") and hasattr(value, "astype"):  # a NumPy array, without importing NumPy
        return base64.b64encode(value.astype("<f4").tobytes()).decode("ascii")
    numbers = list(value)
    try:
        return base64.b64encode(struct.pack(f"<{len(numbers)}f", *numbers)).decode("ascii")
    except (OverflowError, struct.error):
        return numbers


def _given(**fields: Any) -> Dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


def _memory_item(item: Union[Mapping[str, Any], t.Memory]) -> Dict[str, Any]:
    if isinstance(item, t.Memory):
        item = {
            "id": item.id, "user": item.user, "session": item.session, "role": item.role,
            "speaker": item.speaker, "text": item.text, "created_at": item.created_at,
            "metadata": item.metadata, "vector": item.vector, "valid_from": item.valid_from,
            "supersedes": item.supersedes, "sources": item.sources or None,
        }
    fields = {key: value for key, value in item.items() if value is not None}
    if "vector" in fields:
        fields["vector"] = _vector(fields["vector"])
    return fields


def _added(answer: Dict[str, Any]) -> t.Added:
    return t.Added(answer["id"], t._truncations(answer.get("truncated")), bool(answer.get("duplicate", False)))


def _batch_added(answer: Dict[str, Any]) -> t.BatchAdded:
    return t.BatchAdded(
        answer["count"], answer["skipped"], answer["ids"], answer["conflicts"],
        t._truncations(answer.get("truncated")), [(d["item"], d["id"]) for d in answer.get("duplicates", [])],
    )


def _hits(answer: Dict[str, Any]) -> List[t.Hit]:
    return [t.Hit.from_json(hit) for hit in answer["hits"]]


class Operations:
    """The ops; a subclass provides ``_call(request)``."""

    def _then(self, first: Any, then: Callable[[Any], Any]) -> Any:  # pragma: no cover - as _call
        """``then(result of first)``, where ``first`` is what ``_call`` returned: for requests that
        need another's answer."""
        raise NotImplementedError

    def _call(self, request: Request) -> Any:  # pragma: no cover - every subclass has its own
        raise NotImplementedError

    # Connection and server

    def ping(self) -> Any:
        """``True`` when the server answers."""
        return self._call(Request({"op": "ping"}, lambda a: a["pong"], True))

    def hello(self) -> Any:
        """-> ``Hello``: version, dimension, metric, index, BLAS, memories, model."""
        return self._call(Request({"op": "hello"}, lambda a: t.known_fields(t.Hello, a), True))

    def auth(self, secret: str) -> Any:
        """-> ``Auth``. The client authenticates by itself when given ``secret``; this changes key."""
        return self._call(Request({"op": "auth", "secret": secret}, lambda a: t.Auth(a["key"], a["role"]), True))

    def stats(self) -> Any:
        """-> ``Stats`` of the space (an admin's)."""
        return self._call(Request({"op": "stats"}, lambda a: t.known_fields(t.Stats, a), True))

    def cluster(self) -> Any:
        """-> the cluster as the node sees it (an admin's): ``{"node", "nodes": [{"name",
        "address", "live"}], "ranges": [{"range", "hosts", "joining", "last", "snapshot",
        "truncated", "applied"?, "lag"?}]}``; ``NotFound`` from a server that is not a cluster node."""
        return self._call(Request({"op": "cluster"}, lambda a: {k: a[k] for k in ("node", "nodes", "ranges")}, True))

    def metrics(self) -> Any:
        """-> the server's metrics in Prometheus' text format (a key that is not an admin's: its own)."""
        return self._call(Request({"op": "metrics"}, lambda a: a["text"], True))

    def keys(self) -> Any:
        """-> the answer's dict: ``enabled`` and ``keys`` (name, role, users, rate), never a
        secret (an admin's)."""
        return self._call(Request({"op": "keys"}, lambda a: {"enabled": a["enabled"], "keys": a["keys"]}, True))

    def check(self) -> Any:
        """-> the answer's dict: ``users``, ``memories`` and ``problems`` (empty when every place a
        memory lives agrees with the rows; an admin's)."""
        return self._call(
            Request({"op": "check"}, lambda a: {k: a[k] for k in ("users", "memories", "problems")}, True))

    def slow_requests(self, limit: Optional[int] = None) -> Any:
        """-> the answer's dict: ``threshold_ms`` and ``requests`` (at, op, key, ms, outcome,
        door), the latest requests slower than ``serve --slow-ms``, newest first (an admin's)."""
        return self._call(
            Request(
                _given(op="slow_requests", limit=limit),
                lambda a: {"threshold_ms": a["threshold_ms"], "requests": a["requests"]},
                True,
            )
        )

    def backup(self, to: str) -> Any:
        """-> ``Backup``: a consistent copy of the space written to the new file ``to`` (an admin's)."""
        return self._call(Request({"op": "backup", "to": to}, lambda a: t.known_fields(t.Backup, a), False))

    def digest(self, user: Optional[str] = None) -> Any:
        """-> ``Digest``: a hash of ``user``'s rows (None: the whole space's, an admin's) and the
        number of the last write applied; two spaces given the same writes answer the same."""
        request: dict = {"op": "digest"}
        if user is not None:
            request["user"] = user
        return self._call(Request(request, lambda a: t.known_fields(t.Digest, a), True))

    def export(
        self, user: Optional[str] = None, *, after: Optional[int] = None, limit: Optional[int] = None,
        with_vector: Optional[bool] = None,
    ) -> Any:
        """-> ``ExportPage``: ``user``'s memories (None: every user's, an admin's) in the order they
        were stored, with every field; pass ``next`` back as ``after`` for the next page."""
        fields = _given(op="export", user=user, after=after, limit=limit, with_vector=with_vector)
        return self._call(Request(fields, lambda a: t.ExportPage(a["memories"], a["next"]), True))

    def embed(self, texts: Sequence[str]) -> Any:
        """-> ``Embeddings`` of ``texts`` (1 to 256) by the server's model."""
        return self._call(
            Request(
                {"op": "embed", "texts": list(texts)},
                lambda a: t.Embeddings(a["model"], a["vectors"], t._truncations(a.get("truncated"))),
                True,
            )
        )

    # Writing memories

    def add(
        self, user: str, text: str, *, id: Optional[str] = None, session: Optional[str] = None,
        role: Optional[str] = None, speaker: Optional[str] = None, created_at: Union[int, str, None] = None,
        metadata: Optional[Mapping[str, Any]] = None, vector: Any = None, ttl: Optional[int] = None,
        model: Optional[str] = None, valid_from: Union[int, str, None] = None, supersedes: Optional[str] = None,
        sources: Optional[Sequence[str]] = None, dedupe: Union[str, Mapping[str, float], None] = None,
        expires_at: Union[int, str, None] = None,
    ) -> Any:
        """-> ``Added`` (the memory's id). Without ``vector`` the server embeds ``text``. With
        ``supersedes``, the user's memory of that id stops holding when this one begins.
        Sent again after a lost connection only when it carries its ``id``."""
        fields = _given(
            op="add", id=id, user=user, session=session, role=role, speaker=speaker, text=text,
            created_at=created_at, metadata=metadata, vector=_vector(vector), ttl=ttl, model=model,
            valid_from=valid_from, supersedes=supersedes, sources=list(sources) if sources is not None else None,
            dedupe=dedupe, expires_at=expires_at,
        )
        return self._call(Request(fields, _added, id is not None))

    def add_batch(
        self, items: Iterable[Union[Mapping[str, Any], t.Memory]], *, if_absent: Optional[bool] = None,
        model: Optional[str] = None,
    ) -> Any:
        """-> ``BatchAdded``: all ``items`` (memory fields as in ``add``, ``user`` in each) stored in
        one transaction, or none. Sent again only when every item carries its ``id``."""
        wire = [_memory_item(item) for item in items]
        fields = _given(op="add_batch", items=wire, if_absent=if_absent, model=model)
        return self._call(Request(fields, _batch_added, all("id" in item for item in wire)))

    def add_messages(
        self, user: str, session: str, messages: Iterable[Mapping[str, Any]], *, first_index: Optional[int] = None,
        replace: bool = False,
    ) -> Any:
        """-> ``BatchAdded``: chat messages (OpenAI-style ``{"role", "content"}``, optionally ``name``
        (stored as ``speaker``), ``created_at``, ``metadata``) stored as the turns of ``session`` in
        one ``add_batch``, with ids ``{session}/{n}``.

        By default the messages are appended: n continues after the session's turns on the
        server (one ``sessions`` request first), so calling this once per new message keeps every
        turn. ``first_index`` numbers from there instead (a pipeline needs it). A turn whose id
        exists is never overwritten unless ``replace=True`` (storing a conversation again): the
        others are stored and ``TurnsExist`` names the ids that were not."""
        items = []
        for n, message in enumerate(messages):
            unknown = set(message) - {"role", "content", "name", "created_at", "metadata"}
            if unknown:
                raise ValueError(f"messages[{n}] has fields a turn does not keep: {sorted(unknown)}")
            items.append(message)

        def store(start: int) -> Any:
            batch = [
                _given(
                    id=f"{session}/{start + n}", user=user, session=session, role=message.get("role"),
                    speaker=message.get("name"), text=message.get("content", ""),
                    created_at=message.get("created_at"), metadata=message.get("metadata"),
                )
                for n, message in enumerate(items)
            ]
            if replace:
                return self.add_batch(batch)
            fields = {"op": "add_batch", "items": [_memory_item(item) for item in batch], "if_absent": True}

            def parse(answer: Dict[str, Any]) -> t.BatchAdded:
                # Skipped: the same turn is stored already (a batch sent again). A conflict: the
                # id holds another turn, which is kept.
                added = _batch_added(answer)
                if added.conflicts:
                    raise TurnsExist([batch[i]["id"] for i in added.conflicts], added)
                return added

            return self._call(Request(fields, parse, True))

        if first_index is not None:
            return store(first_index)

        def turns(found: t.Sessions) -> int:
            for listed in found.sessions:
                if listed.session == session:
                    return listed.turns
            if found.more:
                raise ValueError(f"{user} has more sessions than one answer lists; pass first_index")
            return 0

        return self._then(self.sessions(user, limit=10_000), lambda found: store(turns(found)))

    def update(
        self, user: str, id: str, *, session: Any = _UNSET, role: Any = _UNSET, speaker: Any = _UNSET,
        metadata: Any = _UNSET, created_at: Any = _UNSET,
    ) -> Any:
        """-> the ``Memory`` as it now is. A field left out keeps its value; ``None`` removes
        ``session``, ``role`` or ``speaker``."""
        fields: Dict[str, Any] = {"op": "update", "user": user, "id": id}
        changes = {"session": session, "role": role, "speaker": speaker, "metadata": metadata, "created_at": created_at}
        fields.update({key: value for key, value in changes.items() if value is not _UNSET})
        return self._call(Request(fields, lambda a: t.Memory.from_json(a["memory"]), True))

    def delete(self, user: str, id: str, *, with_derived: Optional[bool] = None) -> Any:
        """-> how many memories went (1, and with ``with_derived`` the user's memories whose
        ``sources`` name it). ``NotFound`` for an id the user does not have."""
        # Not safe to send twice: after a lost answer, a second delete would say not_found for a
        # memory the first one deleted.
        fields = _given(op="delete", user=user, id=id, with_derived=with_derived)
        return self._call(Request(fields, lambda a: a["deleted"], False))

    def forget(
        self, user: str, *, session: Optional[str] = None, role: Optional[str] = None,
        speaker: Optional[str] = None, since: Union[int, str, None] = None, until: Union[int, str, None] = None,
        where: Optional[Mapping[str, Any]] = None, with_derived: Optional[bool] = None,
    ) -> Any:
        """-> how many of ``user``'s memories went: all, or those matching every filter given (and
        with ``with_derived`` the user's memories whose ``sources`` name one of them)."""
        fields = _given(op="forget", user=user, session=session, role=role, speaker=speaker, since=since,
                        until=until, where=where, with_derived=with_derived)
        return self._call(Request(fields, lambda a: a["deleted"], False))

    def feedback(self, user: str, id: str, helped: bool) -> Any:
        """-> ``Feedback``: the memory's counts of helped and not helped, this one included."""
        fields = {"op": "feedback", "user": user, "id": id, "helped": helped}
        return self._call(Request(fields, lambda a: t.Feedback(a["helped"], a["not_helped"]), False))

    # Reading memories

    def search(
        self, user: str, query: Optional[str] = None, *, vector: Any = None, k: Optional[int] = None,
        mode: Optional[str] = None, session: Optional[str] = None, role: Optional[str] = None,
        speaker: Optional[str] = None, since: Union[int, str, None] = None, until: Union[int, str, None] = None,
        where: Optional[Mapping[str, Any]] = None, explain: Optional[bool] = None,
        half_life: Optional[float] = None, context: Optional[int] = None, ef: Optional[int] = None,
        exact: Optional[bool] = None, feedback_boost: Optional[float] = None,
        as_of: Union[int, str, None] = None, include_superseded: Optional[bool] = None,
        now: Union[int, str, None] = None,
    ) -> Any:
        """-> list of ``Hit``, best first: the ``k`` memories of ``user`` that best answer ``query``
        (text) and/or ``vector``; of what holds now, what held ``as_of`` a time, or all of it
        (``include_superseded``). ``now`` (any read of time): the time the server reads at, for
        answers that do not change with the clock."""
        fields = _given(
            op="search", user=user, query=query, vector=_vector(vector), k=k, mode=mode, session=session,
            role=role, speaker=speaker, since=since, until=until, where=where, explain=explain,
            half_life=half_life, context=context, ef=ef, exact=exact, feedback_boost=feedback_boost,
            as_of=as_of, include_superseded=include_superseded, now=now,
        )
        return self._call(Request(fields, _hits, True))

    def prompt(
        self, user: str, query: str, *, session: Optional[str] = None, budget: Optional[int] = None,
        limit: Optional[int] = None, recent: Optional[int] = None, template: Optional[str] = None,
        system: Optional[str] = None, format: Optional[str] = None, caps: Optional[Mapping[str, int]] = None,
        vector: Any = None, mode: Optional[str] = None, role: Optional[str] = None, speaker: Optional[str] = None,
        since: Union[int, str, None] = None, until: Union[int, str, None] = None,
        where: Optional[Mapping[str, Any]] = None, half_life: Optional[float] = None,
        context: Optional[int] = None, ef: Optional[int] = None, exact: Optional[bool] = None,
        feedback_boost: Optional[float] = None, as_of: Union[int, str, None] = None,
        now: Union[int, str, None] = None,
    ) -> Any:
        """-> ``Prompt``: ``query`` with ``user``'s pinned facts, relevant memories, a summary and the
        latest turns of ``session``, within ``budget`` tokens; of what holds now, or ``as_of`` a time."""
        fields = _given(
            op="prompt", user=user, query=query, session=session, budget=budget, limit=limit, recent=recent,
            template=template, system=system, format=format, caps=caps, vector=_vector(vector), mode=mode,
            role=role, speaker=speaker, since=since, until=until, where=where, half_life=half_life,
            context=context, ef=ef, exact=exact, feedback_boost=feedback_boost, as_of=as_of, now=now,
        )
        return self._call(Request(fields, t.Prompt.from_json, True))

    def get(
        self, user: str, id: Optional[str] = None, *, ids: Optional[Sequence[str]] = None,
        with_vector: Optional[bool] = None, now: Union[int, str, None] = None,
    ) -> Any:
        """With ``id``: the ``Memory`` (``NotFound`` when the user has none). With ``ids``:
        ``Memories``, those found in the order asked and the ids missing."""
        fields = _given(op="get", user=user, id=id, ids=list(ids) if ids is not None else None, with_vector=with_vector,
                        now=now)

        def parse(answer: Dict[str, Any]) -> Any:
            if "memory" in answer:
                return t.Memory.from_json(answer["memory"])
            return t.Memories([t.Memory.from_json(m) for m in answer["memories"]], answer["missing"], answer.get("now"))

        return self._call(Request(fields, parse, True))

    def list(
        self, user: str, *, order: Optional[str] = None, limit: Optional[int] = None, cursor: Optional[str] = None,
        with_vector: Optional[bool] = None, session: Optional[str] = None, role: Optional[str] = None,
        speaker: Optional[str] = None, since: Union[int, str, None] = None, until: Union[int, str, None] = None,
        where: Optional[Mapping[str, Any]] = None, as_of: Union[int, str, None] = None,
        include_superseded: Optional[bool] = None, now: Union[int, str, None] = None,
    ) -> Any:
        """-> ``Page``: ``user``'s memories in time order; pass ``next_cursor`` back as ``cursor``."""
        fields = _given(
            op="list", user=user, order=order, limit=limit, cursor=cursor, with_vector=with_vector,
            session=session, role=role, speaker=speaker, since=since, until=until, where=where,
            as_of=as_of, include_superseded=include_superseded, now=now,
        )
        return self._call(
            Request(
                fields,
                lambda a: t.Page([t.Memory.from_json(m) for m in a["memories"]], a["next_cursor"], a.get("now")),
                True,
            )
        )

    def sessions(self, user: str, *, limit: Optional[int] = None, now: Union[int, str, None] = None) -> Any:
        """-> ``Sessions``: the user's sessions, most recently active first."""

        def parse(answer: Dict[str, Any]) -> t.Sessions:
            sessions = [t.Session(s["session"], s["turns"], s["first_at"], s["last_at"]) for s in answer["sessions"]]
            return t.Sessions(sessions, answer["more"], answer.get("now"))

        return self._call(Request(_given(op="sessions", user=user, limit=limit, now=now), parse, True))

    def users(
        self, *, prefix: Optional[str] = None, limit: Optional[int] = None, after: Optional[str] = None,
        now: Union[int, str, None] = None,
    ) -> Any:
        """-> ``Users``: a page of the users whose ids begin with ``prefix`` (byte order); pass
        the answer's ``next`` as ``after`` for the next page."""

        def parse(answer: Dict[str, Any]) -> t.Users:
            return t.Users(
                [t.UserSummary(u["user"], u["memories"]) for u in answer["users"]], answer["next"], answer.get("now")
            )

        return self._call(Request(_given(op="users", prefix=prefix, limit=limit, after=after, now=now), parse, True))
