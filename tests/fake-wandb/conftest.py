"""Fixtures for the fake W&B backend's own tests."""
import base64
import http.client
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fakewandb_client import FakeWandb  # noqa: E402

ENTITY = "fake-entity"
PROJECT = "proj"


@pytest.fixture(scope="session")
def server():
    fw = FakeWandb(max_hold=20).start()
    yield fw
    rc = fw.stop()
    assert rc == 0, "".join(fw.stderr_lines)


@pytest.fixture
def fw(server):
    """The shared fake, reset to an empty state and no faults for each test."""
    server.reset()
    yield server
    server.clear_faults()
    errors = [ln for ln in server.stderr_lines if "internal error" in ln]
    assert not errors, "".join(server.stderr_lines)


class Api:
    """A plain W&B API client over one keep-alive http.client connection."""

    def __init__(self, fw, key=None, timeout=5.0):
        self.fw = fw
        self.key = fw.api_key if key is None else key
        self.timeout = timeout
        self.conn = None

    def auth(self):
        return "Basic " + base64.b64encode(("api:" + self.key).encode()).decode()

    def connect(self):
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.fw.port, timeout=self.timeout)
        return self.conn

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def post(self, path, body, headers=None, raw=False):
        """Returns (status, headers dict (lowercase), parsed JSON body). On any
        connection-level error the connection is dropped and the error raised."""
        h = {"Authorization": self.auth(), "Content-Type": "application/json"}
        h.update(headers or {})
        data = body if raw else json.dumps(body).encode()
        conn = self.connect()
        try:
            conn.request("POST", path, data, h)
            resp = conn.getresponse()
            payload = resp.read()
        except Exception:
            self.close()
            raise
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
        if hdrs.get("connection", "").lower() == "close":
            self.close()
        try:
            obj = json.loads(payload) if payload else None
        except ValueError:
            obj = payload
        return resp.status, hdrs, obj

    def graphql(self, query, variables=None, **kw):
        return self.post("/graphql", {"query": query, "variables": variables or {}}, **kw)

    def upsert(self, run, project=PROJECT, entity=ENTITY, **fields):
        v = {"name": run, "project": project, "entity": entity}
        v.update(fields)
        st, _, obj = self.graphql(UPSERT, v)
        assert st == 200, obj
        return obj["data"]["upsertBucket"]

    def fs(self, run, body, project=PROJECT, entity=ENTITY, **kw):
        return self.post(f"/files/{entity}/{project}/{run}/file_stream", body, **kw)

    def history(self, run, offset, lines, **kw):
        return self.fs(run, {"files": {"wandb-history.jsonl": {"offset": offset,
                                                               "content": lines}}}, **kw)


UPSERT = """mutation UpsertBucket($id: String, $name: String, $project: String,
  $entity: String, $displayName: String, $notes: String, $config: JSONString,
  $tags: [String!], $groupName: String, $jobType: String, $host: String) {
  upsertBucket(input: {id: $id, name: $name, modelName: $project, entityName: $entity,
    displayName: $displayName, notes: $notes, config: $config, tags: $tags,
    groupName: $groupName, jobType: $jobType, host: $host}) {
    bucket { id name displayName historyLineCount project { name entity { name } } }
    inserted
  }
}"""


@pytest.fixture
def api(fw):
    a = Api(fw)
    yield a
    a.close()
