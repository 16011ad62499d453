"""Python client for ContextStore, the memory server for LLM applications.

    from contextstore import Client
    with Client("127.0.0.1", 7420) as client:
        client.add("alice", "I moved to Lisbon", session="s1", role="user")
        for hit in client.search("alice", "Where does Alice live?", k=3):
            print(hit.score, hit.text)

Standard library only. ``AsyncClient`` has the same methods as coroutines.
"""

from ._ops import Operations, Request
from .aio import AsyncClient
from .client import Client, Pending, Pipeline
from .errors import *  # noqa: F401,F403 - the exception of every error code
from .errors import ContextStoreError, ServerError
from .types import (
    Added, Auth, Backup, BatchAdded, Digest, Dropped, Embeddings, ExportPage, Explain, Feedback, Hello, Hit, Memories,
    Memory, Page,
    Prompt, Section, Session, Sessions, SideScore, Stats, Truncation, UserSummary, Users,
)

__version__ = "0.1.0"
