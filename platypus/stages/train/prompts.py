"""The training rows: the curated JSONL read and checked, then turned into TRL's prompt/completion format."""

from __future__ import annotations

import json
from pathlib import Path

from platypus.runtime.errors import PlatypusError

TEMPLATES = Path(__file__).resolve().parent / "templates"


def load_template(name: str) -> dict[str, str]:
    path = TEMPLATES / f"{name}.json"
    if not path.is_file():
        names = sorted(p.stem for p in TEMPLATES.glob("*.json")) + ["chat"]
        raise PlatypusError(f"train.template={name!r} is not a known template; use one of {names}.")
    return json.loads(path.read_text())


def to_prompt_completion(rows: list[dict], template: str) -> list[dict]:
    """Rows -> TRL's prompt/completion format (TRL masks the prompt from the loss)."""
    if template == "chat":
        return [
            {
                "prompt": [{"role": "user", "content": "\n\n".join(x for x in (r["instruction"], r["input"]) if x)}],
                "completion": [{"role": "assistant", "content": r["output"]}],
            }
            for r in rows
        ]
    spec = load_template(template)
    out = []
    for r in rows:
        prompt = spec["prompt_input" if r["input"] else "prompt_no_input"].format(**r)
        out.append({"prompt": prompt, "completion": r["output"]})
    return out


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise PlatypusError(f"{path}:{number}: not valid JSON ({error.msg}).") from error
            missing = [k for k in ("instruction", "output") if not isinstance(row.get(k), str)]
            if missing:
                raise PlatypusError(f"{path}:{number}: row lacks string field(s) {missing}.")
            row.setdefault("input", "")
            rows.append(row)
    if not rows:
        raise PlatypusError(f"{path} holds no training rows.")
    return rows
