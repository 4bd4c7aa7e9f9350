"""Every message docs/troubleshooting.md lists can still be produced: its text is in the package's source.

The messages are the code spans in the first column of the page's tables. In a message, ``<angle brackets>`` and
``…`` stand for varying parts. The source side is every string literal and f-string of ``keptn_gitops_service/``
(docstrings left out); an f-string's replacement fields stand for varying parts too.

A message counts as present when the source's literal text covers its words: every run of literal text of a string
(or of consecutive parts of an f-string, with anything of up to 40 characters in between) found in the message
covers the words it spans. A word may be uncovered when the doc shows a concrete value where the code has a
variable (``git clone failed`` for ``git {command} failed``; items of a list the code joins), but two uncovered words
in a row, with only spaces between them, mean the text is not in the code any more: the entry is stale and this test
fails.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "troubleshooting.md"
PACKAGE = ROOT / "keptn_gitops_service"
VARYING = "\x01"
_FENCE = re.compile(r"^ {0,3}(```+|~~~+).*?^ {0,3}\1[ \t]*$", re.M | re.S)
# A word; `Ready=True` and `data.project` are one word each (a condition, a key path the code formats).
_WORD = re.compile(r"[A-Za-z]+(?:[=.][A-Za-z]+)*")
_EDGE = " '\":,;.()"
_MAX_VARYING = 40


def listed_messages() -> list[str]:
    text = _FENCE.sub("", PAGE.read_text(encoding="utf-8"))
    messages = []
    for line in text.splitlines():
        if not line.startswith("|") or re.match(r"^\|[-| :]+\|$", line):
            continue
        cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
        if cells and cells[0].strip() in {"Message"}:
            continue  # a header
        messages += [code.replace("\\|", "|") for code in re.findall(r"`([^`]+)`", cells[0] if cells else "")]
    return messages


def _literal_parts(node: ast.AST) -> list[str | None]:
    """A string's text, or an f-string's parts with ``None`` for each replacement field."""
    if isinstance(node, ast.Constant):
        return [str(node.value)]
    assert isinstance(node, ast.JoinedStr)
    return [str(v.value) if isinstance(v, ast.Constant) else None for v in node.values]


def _strings(tree: ast.AST) -> list[list[str | None]]:
    docstrings: set[int] = set()
    nested: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body:
            first = body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
        if isinstance(node, ast.JoinedStr):
            nested.update(id(v) for v in node.values)
    return [
        _literal_parts(node)
        for node in ast.walk(tree)
        if id(node) not in docstrings
        and id(node) not in nested
        and (isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, str)))
    ]


@cache
def source_patterns() -> tuple[tuple[str, re.Pattern[str], frozenset[int]], ...]:
    """``(longest literal, pattern, groups that are replacement fields)`` for every run of parts of every string.

    A run's first and last parts are literal text (trimmed of quotes and punctuation at its ends); a replacement field
    next to the run's ends may add one word.
    """
    patterns = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for parts in _strings(ast.parse(path.read_text(encoding="utf-8"))):
            parts = [p for p in parts if p != ""]
            for i, first in enumerate(parts):
                if first is None:
                    continue
                for j in range(i, len(parts)):
                    if parts[j] is None:
                        continue
                    run = list(parts[i : j + 1])
                    run[0] = str(run[0]).lstrip(_EDGE)
                    run[-1] = str(run[-1]).rstrip(_EDGE)
                    literal = "".join(p for p in run if p)
                    if not run[0] or not run[-1] or len(re.findall("[A-Za-z]", literal)) < 4:
                        continue
                    lead = r"(\w*)" if i > 0 and parts[i - 1] is None else "()"
                    trail = r"(\w*)" if j + 1 < len(parts) and parts[j + 1] is None else "()"
                    body = "".join(f"({re.escape(p)})" if p is not None else "(.*?)" for p in run)
                    fields = frozenset(k + 2 for k, p in enumerate(run) if p is None)
                    longest = max((p for p in run if p), key=len)
                    patterns.append((longest, re.compile(lead + body + trail, re.S), fields))
    return tuple(patterns)


def uncovered_runs(message: str) -> list[list[str]]:
    """The runs of consecutive words of ``message`` that no string of the source covers (the best reading: with
    ``<…>`` as varying parts, or as literal text, which some messages have)."""
    readings = [re.sub(r"<[^<>]*>|…", VARYING, message), message]
    return min((_uncovered(text) for text in readings), key=lambda runs: max((len(r) for r in runs), default=0))


def _uncovered(text: str) -> list[list[str]]:
    covered = [False] * len(text)
    for longest, pattern, fields in source_patterns():
        if longest not in text:
            continue
        for found in pattern.finditer(text):
            for group in range(1, pattern.groups + 1):
                start, end = found.span(group)
                if group in fields and end - start > _MAX_VARYING:
                    continue
                covered[start:end] = [True] * (end - start)
    runs: list[list[str]] = []
    current: list[str] = []
    end = 0
    for word in _WORD.finditer(text):
        if any(covered[word.start() : word.end()]) or text[end : word.start()].strip():
            # a covered word, or punctuation between (items of a list the code joins), ends a run
            if current:
                runs.append(current)
            current = []
        if not any(covered[word.start() : word.end()]):
            current.append(word.group(0))
        end = word.end()
    if current:
        runs.append(current)
    return runs


def _stale(message: str) -> list[str] | None:
    """The first run of two or more uncovered words, or ``None`` when the message is in the source."""
    return next((run for run in uncovered_runs(message) if len(run) >= 2), None)


MESSAGES = listed_messages()


def test_the_page_lists_many_messages() -> None:
    assert len(MESSAGES) >= 150, len(MESSAGES)
    assert "needs exactly one of: argocd, flux, clusters, none" in MESSAGES


@pytest.mark.parametrize("message", MESSAGES)
def test_a_listed_message_is_still_in_the_code(message: str) -> None:
    stale = _stale(message)
    assert stale is None, (
        f"docs/troubleshooting.md lists {message!r}, but no string of keptn_gitops_service/ has "
        f"{' '.join(stale)!r} there: the code no longer gives this message (update or remove the entry)"
    )


@pytest.mark.parametrize(
    "message",
    [
        "needs exactly one of: flux, none",  # the wait gained argocd
        "must be Kustomization in this version",  # HelmRelease waits came
        "this wait is planned for a later version",
        "<file>: the text has no HelmRelease called '<name>' in any document",
    ],
)
def test_a_message_the_code_does_not_give_is_found_stale(message: str) -> None:
    assert _stale(message) is not None


@pytest.mark.parametrize(
    "message",
    [
        "git clone failed: <git output>",  # git {command} failed
        "Flux applied commit <sha12>: Kustomization <namespace>/<name>: Ready=True (<reason>: <message>)",
        "must have the form '<namespace>:<name>'",  # angle brackets that are literal text in the code
    ],
)
def test_a_message_with_values_filled_in_is_found(message: str) -> None:
    assert _stale(message) is None
