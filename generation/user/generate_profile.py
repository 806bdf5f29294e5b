"""Generate a text profile for every user of a dataset with an LLM (any OpenAI-compatible endpoint).

    python generation/user/generate_profile.py --dataset ml100k --dry-run
    OPENAI_API_KEY=... python generation/user/generate_profile.py --dataset ml100k --model gpt-4o-mini
    python generation/user/generate_profile.py --dataset ml100k --base-url http://127.0.0.1:8000/v1 --api-key local

Writes `usr_prf.pkl` and `usr_prf.jsonl` in the dataset folder; replies are cached as they
arrive, so a killed run resumes where it stopped. See docs/generation.md and
``python generation/user/generate_profile.py --help``.
"""
from semrec.generation.profiles import main

if __name__ == "__main__":
    raise SystemExit(main("user"))
