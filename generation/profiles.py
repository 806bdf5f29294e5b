"""Generate item or user profiles for a whole dataset with an LLM, resumably.

The commands ``generation/item/generate_profile.py`` and ``generation/user/generate_profile.py``
call :func:`main` with their kind. One run:

1. builds one chat request per entity (:mod:`semrec.generation.prompts`; user prompts show the
   item profiles when ``itm_prf.pkl`` exists, so generate items first);
2. skips every request already answered in the reply cache (``<dataset>/llm_cache/<kind>.jsonl``);
3. with ``--dry-run``, prints the number of requests, estimated tokens and cost, and stops;
4. otherwise sends the rest with bounded concurrency (or through the OpenAI Batch API with
   ``--batch``), appending each reply to the cache the moment it arrives;
5. writes ``itm_prf.pkl`` / ``usr_prf.pkl`` (``{id: {"profile", "reasoning"}}``, RLMRec's layout)
   and ``itm_prf.jsonl`` / ``usr_prf.jsonl`` once every entity has a profile. Entities whose
   replies stayed malformed are listed; running the command again retries only those.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from semrec.generation.cache import ReplyCache, request_key
from semrec.generation.llm import FORMAT_HINT, LLMError, LLMSettings, Outcome, complete_profile, make_client, \
    parse_reply, redact, run_bounded
from semrec.generation.prompts import DatasetText, PromptBuilder, estimate_tokens, load_templates

OUTPUTS = {"item": ("itm_prf.pkl", "itm_prf.jsonl"), "user": ("usr_prf.pkl", "usr_prf.jsonl")}

# USD per million tokens (input, output), standard tier as published by OpenAI; pass
# --price-in / --price-out for other models or when these change.
PRICES = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-3.5-turbo": (0.50, 1.50),
}


class Job:
    """The requests of one kind for one dataset, and what the cache already holds for them."""

    def __init__(self, kind: str, folder: Path, settings: LLMSettings, builder: PromptBuilder, cache: ReplyCache,
                 limit: int | None = None):
        self.kind, self.folder, self.settings, self.cache = kind, folder, settings, cache
        params = settings.request_params()
        self.requests: list[tuple[int, str, list[dict[str, str]]]] = []
        for entity in range(len(builder) if limit is None else min(limit, len(builder))):
            messages = builder.messages(entity)
            self.requests.append((entity, request_key(params, messages), messages))

    def pending(self) -> list[tuple[int, str, list[dict[str, str]]]]:
        """The requests the cache does not answer yet, each asked once: entities whose prompts are
        identical share one request (and its reply)."""
        seen: set[str] = set()
        out = []
        for r in self.requests:
            if r[1] not in seen and self.cache.get(r[1]) is None:
                seen.add(r[1])
                out.append(r)
        return out

    def record(self, entity: int, key: str, outcome: Outcome) -> None:
        cap, key_ = self.settings.max_stored_chars, self.settings.api_key
        self.cache.add({"key": key, "kind": self.kind, "id": entity, "model": self.settings.model,
                        "status": outcome.status, "profile": outcome.profile[:cap],
                        "reasoning": outcome.reasoning[:cap], "format": outcome.format, "attempts": outcome.attempts,
                        "usage": outcome.usage, "error": redact(outcome.error, key_)[:cap],
                        "raw": redact(outcome.raw, key_)[:cap] if outcome.status != "ok" else "",
                        "time": round(time.time(), 3)})


def estimate(job: Job, pending: list, price_in: float | None, price_out: float | None) -> dict[str, Any]:
    """Requests, estimated prompt tokens and upper bounds on completion tokens and cost.

    ``*_max`` bound one reply per request; ``*_max_with_format_retries`` also count every
    corrective follow-up a malformed reply can cause (``format_retries`` of them, each resending
    the conversation so far with the model's reply and the correction).
    """
    s = job.settings
    prompt = sum(estimate_tokens(m["content"]) + 4 for _, _, msgs in pending for m in msgs)
    completion = len(pending) * s.max_tokens
    r, turn = s.format_retries, s.max_tokens + estimate_tokens(FORMAT_HINT) + 24
    prompt_retries = (r + 1) * prompt + len(pending) * turn * r * (r + 1) // 2
    completion_retries = (r + 1) * completion
    prices = (price_in, price_out) if price_in is not None and price_out is not None else PRICES.get(s.model)
    unique = {key for _, key, _ in job.requests}
    out = {"requests": len(pending), "cached": len(unique) - len(pending),
           "shared": len(job.requests) - len(unique), "prompt_tokens": prompt, "completion_tokens_max": completion,
           "prompt_tokens_max_with_format_retries": prompt_retries,
           "completion_tokens_max_with_format_retries": completion_retries}
    if prices:
        out["cost_usd_max"] = round((prompt * prices[0] + completion * prices[1]) / 1e6, 4)
        out["cost_usd_max_with_format_retries"] = round((prompt_retries * prices[0]
                                                         + completion_retries * prices[1]) / 1e6, 4)
    return out


async def run_online(job: Job, pending: list, progress=None) -> dict[str, int]:
    """Send ``pending`` with bounded concurrency; every outcome goes to the cache at once."""
    client = make_client(job.settings)
    counts = {"ok": 0, "failed": 0}

    async def work(request):
        entity, key, messages = request
        outcome = await complete_profile(client, job.settings, messages, f"{job.kind} {entity}: chat completion")
        job.record(entity, key, outcome)
        counts[outcome.status] += 1
        if progress is not None:
            progress.update(1)

    try:
        await run_bounded(pending, work, job.settings.concurrency)
    finally:
        await client.close()
    return counts


# ----------------------------------------- Batch API ------------------------------------------
def _batch_state(job: Job) -> Path:
    return job.cache.path.with_name(f"{job.kind}_batch.json")


async def run_batch(job: Job, pending: list, poll_seconds: float = 30.0, log=print) -> dict[str, int]:
    """Submit ``pending`` as one OpenAI Batch job, wait for it, and move its replies into the cache.

    The batch id is saved next to the cache before waiting, so an interrupted run resumes the
    same batch (no second submission) when started again.
    """
    from semrec.common.io import write_json
    from semrec.generation.llm import call_with_backoff

    client = make_client(job.settings)
    state_path = _batch_state(job)
    try:
        if state_path.exists():
            state = json.loads(state_path.read_text())
            log(f"resuming batch {state['batch_id']} ({len(state['keys'])} requests)")
        else:
            params = job.settings.request_params()
            lines = [json.dumps({"custom_id": key, "method": "POST", "url": "/v1/chat/completions",
                                 "body": {"messages": messages, **params}}) for _, key, messages in pending]
            upload = await call_with_backoff(job.settings, lambda: client.files.create(
                file=(f"semrec-{job.kind}.jsonl", ("\n".join(lines) + "\n").encode()), purpose="batch"), "batch upload")
            batch = await call_with_backoff(job.settings, lambda: client.batches.create(
                input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"), "batch create")
            state = {"batch_id": batch.id, "input_file_id": upload.id, "keys": {k: e for e, k, _ in pending}}
            write_json(state_path, state)
            log(f"submitted batch {batch.id} ({len(pending)} requests)")
        while True:
            batch = await call_with_backoff(job.settings, lambda: client.batches.retrieve(state["batch_id"]), "batch poll")
            if batch.status in ("completed", "failed", "expired", "cancelled"):
                break
            await asyncio.sleep(poll_seconds)
        counts = {"ok": 0, "failed": 0}
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            content = await call_with_backoff(job.settings, lambda: client.files.content(file_id), "batch download")
            for line in content.text.splitlines():
                if not line.strip():
                    continue
                row = json.loads(line)
                key = row.get("custom_id")
                if key not in state["keys"]:
                    continue
                outcome = _batch_outcome(row)
                job.record(int(state["keys"][key]), key, outcome)
                counts[outcome.status] += 1
        if batch.status != "completed":
            log(f"batch {batch.id} ended with status {batch.status!r}")
        state_path.unlink()
        return counts
    finally:
        await client.close()


def _batch_outcome(row: dict[str, Any]) -> Outcome:
    response = row.get("response") or {}
    if row.get("error") or response.get("status_code", 200) != 200:
        return Outcome("failed", error=f"batch error: {row.get('error') or response.get('body')}", attempts=1)
    body = response.get("body") or {}
    text = ((body.get("choices") or [{}])[0].get("message") or {}).get("content")
    usage = {k: (body.get("usage") or {}).get(k, 0) for k in ("prompt_tokens", "completion_tokens")}
    try:
        parsed = parse_reply(text)
    except ValueError as e:
        return Outcome("failed", raw=text or "", error=f"malformed reply: {e}", attempts=1, usage=usage)
    return Outcome("ok", parsed["profile"], parsed["reasoning"], "json", text or "", attempts=1, usage=usage)


# ------------------------------------------ outputs -------------------------------------------
def collect(job: Job) -> tuple[dict[int, dict[str, str]], list[int]]:
    """Profiles of every entity the cache answers, and the entities still without one."""
    profiles, missing = {}, []
    for entity, key, _ in job.requests:
        rec = job.cache.get(key)
        if rec is None:
            missing.append(entity)
        else:
            profiles[entity] = {"profile": rec["profile"], "reasoning": rec["reasoning"]}
    return profiles, missing


def metadata_profiles(kind: str, text: DatasetText, max_items: int = 20) -> dict[int, dict[str, str]]:
    """Profiles without an LLM, from the training split only: an item's is its metadata (title,
    categories, ... as the prompts show them); a user's lists the titles of their newest
    ``max_items`` training items, oldest first."""
    if kind == "item":
        return {i: {"profile": text.item_fields(i) or text.item_title(i), "reasoning": "metadata"}
                for i in range(text.num_items)}
    return {u: {"profile": "Interacted with: " + "; ".join(text.item_title(i) for i in text.user_recent(u, max_items)),
                "reasoning": "metadata"} for u in range(text.num_users)}


def write_outputs(job: Job, profiles: dict[int, dict[str, str]]) -> tuple[Path, Path]:
    return write_profiles(job.folder, job.kind, profiles)


def write_profiles(folder: Path, kind: str, profiles: dict[int, dict[str, str]]) -> tuple[Path, Path]:
    from semrec.common.io import atomic_write, write_pickle

    pkl, jsonl = (folder / f for f in OUTPUTS[kind])
    write_pickle(pkl, profiles)
    atomic_write(jsonl, "".join(json.dumps({"id": k, **v}, ensure_ascii=False) + "\n"
                                for k, v in sorted(profiles.items())).encode("utf-8"))
    return pkl, jsonl


# -------------------------------------------- CLI ---------------------------------------------
def add_llm_arguments(p: argparse.ArgumentParser) -> None:
    """Flags shared by the profile commands and the one-command pipeline."""
    g = p.add_argument_group("LLM endpoint")
    g.add_argument("--model", default="gpt-4o-mini", help="model name at the endpoint (default gpt-4o-mini)")
    g.add_argument("--base-url", help="OpenAI-compatible endpoint (default $OPENAI_BASE_URL, else OpenAI)")
    g.add_argument("--api-key", help="API key (default $OPENAI_API_KEY; never written to a file or log)")
    g.add_argument("--concurrency", type=int, default=16, help="requests in flight (default 16)")
    g.add_argument("--temperature", type=float, default=0.0)
    g.add_argument("--max-tokens", type=int, default=300, help="completion tokens per reply at most")
    g.add_argument("--timeout", type=float, default=60.0, help="seconds per request before it is retried")
    g.add_argument("--retries", type=int, default=6, help="retries after 429/5xx/timeouts (backoff, Retry-After)")
    g.add_argument("--format-retries", type=int, default=2, help="corrective follow-ups after a malformed reply")
    g.add_argument("--backoff", type=float, default=1.0, help="first wait between retries, seconds")
    g.add_argument("--json-mode", action="store_true", help='send response_format={"type": "json_object"}')
    g.add_argument("--plain-text-fallback", action="store_true",
                   help="keep a reply that is still not JSON after the format retries as the profile")
    g = p.add_argument_group("prompts")
    g.add_argument("--instructions", help="instruction set: a folder name under generation/instruction/ or a path "
                                          "(default: chosen by the dataset name, else default/)")
    g.add_argument("--token-budget", type=int, default=1024, help="estimated tokens per prompt at most")
    g.add_argument("--max-reviews", type=int, default=10, help="reviews sampled per entity")
    g.add_argument("--max-items", type=int, default=20, help="training items sampled per user")
    g.add_argument("--seed", type=int, default=2023)
    g.add_argument("--select-reviews", type=int, metavar="K",
                   help="item prompts show the K most representative, diverse review sentences (MMR, RERec) "
                        "instead of a random sample of reviews; needs the local sentence encoder")
    g.add_argument("--mmr-lambda", type=float, default=0.7, help="MMR trade-off: 1 = relevance only, 0 = diversity only")
    g.add_argument("--source", choices=["llm", "metadata"], default="llm",
                   help="metadata: no LLM; an item's profile is its own metadata text, a user's the titles of "
                        "their newest --max-items training items (the text LLM-ESR embeds)")
    g = p.add_argument_group("running")
    g.add_argument("--dry-run", action="store_true", help="print requests, tokens and cost; send nothing")
    g.add_argument("--price-in", type=float, help="USD per 1M prompt tokens (for --dry-run)")
    g.add_argument("--price-out", type=float, help="USD per 1M completion tokens (for --dry-run)")
    g.add_argument("--batch", action="store_true", help="use the OpenAI Batch API (submit, poll, collect; resumable)")
    g.add_argument("--poll-seconds", type=float, default=30.0)
    g.add_argument("--limit", type=int, help="only the first N entities (a trial run; outputs are not written)")


@dataclass
class ProfileOptions:
    """What to ask and how to run, beside the endpoint (:class:`LLMSettings`): the ``prompts``
    and ``running`` flags of the command, as a value a library caller can build directly.

    Args:
        instructions: instruction set, a folder name under ``generation/instruction/`` or a path
            (None: chosen by the dataset name).
        token_budget, max_reviews, max_items, seed: prompt building (see ``PromptBuilder``).
        select_reviews: show the K most representative review sentences (MMR) instead of a sample.
        mmr_lambda: MMR trade-off between relevance and diversity.
        dry_run: estimate requests, tokens and cost, send nothing.
        price_in, price_out: USD per million tokens for the estimate.
        batch: use the OpenAI Batch API; ``poll_seconds`` between status checks.
        limit: only the first N entities (a trial; outputs are not written).
        source: ``llm`` (ask the endpoint) or ``metadata`` (no LLM: :func:`metadata_profiles`).
    """

    instructions: str | None = None
    token_budget: int = 1024
    max_reviews: int = 10
    max_items: int = 20
    seed: int = 2023
    select_reviews: int | None = None
    mmr_lambda: float = 0.7
    dry_run: bool = False
    price_in: float | None = None
    price_out: float | None = None
    batch: bool = False
    poll_seconds: float = 30.0
    limit: int | None = None
    source: str = "llm"

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "ProfileOptions":
        return cls(**{f: getattr(args, f) for f in cls.__dataclass_fields__})


def settings_from_args(args: argparse.Namespace) -> LLMSettings:
    return LLMSettings(model=args.model, base_url=args.base_url, api_key=args.api_key, temperature=args.temperature,
                       max_tokens=args.max_tokens, timeout=args.timeout, retries=args.retries,
                       format_retries=args.format_retries, backoff=args.backoff, concurrency=args.concurrency,
                       plain_text_fallback=args.plain_text_fallback, json_mode=args.json_mode)


def dataset_folder(args: argparse.Namespace) -> Path:
    from semrec.common.io import data_root

    return Path(args.data_dir) if getattr(args, "data_dir", None) else data_root() / args.dataset


def generate(kind: str, folder: Path, settings: LLMSettings, options: ProfileOptions, log=print,
             text: DatasetText | None = None) -> int:
    """Run one kind for the dataset in ``folder``; returns the exit code (0 done, 3 some failed).

    ``text``: the dataset's :class:`DatasetText`, when the caller has it already (read once for
    both kinds by ``generate_all.py``).
    """
    from semrec.common.io import load_pickle

    text = text if text is not None else DatasetText(folder)
    if options.source == "metadata":
        profiles = metadata_profiles(kind, text, options.max_items)
        if options.dry_run or options.limit is not None:
            log(f"{kind} profiles from metadata for {folder.name}: {len(profiles)} entities (nothing written)")
            return 0
        pkl, jsonl = write_profiles(folder, kind, profiles)
        log(f"{kind} profiles from metadata: wrote {pkl} and {jsonl} ({len(profiles)} entities, no LLM)")
        return 0
    instr = options.instructions or folder.name
    root = None
    if options.instructions and Path(options.instructions).is_dir():
        root, instr = Path(options.instructions).parent, Path(options.instructions).name
    item_profiles = None
    if kind == "user" and (folder / OUTPUTS["item"][0]).exists():
        item_profiles = load_pickle(folder / OUTPUTS["item"][0])
    selector = None
    if kind == "item" and options.select_reviews:
        from semrec.generation.embedding import LocalEncoder
        from semrec.generation.mmr import select_sentences

        encode = LocalEncoder().encode
        selector = lambda reviews: select_sentences(reviews, encode, k=options.select_reviews,  # noqa: E731
                                                    lam=options.mmr_lambda)
    builder = PromptBuilder(text, kind, load_templates(kind, instr, root), token_budget=options.token_budget,
                            max_reviews=options.max_reviews, max_items=options.max_items, seed=options.seed,
                            item_profiles=item_profiles, review_selector=selector)
    with ReplyCache(folder / "llm_cache" / f"{kind}.jsonl") as cache:
        job = Job(kind, folder, settings, builder, cache, options.limit)
        pending = job.pending()
        est = estimate(job, pending, options.price_in, options.price_out)
        cost = (f", cost at most ${est['cost_usd_max']:.2f} (${est['cost_usd_max_with_format_retries']:.2f} if "
                f"every reply needed all {settings.format_retries} format retries)") if "cost_usd_max" in est else \
            " (cost: unknown model, pass --price-in/--price-out)"
        shared = f" ({est['shared']} share a prompt with another entity and are asked once)" if est["shared"] else ""
        log(f"{kind} profiles for {folder.name}: {len(job.requests)} entities{shared}, {est['cached']} cached, "
            f"{est['requests']} to request, ~{est['prompt_tokens']:,} prompt tokens, "
            f"<= {est['completion_tokens_max']:,} completion tokens{cost}; model {settings.model}")
        if options.dry_run:
            return 0
        from semrec.common.io import write_json

        # the resolved settings of this run, next to its replies (never the key)
        write_json(cache.path.with_name(f"{kind}_run.json"),
                   {"settings": settings.public(), "instructions": str(root / instr) if root else instr,
                    "prompt": {k: getattr(options, k) for k in ("token_budget", "max_reviews", "max_items", "seed",
                                                            "select_reviews", "mmr_lambda", "limit", "batch")},
                    "entities": len(job.requests), "pending": len(pending), "started": time.strftime("%Y-%m-%d %H:%M:%S")})
        t0 = time.perf_counter()
        if pending:
            if options.batch:
                counts = asyncio.run(run_batch(job, pending, options.poll_seconds, log))
            else:
                from tqdm import tqdm

                with tqdm(total=len(pending), desc=f"{kind} profiles", disable=not sys.stderr.isatty()) as bar:
                    counts = asyncio.run(run_online(job, pending, bar))
            dt = time.perf_counter() - t0
            log(f"{kind}: {counts['ok']} ok, {counts['failed']} failed in {dt:.1f} s "
                f"({len(pending) / max(dt, 1e-9):.1f} requests/s)")
        profiles, missing = collect(job)
    if missing:
        show = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        log(f"{kind}: {len(missing)} entities have no profile yet ({show}); their last errors are in "
            f"{cache.path}. Run the same command again to retry only those.")
        return 3
    if options.limit is not None:
        log(f"{kind}: trial of {options.limit} entities done; outputs are written by a run without --limit")
        return 0
    pkl, jsonl = write_outputs(job, profiles)
    n_text = sum(1 for _, key, _ in job.requests if (job.cache.get(key) or {}).get("format") == "text")
    log(f"wrote {pkl} and {jsonl}" + (f" ({n_text} plain-text fallbacks)" if n_text else ""))
    return 0


def main(kind: str, argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=f"generation/{kind}/generate_profile.py",
                                description=f"Generate a text profile for every {kind} of a dataset with an LLM.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help="a folder name under $SEMREC_HOME/data (or ./data)")
    src.add_argument("--data-dir", help="a dataset folder")
    add_llm_arguments(p)
    args = p.parse_args(argv)
    try:
        return generate(kind, dataset_folder(args), settings_from_args(args), ProfileOptions.from_args(args))
    except LLMError as e:
        print(f"generate_profile.py: {redact(str(e), args.api_key or os.environ.get('OPENAI_API_KEY'))}. Every "
              "reply that arrived is kept in the cache; the same command continues from there", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as e:
        print(f"generate_profile.py: {e}", file=sys.stderr)
        return 2
