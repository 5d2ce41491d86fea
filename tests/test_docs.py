"""The repository's documentation stands alone: it names its own reference, and nothing outside it."""

from __future__ import annotations

import re
from pathlib import Path

import orjson

from app.api.openapi import build_spec, postman_collection

ROOT = Path(__file__).resolve().parents[1]


def test_docs_link_nothing_outside_the_repository_and_point_to_the_reference():
    texts = {path.relative_to(ROOT).as_posix(): path.read_text() for path in
             [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "docs" / "postman_collection.json"]}
    texts["/openapi.json"] = orjson.dumps(build_spec()).decode()
    for name, text in texts.items():
        assert not re.search(r"\.\./shared|CONTRACT\.md", text), f"{name} refers to a file outside the repository"
    assert "docs/API.md" in texts["/openapi.json"] and "docs/API.md" in texts["docs/postman_collection.json"]
    # every relative link in the README and docs/ leads to a file of the repository
    for name, text in texts.items():
        if not name.endswith(".md"):
            continue
        base = (ROOT / name).parent
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if not re.match(r"[a-z]+:", target):
                assert (base / target).exists(), f"{name} links to {target}, which does not exist"
        # in-page anchors, as GitHub makes them from headings
        anchors = {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
                   for heading in re.findall(r"^#+ (.+)$", text, re.M)}
        for anchor in re.findall(r"\]\(#([^)]+)\)", text):
            assert anchor in anchors, f"{name} links to #{anchor}, which no heading makes"


def test_postman_collection_is_generated_from_the_current_spec():
    committed = orjson.loads((ROOT / "docs" / "postman_collection.json").read_bytes())
    assert committed == postman_collection(build_spec()), (
        "regenerate: python -m app.api.openapi --postman > docs/postman_collection.json")
