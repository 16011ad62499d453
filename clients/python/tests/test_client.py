"""The Python client against a real release server on loopback."""

import asyncio
import random
import time

import pytest

import contextstore as cs
from conftest import ADMIN, APP, READER, SLOW, MODEL


def unit(seed: int, dimension: int = 384):
    rng = random.Random(seed)
    vector = [rng.uniform(-1, 1) for _ in range(dimension)]
    norm = sum(x * x for x in vector) ** 0.5
    return [x / norm for x in vector]


def test_auth(server):
    with cs.Client(port=server.port, secret=APP) as client:
        assert client.auth(APP) == cs.Auth("app", "app")
        assert client.key == "app"
    with pytest.raises(cs.Unauthorized) as refused:
        cs.Client(port=server.port, secret="not-a-secret-of-any-key").connect()
    assert refused.value.code == "unauthorized"
    with cs.Client(port=server.port) as anonymous:  # no secret: everything is unauthorized
        with pytest.raises(cs.Unauthorized):
            anonymous.ping()
    with cs.Client(port=server.port, secret=READER) as reader:
        with pytest.raises(cs.Forbidden):
            reader.add("alice", "x", id="r1", vector=unit(1))
        with pytest.raises(cs.Forbidden):
            reader.search("bob", vector=unit(1))
        own_metrics = reader.metrics()  # its own users and prompts alone
        assert "contextstore_prompt_tokens_total{key=" in own_metrics
        assert "contextstore_requests_total" not in own_metrics
        own = reader.stats()  # its own users, not the space's figures
        assert own.bytes_on_disk == 0


def test_every_op(server, tmp_path):
    with cs.Client(port=server.port, secret=APP) as client, cs.Client(port=server.port, secret=ADMIN) as admin:
        assert client.ping() is True
        hello = client.hello()
        assert hello.server == "contextstore" and hello.protocol == 1 and hello.dimension == 384

        text = "tea at \u0000 noon, caf\u00e9 \U0001F375"
        big = 2**63 - 1
        added = client.add("alice", text, id="a1", session="s1", role="user", speaker="Alice",
                           created_at=1_683_554_160_000, metadata={"n": big, "pinned": True}, vector=unit(1))
        assert added == cs.Added("a1", [])
        memory = client.get("alice", "a1")
        assert (memory.id, memory.text, memory.session, memory.role, memory.speaker) == ("a1", text, "s1", "user", "Alice")
        assert memory.created_at == 1_683_554_160_000 and memory.metadata == {"n": big, "pinned": True}
        assert memory.vector is None

        batch = client.add_batch([
            {"id": "a2", "user": "alice", "session": "s1", "role": "assistant", "text": "I like green tea",
             "created_at": 1_683_554_170_000, "vector": unit(2)},
            cs.Memory(id="a3", user="alice", text="Lisbon is sunny", created_at=1_683_554_180_000, session="s2",
                      vector=unit(3)),
        ])
        assert (batch.count, batch.skipped, batch.ids, batch.conflicts) == (2, 0, ["a2", "a3"], [])
        again = client.add_batch([{"id": "a2", "user": "alice", "session": "s1", "role": "assistant",
                                   "text": "I like green tea", "created_at": 1_683_554_170_000, "vector": unit(2)}],
                                 if_absent=True)
        assert (again.count, again.skipped) == (0, 1)

        hits = client.search("alice", vector=unit(3), k=2, mode="vector", explain=True)
        assert [hit.id for hit in hits][0] == "a3"
        assert hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert hits[0].explain.vector.rank == 1 and hits[0].explain.keyword is None
        in_session = client.search("alice", vector=unit(2), k=1, session="s1", context=1)
        assert [hit.id for hit in in_session] == ["a2"]
        assert [turn.id for turn in in_session[0].context] == ["a1"]

        many = client.get("alice", ids=["a1", "zz", "a3"], with_vector=True)
        assert [m.id for m in many.memories] == ["a1", "a3"] and many.missing == ["zz"]
        assert len(many.memories[0].vector) == 384

        page = client.list("alice", limit=2)
        assert [m.id for m in page.memories] == ["a1", "a2"] and page.next_cursor is not None
        rest = client.list("alice", limit=2, cursor=page.next_cursor)
        assert [m.id for m in rest.memories] == ["a3"] and rest.next_cursor is None

        sessions = client.sessions("alice")
        assert [(s.session, s.turns) for s in sessions.sessions] == [("s2", 1), ("s1", 2)] and sessions.more is False

        updated = client.update("alice", "a3", session=None, metadata={"topic": "weather"})
        assert updated.session is None and updated.metadata == {"topic": "weather"}
        assert updated.text == "Lisbon is sunny"

        assert client.feedback("alice", "a2", True) == cs.Feedback(1, 0)
        assert client.feedback("alice", "a2", False) == cs.Feedback(1, 1)

        prompt = client.prompt("alice", "What tea do I like?", vector=unit(2), session="s1", budget=400,
                               format="messages", mode="vector")
        assert prompt.tokens <= 400 and prompt.prompt.endswith("What tea do I like?")
        # a1 is pinned and one of the session's latest turns: it stays in the dialogue.
        assert prompt.section("pinned").ids == [] and "a1" in prompt.section("recent").ids
        assert prompt.messages[-1] == {"role": "user", "content": "What tea do I like?"}
        with pytest.raises(cs.BudgetTooSmall) as small:
            client.prompt("alice", "What tea do I like? " * 20, vector=unit(2), budget=5)
        assert small.value.needed > 5

        assert client.delete("alice", "a3") == 1
        with pytest.raises(cs.NotFound):
            client.get("alice", "a3")
        with pytest.raises(cs.NotFound):  # another tenant's id answers as an unknown one
            client.get("bob", "a1")
        assert client.forget("alice", session="s1") == 2
        assert client.list("alice").memories == []

        stats = admin.stats()
        assert stats.dimension == 384 and stats.index == "flat"
        assert "contextstore_requests_total" in admin.metrics()
        whole, own = admin.digest(), client.digest("alice")
        assert len(whole.digest) == 64 and whole.applied_index > 0 and own.applied_index is None
        assert own.digest != whole.digest
        with pytest.raises(cs.Forbidden):  # the whole space is an admin's
            client.digest()
        keys = admin.keys()
        assert keys["enabled"] is True and "app" in [key["name"] for key in keys["keys"]]
        assert "secret" not in repr(keys)
        slow = admin.slow_requests(limit=5)
        assert slow["threshold_ms"] == 250 and len(slow["requests"]) <= 5
        with pytest.raises(cs.Forbidden):
            client.keys()
        backup = admin.backup("copy.db")  # a file of the server's --backup-dir
        copy = server.folder / "copy.db"
        assert backup.path == str(copy) and copy.exists()
        with pytest.raises(cs.InvalidValue):  # an existing file is never overwritten
            admin.backup(str(copy))


def test_errors_by_code(server):
    with cs.Client(port=server.port, secret=APP) as client:
        with pytest.raises(cs.KOutOfRange) as error:
            client.search("alice", vector=unit(1), k=0)
        assert error.value.code == "k_out_of_range" and "k" in error.value.message
        with pytest.raises(cs.WrongDimension):
            client.add("alice", "short", vector=[1.0, 0.0])
        with pytest.raises(cs.NonFinite):
            client.search("alice", vector=[float("nan")] * 384)
        with pytest.raises(cs.NonFinite):  # too large for float32: sent as numbers, refused by the server
            client.search("alice", vector=[1e39] + [0.0] * 383)
        with pytest.raises(cs.InvalidValue):
            client.add("alice", "x", role="robot", vector=unit(1))
        with pytest.raises(cs.UnknownTemplate):
            client.prompt("alice", "hi", template="nope", vector=unit(1))
        with pytest.raises(cs.ServerError):  # every code is a ServerError
            client.get("alice", "missing")
        assert client.ping()  # the connection survived every error


@pytest.mark.skipif(not MODEL.exists(), reason="the model is not fetched (scripts/fetch-model)")
def test_text_ops_with_the_model(server):
    with cs.Client(port=server.port, secret=APP) as client:
        embedded = client.embed(["hello", "good morning"])
        assert embedded.model == "all-MiniLM-L6-v2" and len(embedded.vectors) == 2
        assert len(embedded.vectors[0]) == 384 and embedded.truncated == []
        client.add("team/x", "My sister moved to Porto last spring", id="t1", session="s1", role="user")
        client.add("team/x", "We talked about the weather", id="t2", session="s1", role="assistant")
        hits = client.search("team/x", "Where does my sister live?", k=1)
        assert hits[0].id == "t1"
        prompt = client.prompt("team/x", "Where does my sister live?", budget=200, session="s1")
        assert "Porto" in prompt.prompt and "t1" in prompt.used


@pytest.mark.skipif(not MODEL.exists(), reason="the model is not fetched (scripts/fetch-model)")
def test_add_messages(server):
    messages = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "I adopted a cat named Miso", "name": "Bea"},
        {"role": "assistant", "content": "Congratulations on Miso!"},
    ]
    with cs.Client(port=server.port, secret=APP) as client:
        # One call per new message, as a chatbot loop does: each continues the numbering (the
        # first version restarted at 0 and replaced the session's first turn, silently).
        for message in messages:
            client.add_messages("bob", "chat-1", [message])
        turns = client.list("bob", session="chat-1").memories
        assert [(m.id, m.role, m.speaker, m.text) for m in turns] == [
            ("chat-1/0", "system", None, "You are helpful."), ("chat-1/1", "user", "Bea", "I adopted a cat named Miso"),
            ("chat-1/2", "assistant", None, "Congratulations on Miso!"),
        ]
        # Numbered from 0 again: a collision with other turns is an error, and nothing is replaced.
        with pytest.raises(cs.TurnsExist) as collision:
            client.add_messages("bob", "chat-1", [{"role": "user", "content": "something else"}], first_index=0)
        assert collision.value.ids == ["chat-1/0"]
        assert client.get("bob", "chat-1/0").text == "You are helpful."
        # The same conversation stored again with replace=True replaces, and adds nothing.
        again = client.add_messages("bob", "chat-1", messages, first_index=0, replace=True)
        assert again.count == 3 and len(client.list("bob", session="chat-1").memories) == 3
        with pytest.raises(ValueError):
            with client.pipeline() as batch:
                batch.add_messages("bob", "chat-1", messages)
        with pytest.raises(ValueError):
            client.add_messages("bob", "chat-2", [{"role": "user", "content": "x", "tool_calls": []}])


def test_pipelining_a_thousand_requests(small_server):
    port = small_server.port
    with cs.Client(port=port, secret=APP) as client:
        with client.pipeline() as batch:
            adds = [batch.add("alice", f"memory {i}", id=f"m{i}", vector=unit(i, 8)) for i in range(500)]
            gets = [batch.get("alice", f"m{i}") for i in range(500)]
        assert [p.result().id for p in adds] == [f"m{i}" for i in range(500)]
        assert [p.result().text for p in gets] == [f"memory {i}" for i in range(500)]
        with client.pipeline() as batch:
            searches = [batch.search("alice", vector=unit(i % 500, 8), k=1, mode="vector") for i in range(1000)]
            missing = batch.get("alice", "none")
        assert [p.result()[0].id for p in searches] == [f"m{i % 500}" for i in range(1000)]
        with pytest.raises(cs.NotFound):
            missing.result()

    async def gathered():
        async with cs.AsyncClient(port=port, secret=APP) as client:
            results = await asyncio.gather(*(client.get("alice", f"m{i % 500}") for i in range(1000)))
            assert [m.id for m in results] == [f"m{i % 500}" for i in range(1000)]
            hits = await asyncio.gather(*(client.search("alice", vector=unit(i, 8), k=1, mode="vector")
                                          for i in range(500)))
            assert [h[0].id for h in hits] == [f"m{i}" for i in range(500)]

    asyncio.run(gathered())


def test_lines_longer_than_64_kib(small_server):
    text = "x" * 300_000 + "\u0000end"

    async def round_trip():
        async with cs.AsyncClient(port=small_server.port, secret=APP) as client:
            await client.add("alice", text, id="long", vector=unit(1, 8))
            assert (await client.get("alice", "long")).text == text
            page = await client.list("alice")
            assert page.memories[0].text == text

    asyncio.run(round_trip())
    with cs.Client(port=small_server.port, secret=APP) as client:
        assert client.get("alice", "long").text == text


def test_reconnects_after_the_server_restarts(small_server):
    client = cs.Client(port=small_server.port, secret=APP, backoff=0.05)
    client.add("alice", "before", id="b1", vector=unit(1, 8))
    small_server.restart()
    assert client.get("alice", "b1").text == "before"  # a new connection, authenticated again
    small_server.restart()
    assert client.add("alice", "after", vector=unit(2, 8)).id  # the closed connection is seen before sending
    assert client.key == "app"
    client.close()

    async def async_side():
        client = cs.AsyncClient(port=small_server.port, secret=APP, backoff=0.05)
        assert (await client.get("alice", "b1")).text == "before"
        small_server.restart()
        results = await asyncio.gather(*(client.get("alice", "b1") for _ in range(50)))
        assert {m.text for m in results} == {"before"}
        await client.close()

    asyncio.run(async_side())


def test_a_lost_connection_is_not_papered_over_for_an_unsafe_write(small_server):
    client = cs.Client(port=small_server.port, secret=APP, retries=3, backoff=0.05)
    client.connect()
    small_server.stop()
    with pytest.raises(cs.ConnectionLost):
        client.add("alice", "no id: sent twice it would be stored twice", vector=unit(3, 8))
    small_server.start()
    client.close()


def test_retries_rate_limited(small_server):
    with cs.Client(port=small_server.port, secret=SLOW, retries=0) as impatient:
        impatient.search("slow/a", vector=unit(1, 8))  # cost 2: the burst of 2 is spent
        with pytest.raises(cs.RateLimited) as limited:
            impatient.search("slow/a", vector=unit(1, 8))
        assert isinstance(limited.value.retry_after_ms, int) and limited.value.retry_after_ms > 0
    with cs.Client(port=small_server.port, secret=SLOW) as client:
        began = time.monotonic()
        for _ in range(4):  # 4 searches of cost 2 at 20 tokens/s: waits, never fails
            assert client.search("slow/a", vector=unit(1, 8)) == []
        assert time.monotonic() - began >= 0.2
        with client.pipeline() as batch:
            pending = [batch.get("slow/a", "x", ids=None) for _ in range(3)]
        assert all(isinstance(p._error, cs.NotFound) for p in pending)
        client.add("slow/a", "spend", id="s1", vector=unit(1, 8))
        with pytest.raises(cs.RateLimited):  # an add without id is not sent again
            for _ in range(5):
                client.add("slow/a", "no id", vector=unit(1, 8))

    async def async_side():
        async with cs.AsyncClient(port=small_server.port, secret=SLOW) as client:
            results = await asyncio.gather(*(client.search("slow/a", vector=unit(1, 8)) for _ in range(6)))
            assert len(results) == 6

    asyncio.run(async_side())


def test_tls(tls_server):
    import asyncio
    import ssl

    trusting = ssl.create_default_context(cafile=str(tls_server.certificate))
    with cs.Client(host="localhost", port=tls_server.port, secret=APP, ssl=trusting) as client:
        assert client.add("alice", "over TLS \x00", vector=unit(1, 8), id="t").id == "t"
        assert client.get("alice", "t").text == "over TLS \x00"
        with client.pipeline() as batch:
            pending = [batch.get("alice", "t") for _ in range(300)]
        assert all(p.result().id == "t" for p in pending)

    async def many():
        async with cs.AsyncClient(host="localhost", port=tls_server.port, secret=APP, ssl=trusting) as client:
            got = await asyncio.gather(*[client.get("alice", "t") for _ in range(100)])
            assert all(memory.id == "t" for memory in got)

    asyncio.run(many())
    # A client that does not trust the certificate is refused.
    with pytest.raises(ssl.SSLCertVerificationError):
        with cs.Client(host="localhost", port=tls_server.port, secret=APP, ssl=ssl.create_default_context(),
                       retries=0) as client:
            client.ping()


def test_a_writes_sequence_goes_with_later_requests_about_its_user(server):
    # A cluster node answers writes with `seqs`; the client keeps each user's newest and sends
    # it as `min_seq`. One server has none to give and takes `min_seq` as already met.
    with cs.Client(port=server.port, secret=APP) as client:
        client._noted({"ok": True, "seqs": {"alice": 7, "bob": 3}})
        client._noted({"ok": True, "seqs": {"alice": 5}})  # an answer to an older write
        assert dict(client.sequences) == {"alice": 7, "bob": 3}
        assert b'"min_seq":7' in client._line({"op": "get", "user": "alice", "id": "x"}, 1)
        assert b"min_seq" not in client._line({"op": "get", "user": "carol", "id": "x"}, 2)
        assert b"min_seq" not in client._line({"op": "stats"}, 3)
        client.add("alice", "tea", vector=unit(1), id="t1")
        assert client.get("alice", "t1").text == "tea"
        client.MAX_SEQUENCES = 2
        client._noted({"ok": True, "seqs": {"carol": 1}})
        assert list(client.sequences) == ["bob", "carol"]  # alice, written longest ago, goes


def test_a_fact_that_changes(small_server):
    vector = unit(7, 8)
    with cs.Client(port=small_server.port, secret=ADMIN) as client:
        client.add("eve", "Eve lives in Lisbon", id="lisbon", vector=vector, created_at="2023-05-08")
        client.add("eve", "Eve moved to Porto", id="porto", vector=vector, created_at="2023-05-18", supersedes="lisbon")
        assert [h.id for h in client.search("eve", vector=vector, k=5)] == ["porto"]
        assert [h.id for h in client.search("eve", vector=vector, k=5, as_of="2023-05-10")] == ["lisbon"]
        history = client.list("eve", include_superseded=True).memories
        assert [(m.id, m.valid_to, m.supersedes, m.superseded_by) for m in history] == [
            ("lisbon", 1684368000000, None, "porto"), ("porto", None, "lisbon", None),
        ]
        # A read at a time of one's choosing: what held then, whenever it is asked.
        then = client.list("eve", now="2023-05-10")
        assert [m.id for m in then.memories] == ["lisbon"] and then.now == 1683676800000
        assert [h.id for h in client.search("eve", vector=vector, k=5, now=1683676800000)] == ["lisbon"]
        sessions = client.sessions("eve", now="2023-05-10")
        assert sessions.sessions[0].turns == 2 and sessions.now == 1683676800000
        assert client.get("eve", ids=["lisbon"], now=1683676800000).now == 1683676800000
        assert client.users(prefix="eve", now=1683676800000).now == 1683676800000
        assert client.prompt("eve", "Where?", vector=vector, now=1683676800000).now == 1683676800000
        assert client.list("eve").now > 1683676800000  # the server's clock
        first = client.export("eve", limit=1)
        assert [m["id"] for m in first.memories] == ["lisbon"] and first.memories[0]["superseded_by"] == "porto"
        assert [m["id"] for m in client.export("eve", after=first.next).memories] == ["porto"]
        with pytest.raises(cs.NotFound):
            client.add("eve", "x", vector=vector, supersedes="nobody")
        with pytest.raises(cs.InvalidValue):
            client.search("eve", vector=vector, as_of=1, include_superseded=True)
        # Provenance: a fact derived from a turn goes with it when asked.
        client.add("eve", "Eve said she moved", id="turn", vector=vector)
        client.add("eve", "Eve lives in Porto now", id="derived", vector=vector, sources=["turn", "doc:1"])
        assert client.get("eve", "derived").sources == ["turn", "doc:1"]
        assert client.delete("eve", "turn", with_derived=True) == 2
        # Duplicates at the door.
        again = client.add("eve", "  EVE moved to   porto", vector=vector, dedupe="exact")
        assert (again.id, again.duplicate) == ("porto", True)
        batch = client.add_batch([{"user": "eve", "text": "x", "vector": vector, "dedupe": {"near": 0.99}}])
        assert batch.count == 0 and batch.duplicates == [(0, "porto")]
        assert client.check()["problems"] == []
