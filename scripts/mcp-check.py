#!/usr/bin/env python3
"""The MCP server through the official Python SDK (PyPI `mcp`), over both transports: a
`contextstore mcp` subprocess on stdio (against a running server, and serving a file itself),
and the HTTP front door's `/mcp`. Initializes, lists and calls every tool, reads a session as a
resource, gets the `with_memory` prompt, and checks that no session reaches another user's
memories.

    scripts/mcp-check          (installs what is missing, then runs this)
    CONTEXTSTORE=path scripts/mcp-check.py

Exit status 0 when every check passed; the first failed check is printed and fails it.
"""
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request

from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONTEXTSTORE = os.environ.get("CONTEXTSTORE", os.path.join(ROOT, ".build", "release", "contextstore"))
ADMIN = "admin-secret-0123456789"
ALICE = "alice-secret-0123456789"  # an app key of alice alone
TEAM = "team-secret-01234567890"  # an app key of team/*
TOOLS = {"remember", "recall", "build_context", "list_sessions", "get_session", "forget", "feedback"}


def check(condition, what):
    if not condition:
        raise AssertionError(what)
    print(f"ok: {what}")


def text(result):
    return "\n".join(part.text for part in result.content if getattr(part, "text", None) is not None)


def add(port, user, memory):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/users/{user}/memories",
                                     data=json.dumps(memory).encode(), method="POST")
    request.add_header("Authorization", f"Bearer {ADMIN}")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


async def tour(client, user, label):
    """Every tool, the resource and the prompt, for `user`, who has no memories yet."""
    tools = (await client.list_tools()).tools
    check({tool.name for tool in tools} == TOOLS, f"{label}: the seven tools are listed")
    check(all("user" not in tool.input_schema["properties"] and tool.input_schema["additionalProperties"] is False
              for tool in tools), f"{label}: no tool takes a user, and none takes an argument it does not name")
    for session, said in [("s1", "I just moved to Porto for a new job"),
                          ("s1", "The tram to the office is slow but the pastries are great"),
                          ("s2", "Remind me to water the plants on Sunday")]:
        result = await client.call_tool("remember", {"text": said, "session": session, "speaker": "Alice",
                                                     "role": "user", "metadata": {"source": "chat"}})
        check(not result.is_error and text(result).startswith("Remembered as memory "), f"{label}: remember '{said}'")
    recalled = await client.call_tool("recall", {"query": "which city does she live in", "k": 2})
    lines = text(recalled).splitlines()
    check(not recalled.is_error and "Porto" in lines[1], f"{label}: recall finds the move first: {lines[1:2]}")
    memory_id = lines[1].split("[", 1)[1].split("]", 1)[0]
    keyword = await client.call_tool("recall", {"query": "plants", "mode": "keyword", "session": "s2"})
    check("water the plants" in text(keyword) and "Porto" not in text(keyword), f"{label}: recall with filters")
    context = await client.call_tool("build_context", {"query": "how do I get to work?", "session": "s1",
                                                       "budget": 300})
    check("tram" in text(context) and "tokens;" in text(context), f"{label}: build_context holds the session's turns")
    sessions = await client.call_tool("list_sessions", {})
    check(text(sessions).count("turns") == 2 and "'s1': 2 turns" in text(sessions), f"{label}: list_sessions")
    conversation = await client.call_tool("get_session", {"session": "s1", "limit": 1})
    check("Porto" in text(conversation) and "cursor" in text(conversation), f"{label}: get_session pages by cursor")
    cursor = text(conversation).rsplit('cursor "', 1)[1].rstrip('")')
    rest = await client.call_tool("get_session", {"session": "s1", "cursor": cursor})
    check("tram" in text(rest) and "cursor" not in text(rest), f"{label}: and the next page ends it")
    helped = await client.call_tool("feedback", {"id": memory_id, "helped": True})
    check(text(helped).startswith("Noted: helped 1 times"), f"{label}: feedback")
    refused = await client.call_tool("forget", {"session": "s2", "confirm": False})
    check(refused.is_error and text(refused).startswith("invalid_value:"), f"{label}: forget without confirm is refused")
    missing = await client.call_tool("feedback", {"id": "no-such-id", "helped": False})
    check(missing.is_error and text(missing).startswith("not_found:"), f"{label}: an unknown id is not_found")
    resources = (await client.list_resources()).resources
    uris = sorted(str(resource.uri) for resource in resources)
    check(uris == [f"memory://{user}/sessions/s1", f"memory://{user}/sessions/s2"], f"{label}: a resource per session")
    read = await client.read_resource(f"memory://{user}/sessions/s1")
    check("Porto" in read.contents[0].text and "tram" in read.contents[0].text, f"{label}: a session read as text")
    prompt = await client.get_prompt("with_memory", {"query": "where do I live?", "session": "s1"})
    check("Porto" in prompt.messages[0].content.text, f"{label}: the with_memory prompt")
    forgot = await client.call_tool("forget", {"session": "s2", "confirm": True})
    check(text(forgot) == "Forgot 1 memories.", f"{label}: forget a session, confirmed")
    # Isolation: a user named by the model is refused; another user's memories are never seen.
    other = await client.call_tool("recall", {"query": "bob's secret", "user": "bob"})
    check(other.is_error and "fixed" in text(other), f"{label}: a tool call naming a user is refused")
    everything = await client.call_tool("recall", {"query": "bob's secret plan", "k": 100})
    check("Madeira" not in text(everything), f"{label}: recall never shows another user's memories")
    try:
        await client.read_resource("memory://bob/sessions/b1")
        check(False, f"{label}: another user's resource")
    except Exception as error:  # the SDK raises the server's protocol error
        check("no resource" in str(error), f"{label}: another user's resource is not found")


async def main():
    work = tempfile.mkdtemp()
    keys = os.path.join(work, "keys.json")
    with open(keys, "w") as file:
        json.dump({"keys": [{"name": "admin", "secret": ADMIN, "role": "admin"},
                            {"name": "alice", "secret": ALICE, "role": "app", "users": ["alice"]},
                            {"name": "team", "secret": TEAM, "role": "app", "users": ["team/*"]}]}, file)
    server = subprocess.Popen([CONTEXTSTORE, "serve", "--db", os.path.join(work, "space.db"), "--port", "0",
                               "--http-port", "0", "--keys", keys, "--log-level", "error"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port = http = None
        for line in server.stdout:
            if line.startswith("listening on "):
                port = int(line.rsplit(":", 1)[1])
            if line.startswith("http listening on "):
                http = int(line.rsplit(":", 1)[1])
                break
        assert port and http, "the server did not start"
        add(http, "bob", {"text": "bob's secret plan is to sail to Madeira", "session": "b1"})

        # stdio, against the running server with alice's key.
        stdio = StdioServerParameters(command=CONTEXTSTORE, args=["mcp", "--user", "alice", "--server",
                                                                   f"127.0.0.1:{port}"],
                                      env={"CONTEXTSTORE_SECRET": ALICE})
        async with Client(stdio) as client:
            await tour(client, "alice", "stdio")

        # HTTP: the key names the one user it covers; ?user= names one of a prefix's users.
        async def over_http(user, secret, query=""):
            http_client = create_mcp_http_client(headers={"Authorization": f"Bearer {secret}"})
            return Client(streamable_http_client(f"http://127.0.0.1:{http}/mcp{query}", http_client=http_client))

        async with await over_http("team/x", TEAM, "?user=team%2Fx") as client:
            await tour(client, "team%2Fx", "http")
        async with await over_http("alice", ALICE) as client:
            listed = await client.call_tool("list_sessions", {})
            check("'s1': 2 turns" in text(listed), "http: a key of one user serves that user without ?user=")
        for query, secret, what in [("?user=bob", ALICE, "a key that does not cover the user"),
                                    ("", TEAM, "a key of a prefix without ?user="),
                                    ("?user=alice", "wrong-secret-0123456789", "a wrong secret")]:
            try:
                async with await over_http("", secret, query) as client:
                    await client.list_tools()
                check(False, f"http: {what} is refused")
            except BaseException as error:  # the SDK wraps a refused initialize in a group
                check(first_assertion(error) is None, f"http: {what} is refused")
    finally:
        server.terminate()
        server.wait()

    # stdio, serving a file of its own (no server running).
    stdio = StdioServerParameters(command=CONTEXTSTORE, args=["mcp", "--user", "carol", "--db",
                                                               os.path.join(work, "own.db")])
    async with Client(stdio) as client:
        await client.call_tool("remember", {"text": "Carol keeps bees in Aveiro"})
        found = await client.call_tool("recall", {"query": "what does carol keep?"})
        check("bees" in text(found), "stdio --db: a space of its own")
    shutil.rmtree(work, ignore_errors=True)


def first_assertion(error):
    """The AssertionError inside `error` (the SDK's task groups wrap what a check raises)."""
    if isinstance(error, AssertionError):
        return error
    for inner in getattr(error, "exceptions", []):
        found = first_assertion(inner)
        if found:
            return found
    return None


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except BaseException as error:
        failed = first_assertion(error)
        if failed is None:
            raise
        print(f"FAILED: {failed}")
        sys.exit(1)
