"""LLM-as-judge: the 1-5 translation-quality rubric of the first paper (Appendix D, Table 14).

Any OpenAI-compatible ``/v1/chat/completions`` endpoint works (OpenAI, vLLM, llama.cpp server, Ray Serve
LLM, ...). The system prompt is the paper's, verbatim; the user message gives the two sentences. The reply's
``Score: N`` line is parsed robustly (markdown, ``N/5``, JSON, a bare digit); a reply without a score in 1-5
counts as a failed attempt and is retried, like HTTP 429/5xx and network errors, with exponential backoff
(``Retry-After`` is honoured). Calls are spaced by a process-wide rate limit, and every answer is cached on disk
(any :mod:`ray_slt.storage` path, local or s3://) under the SHA-256 of the model and the full request, so a
re-run costs nothing.

Settings come from :class:`JudgeConfig`, whose unset fields fall back to the environment:
``RAY_SLT_JUDGE_URL`` (base URL such as ``https://api.openai.com/v1``, or the full
``.../chat/completions`` URL), ``RAY_SLT_JUDGE_MODEL`` and ``RAY_SLT_JUDGE_API_KEY`` (the key is never
written to a config or to the cache).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from pydantic import Field

from ray_slt import storage
from ray_slt.config import Schema
from ray_slt.errors import ConfigError, RaySltError

#: The system prompt of the paper's Appendix D (Table 14), verbatim.
SYSTEM_PROMPT = """You are an expert evaluator of translation quality. Your task is to evaluate how well the \
Predicted Translation matches the Ground Truth Translation. Minor grammatical differences are acceptable if the \
meaning is preserved.

Evaluation Dimensions: (1) Semantic correctness, (2) Completeness, (3) Fluency, (4) Faithfulness.

Scoring (1–5): 5 = Meaning fully preserved; 4 = Minor wording differences; 3 = Core meaning preserved with some \
missing/imprecise details; 2 = Significant distortion or missing content; 1 = Completely incorrect.

Rules: Focus on meaning, not exact wording. Synonyms and paraphrases are acceptable. Do not penalize minor \
grammatical differences.

Output Format: Analysis: - Semantic correctness: ... - Completeness: ... - Fluency: ... - Faithfulness: ...
Score: <1–5>

Explanation: <1–2 sentences>"""

USER_TEMPLATE = "Ground Truth Translation: {reference}\nPredicted Translation: {hypothesis}"

ENV_URL, ENV_MODEL, ENV_KEY = "RAY_SLT_JUDGE_URL", "RAY_SLT_JUDGE_MODEL", "RAY_SLT_JUDGE_API_KEY"


class JudgeConfig(Schema):
    """Where and how to ask the judge. ``url``/``model`` default to the environment (see module doc)."""

    url: str | None = Field(None, description="base URL (…/v1) or full …/chat/completions URL")
    model: str | None = None
    api_key_env: str = Field(ENV_KEY, description="environment variable holding the API key")
    temperature: float | None = Field(None, description="omitted from requests when unset")
    max_tokens: int | None = Field(None, gt=0)
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(5, ge=0, description="attempts after the first one")
    backoff_s: float = Field(1.0, ge=0, description="first retry delay; doubles each retry (with jitter)")
    max_backoff_s: float = Field(60.0, ge=0)
    requests_per_minute: float = Field(60.0, gt=0)
    concurrency: int = Field(4, ge=1)
    cache_dir: str | None = Field(None, description="local path or s3:// URI; no cache when unset")


class JudgeError(RaySltError):
    """The judge could not produce a score (endpoint down, or no parseable reply after all retries)."""


@dataclass
class Judgement:
    score: int
    reply: str
    cached: bool


# --------------------------------------------------------------------------------------------- parsing

_SCORE_PATTERNS = [
    # "Score: 4", "**Score:** 4", "Final score = 4/5", "score - 4"
    re.compile(r"score\W{0,6}?\s*[:=\-–]\s*\**\s*\(?\s*([0-9]+(?:\.[0-9]+)?)(?!\s*[–-]\s*[0-9])", re.IGNORECASE),
    # JSON-ish: "score": 4
    re.compile(r"\"score\"\s*:\s*\"?([0-9]+(?:\.[0-9]+)?)", re.IGNORECASE),
]
_BARE = re.compile(r"^\s*\**\s*([1-5])\s*(?:/\s*5)?\s*\**\s*\.?\s*$")


def parse_score(reply: str) -> int | None:
    """The 1-5 score of a judge reply, or ``None`` if it has none.

    The last ``Score: N`` (any case, markdown emphasis, ``N/5``) wins; JSON ``{"score": N}`` and a reply that
    is a bare digit also count. A number outside 1-5 or a fraction is not a score.
    """
    if not isinstance(reply, str):
        return None
    for pattern in _SCORE_PATTERNS:
        found = pattern.findall(reply)
        if found:
            value = found[-1]
            if "." in value:
                number = float(value)
                if not number.is_integer():
                    return None
                value = str(int(number))
            n = int(value)
            return n if 1 <= n <= 5 else None
    m = _BARE.match(reply)
    return int(m.group(1)) if m else None


# ----------------------------------------------------------------------------------------- rate limit


class RateLimiter:
    """At most ``per_minute`` acquisitions per minute, evenly spaced, shared by all threads."""

    def __init__(self, per_minute: float):
        self.interval = 60.0 / per_minute
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        delay = start - now
        if delay > 0:
            time.sleep(delay)


# -------------------------------------------------------------------------------------------- client


class _Retry(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


class Judge:
    """Scores (reference, hypothesis) pairs with the Appendix D rubric."""

    def __init__(self, config: JudgeConfig | None = None, **overrides):
        cfg = config or JudgeConfig()
        if overrides:
            cfg = JudgeConfig.model_validate({**cfg.model_dump(), **overrides})
        url = cfg.url or os.environ.get(ENV_URL)
        model = cfg.model or os.environ.get(ENV_MODEL)
        if not url:
            raise ConfigError(f"LLM judge: no endpoint URL (set judge.url or {ENV_URL})")
        if not model:
            raise ConfigError(f"LLM judge: no model name (set judge.model or {ENV_MODEL})")
        url = url.rstrip("/")
        self.url = url if url.endswith("/chat/completions") else url + "/chat/completions"
        self.model = model
        self.config = cfg
        self._api_key = os.environ.get(cfg.api_key_env)
        self._limiter = RateLimiter(cfg.requests_per_minute)
        self.requests_sent = 0
        self._count_lock = threading.Lock()

    # The request body without the key: what the cache is keyed on.
    def _payload(self, reference: str, hypothesis: str) -> dict:
        body: dict = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": USER_TEMPLATE.format(reference=reference, hypothesis=hypothesis)},
            ],
        }
        if self.config.temperature is not None:
            body["temperature"] = self.config.temperature
        if self.config.max_tokens is not None:
            body["max_tokens"] = self.config.max_tokens
        return body

    @staticmethod
    def cache_key(payload: dict) -> str:
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def _cache_path(self, key: str) -> str | None:
        if not self.config.cache_dir:
            return None
        return storage.join(self.config.cache_dir, key[:2], f"{key}.json")

    def _post(self, payload: dict) -> str:
        data = json.dumps(payload).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
        self._limiter.acquire()
        with self._count_lock:
            self.requests_sent += 1
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as e:
            if e.code == 429 or e.code >= 500:
                retry_after = e.headers.get("Retry-After") if e.headers else None
                try:
                    wait = float(retry_after) if retry_after is not None else None
                except ValueError:
                    wait = None
                raise _Retry(f"HTTP {e.code}", wait) from e
            detail = e.read()[:300].decode("utf-8", "replace")
            raise JudgeError(f"LLM judge {self.url}: HTTP {e.code}: {detail}") from e
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            raise _Retry(f"connection failed ({getattr(e, 'reason', e)})") from e
        try:
            body = json.loads(raw)
            content = body["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise _Retry("reply is not an OpenAI chat completion") from e
        if not isinstance(content, str):
            raise _Retry("reply has no text content")
        return content

    def judge(self, reference: str, hypothesis: str) -> Judgement:
        """The rubric score of one hypothesis; raises :class:`JudgeError` after the last failed retry."""
        payload = self._payload(reference, hypothesis)
        key = self.cache_key(payload)
        path = self._cache_path(key)
        if path is not None and storage.exists(path):
            try:
                entry = json.loads(storage.read_text(path))
                reply = entry["reply"]
            except (ValueError, KeyError, TypeError, RaySltError):
                reply = None  # an unreadable entry is a miss; it is overwritten below
            score = parse_score(reply) if isinstance(reply, str) else None
            if score is not None:
                return Judgement(score, reply, cached=True)
        cfg = self.config
        last = ""
        for attempt in range(cfg.max_retries + 1):
            try:
                reply = self._post(payload)
                score = parse_score(reply)
                if score is None:
                    raise _Retry(f"no score in 1-5 in the reply {reply[:80]!r}")
            except _Retry as e:
                last = str(e)
                if attempt == cfg.max_retries:
                    break
                delay = min(cfg.max_backoff_s, cfg.backoff_s * 2**attempt) * (1 + 0.25 * random.random())
                if e.retry_after is not None:
                    delay = min(cfg.max_backoff_s, max(delay, e.retry_after))
                time.sleep(delay)
                continue
            if path is not None:
                entry = {"model": self.model, "key": key, "score": score, "reply": reply}
                storage.write_text(path, json.dumps(entry, ensure_ascii=False))
            return Judgement(score, reply, cached=False)
        raise JudgeError(f"LLM judge {self.url}: no score after {cfg.max_retries + 1} attempts ({last})")

    def score(self, reference: str, hypothesis: str) -> int:
        return self.judge(reference, hypothesis).score

    def corpus(self, hyps: Sequence[str], refs: Sequence[str]) -> dict:
        """Mean rubric score (1-5) of a corpus, asking up to ``concurrency`` requests at a time."""
        if len(hyps) != len(refs):
            raise RaySltError(f"{len(hyps)} hypotheses but {len(refs)} references")
        if not hyps:
            raise RaySltError("no hypotheses to judge")
        with ThreadPoolExecutor(max_workers=self.config.concurrency) as pool:
            results = list(pool.map(self.judge, refs, hyps))
        scores = [r.score for r in results]
        return {
            "judge_score": sum(scores) / len(scores),
            "scores": scores,
            "n_cached": sum(r.cached for r in results),
            "judge_model": self.model,
        }
