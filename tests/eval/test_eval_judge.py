"""ray_slt.eval.judge against a small OpenAI-compatible HTTP server on 127.0.0.1 that the tests start:
well-formed and malformed replies, transient 5xx/429, hard 4xx, the rate limit and the on-disk cache."""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ray_slt.errors import ConfigError
from ray_slt.eval.judge import SYSTEM_PROMPT, Judge, JudgeConfig, JudgeError, parse_score


def completion(content: str) -> dict:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
    }


def rubric_reply(score: int) -> str:
    return (
        "Analysis: - Semantic correctness: ok - Completeness: ok - Fluency: ok - Faithfulness: ok\n"
        f"Score: {score}\n\nExplanation: compared the two sentences."
    )


class FakeOpenAI:
    """An OpenAI-style /v1/chat/completions endpoint.

    ``script`` is a list of replies used in order, each ``(status, body, headers)`` with body a dict (sent as
    JSON) or raw bytes; once it is exhausted the server grades like a judge would: 5 when the predicted
    sentence equals the ground truth, else 1 + the number of shared words (at most 4).
    """

    def __init__(self):
        self.script: list[tuple[int, object, dict]] = []
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                with owner.lock:
                    owner.requests.append(
                        {"path": self.path, "headers": dict(self.headers), "body": body, "t": time.monotonic()}
                    )
                    step = owner.script.pop(0) if owner.script else None
                if step is None:
                    user = body["messages"][1]["content"]
                    ref = re.search(r"Ground Truth Translation: (.*)", user).group(1)
                    hyp = re.search(r"Predicted Translation: (.*)", user).group(1)
                    score = 5 if ref == hyp else min(4, 1 + len(set(ref.split()) & set(hyp.split())))
                    step = (200, completion(rubric_reply(score)), {})
                status, payload, headers = step
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint():
    with FakeOpenAI() as server:
        yield server


def make_judge(server, **kw) -> Judge:
    settings = {"url": server.url, "model": "judge-test", "backoff_s": 0.0, "requests_per_minute": 60000}
    settings.update(kw)
    return Judge(JudgeConfig(**settings))


# ------------------------------------------------------------------------------------------------ parsing


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        (rubric_reply(4), 4),
        ("**Score:** 5\nExplanation: identical.", 5),
        ("Final score = 3/5", 3),
        ("score: (2)", 2),
        ('{"score": 2, "explanation": "x"}', 2),
        ("4", 4),
        ("**3**", 3),
        ("Score: 4.0", 4),
        ("Score: 2\n...on reflection...\nScore: 3", 3),
        ("Score: 7", None),
        ("Score: 0", None),
        ("Score: 4.5", None),
        ("Score: <1–5>", None),
        ("Score: 1-5", None),
        ("The translation is decent.", None),
        ("", None),
        ("Scores: see above", None),
    ],
)
def test_parse_score(reply, score):
    assert parse_score(reply) == score


# ---------------------------------------------------------------------------------------------- the client


def test_sends_the_appendix_d_prompt(endpoint, monkeypatch):
    monkeypatch.setenv("RAY_SLT_JUDGE_API_KEY", "sk-test-123")
    judge = make_judge(endpoint, temperature=0.0, max_tokens=200)
    result = judge.judge("regen im norden", "regen im norden")
    assert (result.score, result.cached) == (5, False)
    (req,) = endpoint.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["Authorization"] == "Bearer sk-test-123"
    body = req["body"]
    assert body["model"] == "judge-test" and body["temperature"] == 0.0 and body["max_tokens"] == 200
    system, user = body["messages"]
    assert system == {"role": "system", "content": SYSTEM_PROMPT}
    assert user["role"] == "user"
    assert user["content"] == "Ground Truth Translation: regen im norden\nPredicted Translation: regen im norden"
    for phrase in ("Semantic correctness", "5 = Meaning fully preserved", "1 = Completely incorrect", "Score: <1–5>"):
        assert phrase in SYSTEM_PROMPT


def test_env_configuration(endpoint, monkeypatch):
    monkeypatch.setenv("RAY_SLT_JUDGE_URL", endpoint.url + "/chat/completions")
    monkeypatch.setenv("RAY_SLT_JUDGE_MODEL", "env-model")
    monkeypatch.delenv("RAY_SLT_JUDGE_API_KEY", raising=False)
    judge = Judge(backoff_s=0.0)
    assert judge.score("a b c", "a b x") == 3
    req = endpoint.requests[0]
    assert req["body"]["model"] == "env-model" and "Authorization" not in req["headers"]
    assert "temperature" not in req["body"]  # omitted unless configured (some models reject it)
    monkeypatch.delenv("RAY_SLT_JUDGE_URL")
    with pytest.raises(ConfigError, match="RAY_SLT_JUDGE_URL"):
        Judge()


def test_retries_transient_errors_and_malformed_replies(endpoint):
    endpoint.script = [
        (503, {"error": "overloaded"}, {}),
        (429, {"error": "rate limited"}, {"Retry-After": "0"}),
        (200, b"<html>not json</html>", {}),
        (200, {"choices": []}, {}),
        (200, completion("I would rather not give a number."), {}),
        (200, completion("Score: 9"), {}),
        (200, completion(rubric_reply(2)), {}),
    ]
    judge = make_judge(endpoint, max_retries=6)
    assert judge.score("x", "y") == 2
    assert len(endpoint.requests) == 7


def test_gives_up_after_the_last_retry(endpoint):
    endpoint.script = [(500, {"error": "boom"}, {})] * 3
    judge = make_judge(endpoint, max_retries=2)
    with pytest.raises(JudgeError, match=r"no score after 3 attempts \(HTTP 500\)"):
        judge.score("x", "y")
    assert len(endpoint.requests) == 3


def test_client_errors_are_not_retried(endpoint):
    endpoint.script = [(401, {"error": {"message": "invalid api key"}}, {})]
    judge = make_judge(endpoint, max_retries=5)
    with pytest.raises(JudgeError, match=r"HTTP 401.*invalid api key"):
        judge.score("x", "y")
    assert len(endpoint.requests) == 1


def test_unreachable_endpoint_is_retried_then_reported():
    with FakeOpenAI() as server:
        url = server.url
    judge = Judge(JudgeConfig(url=url, model="m", max_retries=1, backoff_s=0.0, timeout_s=5))
    with pytest.raises(JudgeError, match="connection failed"):
        judge.score("x", "y")
    assert judge.requests_sent == 2


def test_cache_on_disk(endpoint, tmp_path):
    cache = str(tmp_path / "judge-cache")
    judge = make_judge(endpoint, cache_dir=cache)
    first = judge.judge("am montag regen", "am montag sonne")
    again = judge.judge("am montag regen", "am montag sonne")
    assert (first.score, first.cached) == (3, False)
    assert (again.score, again.cached) == (3, True)
    assert len(endpoint.requests) == 1
    files = list((tmp_path / "judge-cache").rglob("*.json"))
    assert len(files) == 1
    entry = json.loads(files[0].read_text())
    assert entry["score"] == 3 and entry["model"] == "judge-test" and files[0].stem == entry["key"]
    # A fresh client with the same cache asks nothing; another model or another sentence is a new request.
    assert make_judge(endpoint, cache_dir=cache).judge("am montag regen", "am montag sonne").cached
    assert len(endpoint.requests) == 1
    assert not make_judge(endpoint, cache_dir=cache, model="other").judge("am montag regen", "am montag sonne").cached
    assert not judge.judge("am montag regen", "am dienstag sonne").cached
    assert len(endpoint.requests) == 3
    assert "sk-" not in "".join(p.read_text() for p in files)
    # A damaged entry is a miss: asked again and rewritten.
    files[0].write_text("{not json", encoding="utf-8")
    assert not judge.judge("am montag regen", "am montag sonne").cached
    assert json.loads(files[0].read_text())["score"] == 3
    assert len(endpoint.requests) == 4


def test_cache_on_s3(endpoint, s3_bucket):
    judge = make_judge(endpoint, cache_dir=f"{s3_bucket}/judge")
    assert not judge.judge("a", "b").cached
    assert judge.judge("a", "b").cached
    assert len(endpoint.requests) == 1


def test_rate_limit_spaces_requests(endpoint):
    judge = make_judge(endpoint, requests_per_minute=600)  # one request every 0.1 s
    for i in range(4):
        judge.score("a b", f"a {i}")
    times = [r["t"] for r in endpoint.requests]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) == 3 and min(gaps) >= 0.08


def test_corpus_is_concurrent_but_rate_limited(endpoint, tmp_path):
    refs = ["regen im norden", "sonne im süden", "wolken am montag", "schnee in den alpen", "nebel", "wind"]
    hyps = ["regen im norden", "sonne im westen", "gewitter", "schnee in den bergen", "nebel", "sturm"]
    judge = make_judge(endpoint, requests_per_minute=1200, concurrency=4, cache_dir=str(tmp_path))
    result = judge.corpus(hyps, refs)
    assert result["scores"] == [5, 3, 1, 4, 5, 1]
    assert result["judge_score"] == pytest.approx(19 / 6)
    assert result["n_cached"] == 0 and result["judge_model"] == "judge-test"
    times = sorted(r["t"] for r in endpoint.requests)
    assert min(b - a for a, b in itertools.pairwise(times)) >= 0.04  # 1200/min: 0.05 s apart
    assert judge.corpus(hyps, refs)["n_cached"] == 6
    assert len(endpoint.requests) == 6
    with pytest.raises(Exception, match="2 hypotheses but 1 references"):
        judge.corpus(["a", "b"], ["a"])
