"""Talking to an OpenAI-compatible chat endpoint: settings, reply parsing, retries, concurrency.

Any server that speaks the OpenAI HTTP API works: OpenAI itself, vLLM, Ollama, a llama.cpp
server, or ``generation/serve_local.py`` (a small local model on 127.0.0.1). The requests go
through the official ``openai`` package; its own retry loop is switched off so that this
module decides what is retried and how long to wait:

* HTTP 429 and 5xx, timeouts and dropped connections are retried with exponential backoff
  (``backoff`` seconds, doubled each time, capped at 60 s); a ``Retry-After`` header, when the
  server sends one, sets the wait instead.
* A 200 reply whose body is not the API object (an HTML page from a proxy, JSON cut short, no
  ``choices``) is retried like a 500: a fault of that one request.
* Other 4xx replies (a wrong key, an unknown model) stop the run at once: retrying would only
  repeat them. Requests already in flight still finish and are kept; none is paid for twice.
* Every message built from a server's text has the API key (and anything shaped like a key)
  replaced by ``[redacted]``: servers echo keys in their 401 replies.
* A reply that is not the JSON object the prompt asks for gets a corrective follow-up message
  (the model sees its own reply and is told what was wrong), up to ``format_retries`` times.
  After that the entity is recorded as failed, or, with ``plain_text_fallback``, its first
  reply (the answer to the question, not to the correction) is kept as the profile when it
  holds at least 20 characters of text (small local models often ignore the format).

The API key is read from the flag or ``OPENAI_API_KEY`` and is never written anywhere.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Awaitable, Callable, Iterable

FORMAT_HINT = ('Reply with one JSON object and nothing else: '
               '{"summarization": "<the profile>", "reasoning": "<why, in one or two sentences>"}')


class LLMError(RuntimeError):
    """A request that cannot succeed by retrying (bad key, unknown model, retries exhausted)."""


class ReplyFormatError(ValueError):
    """A reply that is not the JSON object asked for; the message says what is wrong."""


@dataclass
class LLMSettings:
    """How to reach the endpoint and what to ask of it.

    Args:
        model: model name as the endpoint knows it (``gpt-4o-mini``, ``Qwen/Qwen2.5-7B-Instruct``...).
        base_url: the endpoint (``OPENAI_BASE_URL``, else OpenAI's).
        api_key: the key (``OPENAI_API_KEY``); local servers accept any non-empty string.
        temperature, max_tokens: sampling settings sent with every request.
        timeout: seconds before a request is abandoned and retried.
        retries: retries after a 429/5xx/timeout/connection error.
        format_retries: corrective follow-ups after a malformed reply.
        backoff: first wait in seconds between retries (doubled each time, at most 60 s).
        concurrency: requests in flight at once.
        plain_text_fallback: keep a non-JSON reply as the profile after the format retries.
        json_mode: send ``response_format={"type": "json_object"}`` (OpenAI, vLLM, Ollama support it).
        max_stored_chars: a reply longer than this is cut before it is parsed and stored
            (default ``max(2000, 8 * max_tokens)``: a server that ignores ``max_tokens`` cannot
            fill the cache).
    """

    model: str = "gpt-4o-mini"
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    temperature: float = 0.0
    max_tokens: int = 300
    timeout: float = 60.0
    retries: int = 6
    format_retries: int = 2
    backoff: float = 1.0
    concurrency: int = 16
    plain_text_fallback: bool = False
    json_mode: bool = False
    max_stored_chars: int = 0

    def __post_init__(self):
        # a token is about four characters; twice that leaves room for any tokenizer
        self.max_stored_chars = self.max_stored_chars or max(2000, 8 * self.max_tokens)
        self.base_url = self.base_url or os.environ.get("OPENAI_BASE_URL") or None
        self.api_key = self.api_key or os.environ.get("OPENAI_API_KEY") or None
        if self.concurrency < 1 or self.retries < 0 or self.format_retries < 0:
            raise ValueError("concurrency must be >= 1 and retries >= 0")

    def request_params(self) -> dict[str, Any]:
        """What identifies a request besides its messages (part of the cache key; no key, no URL)."""
        params = {"model": self.model, "temperature": self.temperature, "max_tokens": self.max_tokens}
        if self.json_mode:
            params["response_format"] = {"type": "json_object"}
        return params

    def public(self) -> dict[str, Any]:
        """The settings as logged: everything but the key."""
        d = asdict(self)
        d.pop("api_key")
        return d


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S | re.I)
_PROFILE_KEYS = ("summarization", "summary", "profile")


def _objects(text: str):
    """Every JSON value that starts at a ``{`` in ``text``, in order (prose around them is ignored)."""
    decoder = json.JSONDecoder()
    for m in re.finditer(r"\{", text):
        try:
            yield decoder.raw_decode(text, m.start())[0]
        except json.JSONDecodeError:
            continue


def parse_reply(text: str | None) -> dict[str, str]:
    """``{"profile", "reasoning"}`` from a model's reply, or :class:`ReplyFormatError`.

    Accepts the object bare, inside a Markdown code fence, or surrounded by prose; the
    profile may be under ``summarization`` (asked for), ``summary`` or ``profile``; the first
    object that has one of them wins.
    """
    if not text or not text.strip():
        raise ReplyFormatError("the reply is empty")
    fenced = _FENCE.search(text)
    found = False
    for obj in _objects(fenced.group(1) if fenced else text):
        if not isinstance(obj, dict):
            continue
        found = True
        profile = next((obj[k] for k in _PROFILE_KEYS if isinstance(obj.get(k), str) and obj[k].strip()), None)
        if profile is not None:
            reasoning = obj.get("reasoning", "")
            return {"profile": profile.strip(),
                    "reasoning": reasoning.strip() if isinstance(reasoning, str) else json.dumps(reasoning)}
    if not found:
        raise ReplyFormatError("the reply contains no JSON object")
    raise ReplyFormatError('the JSON object has no non-empty "summarization" string')


def plain_text_profile(text: str | None) -> dict[str, str] | None:
    """The documented fallback for a model that will not write JSON: its reply, cleaned, as the profile."""
    if not text:
        return None
    cleaned = _FENCE.sub(lambda m: m.group(1), text).strip().strip('"').strip()
    cleaned = re.sub(r"\s+", " ", cleaned)
    return {"profile": cleaned, "reasoning": ""} if len(cleaned) >= 20 else None


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds from a ``Retry-After`` (or ``retry-after-ms``) header, if the server sent one."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def make_client(settings: LLMSettings):
    """An ``openai.AsyncOpenAI`` for the settings, with its own retries off (ours apply)."""
    try:
        import openai
    except ImportError:
        raise LLMError("the openai package is needed: pip install 'semrec[llm]' (or pip install openai)") from None
    if not settings.api_key:
        raise LLMError("no API key: set OPENAI_API_KEY or pass --api-key (a local server accepts any value, e.g. 'local')")
    return openai.AsyncOpenAI(api_key=settings.api_key, base_url=settings.base_url, max_retries=0,
                              timeout=settings.timeout)


@dataclass
class Outcome:
    """What became of one request: ``status`` is ``ok`` or ``failed``."""

    status: str
    profile: str = ""
    reasoning: str = ""
    format: str = "json"
    raw: str = ""
    error: str = ""
    attempts: int = 0
    usage: dict[str, int] = field(default_factory=dict)


def redact(text: str, key: str | None) -> str:
    """``text`` with the API key, and anything that looks like a key, replaced by ``[redacted]``.

    Servers echo the key they were given in 401 messages, sometimes whole, sometimes masked in
    the middle (``sk-abc***xyz``); neither may reach a log, a cache file or the terminal.
    """
    if key:
        text = text.replace(key, "[redacted]")
        if len(key) >= 12:  # a masked echo keeps the key's ends
            head, tail = re.escape(key[:6]), re.escape(key[-4:])
            text = re.sub(rf"{head}\S*?{tail}|{head}\S*", "[redacted]", text)
    return re.sub(r"\b(sk|rk|pk)-[A-Za-z0-9_\-*.]{8,}", "[redacted]", text)


def _invalid_body(result: Any) -> str | None:
    """Why an HTTP 200 result is not an API object (the client returns a ``str`` for a non-JSON body)."""
    if isinstance(result, (str, bytes)):
        head = re.sub(r"\s+", " ", result[:80] if isinstance(result, str) else repr(result[:80]))
        return f"the 200 reply's body is not a JSON API object (it starts {head!r})"
    return None


async def call_with_backoff(settings: LLMSettings, fn: Callable[[], Awaitable[Any]], what: str = "request",
                            check: Callable[[Any], str | None] = _invalid_body) -> Any:
    """Run ``fn()`` and retry it on 429/5xx/timeouts/connection errors, honouring ``Retry-After``.

    A reply with status 200 whose body is not the API object asked for (HTML from a proxy, JSON
    cut short, no ``choices``; ``check`` says why) is retried the same way: it is a fault of
    this one request, not of the run.
    """
    import openai

    delay = settings.backoff
    for attempt in range(settings.retries + 1):
        try:
            result = await fn()
            problem = check(result)
            if problem is None:
                return result
            last, wait = problem, None
        except openai.APIStatusError as e:
            retryable = e.status_code == 429 or e.status_code >= 500 or e.status_code == 408
            if not retryable:
                raise LLMError(f"{what}: HTTP {e.status_code} from the endpoint: {_short(e, settings)}") from None
            last = f"HTTP {e.status_code}"
            wait = retry_after_seconds(getattr(e.response, "headers", None))
        except (openai.APITimeoutError, openai.APIConnectionError) as e:
            last, wait = type(e).__name__, None
        except (ValueError, openai.APIResponseValidationError) as e:  # a 200 whose JSON is cut short or malformed
            last, wait = f"the 200 reply's body is not valid JSON ({_short(e, settings)})", None
        if attempt == settings.retries:
            raise LLMError(f"{what}: gave up after {settings.retries + 1} attempts (last: {last})")
        await asyncio.sleep(min(60.0, wait if wait is not None else delay))
        delay *= 2
    raise AssertionError("unreachable")


def _short(e: Exception, settings: LLMSettings | None = None) -> str:
    text = redact(str(e), settings.api_key if settings is not None else None)
    return text if len(text) < 300 else text[:300] + "..."


def _chat_body_problem(reply: Any) -> str | None:
    return _invalid_body(reply) or (None if getattr(reply, "choices", None) else "the 200 reply has no choices")


async def complete_profile(client, settings: LLMSettings, messages: list[dict[str, str]],
                           what: str = "chat completion") -> Outcome:
    """One entity: ask, parse, correct the model up to ``format_retries`` times.

    Stored texts are capped at :attr:`LLMSettings.max_stored_chars` (a server that ignores
    ``max_tokens`` cannot grow the cache without bound)."""
    messages = list(messages)
    usage = {"prompt_tokens": 0, "completion_tokens": 0}
    params = settings.request_params()
    first_text, last_text, problem = "", "", ""
    for attempt in range(settings.format_retries + 1):
        reply = await call_with_backoff(settings, lambda: client.chat.completions.create(messages=messages, **params),
                                        what, check=_chat_body_problem)
        if getattr(reply, "usage", None) is not None:
            usage["prompt_tokens"] += reply.usage.prompt_tokens or 0
            usage["completion_tokens"] += reply.usage.completion_tokens or 0
        text = _cap(reply.choices[0].message.content, settings.max_stored_chars)
        try:
            parsed = parse_reply(text)
            return Outcome("ok", parsed["profile"], parsed["reasoning"], "json", text or "", attempts=attempt + 1,
                           usage=usage)
        except ReplyFormatError as e:
            problem = str(e)
            first_text = first_text or text or ""
            last_text = text or last_text
            messages += [{"role": "assistant", "content": text or ""},
                         {"role": "user", "content": f"That reply could not be used: {problem}. {FORMAT_HINT}"}]
    # the answer to the question itself, not to the correction (small models reply to that with apologies)
    fallback = plain_text_profile(first_text) if settings.plain_text_fallback else None
    if fallback:
        return Outcome("ok", fallback["profile"], "", "text", first_text, attempts=settings.format_retries + 1, usage=usage)
    return Outcome("failed", raw=last_text, error=f"malformed reply after {settings.format_retries + 1} tries: {problem}",
                   attempts=settings.format_retries + 1, usage=usage)


def _cap(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[:limit] + f" [cut: {len(text) - limit} more characters]"


async def run_bounded(jobs: Iterable[Any], worker: Callable[[Any], Awaitable[None]], concurrency: int) -> None:
    """Run ``worker(job)`` for every job with at most ``concurrency`` in flight.

    The first hard error stops new jobs from starting; the jobs already in flight finish (so
    the replies they were waiting for are kept, not paid for again), then the error is raised.
    """
    queue: asyncio.Queue = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    errors: list[BaseException] = []

    async def drain():
        while not errors:
            try:
                job = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                await worker(job)
            except Exception as e:  # noqa: BLE001 - raised below, once the others have finished
                errors.append(e)

    tasks = [asyncio.create_task(drain()) for _ in range(min(concurrency, max(queue.qsize(), 1)))]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if errors:
        raise errors[0]
