"""A griffe extension for the docs site (mkdocs.yml): doctest lines (``>>> …`` and their output)
outside a numpy ``Examples`` section are fenced as ``pycon`` code, so that Markdown renders them
as code — not as text in which ``df.attrs["summary"]["status"]`` reads as a reference link."""

from __future__ import annotations

import re

import griffe

_NUMPY_EXAMPLES = re.compile(r"^\s*Examples?\s*$")
_DASHES = re.compile(r"^\s*-{3,}\s*$")


def fence_doctests(text: str) -> str:
    lines = text.split("\n")
    out: list[str] = []
    i, in_examples, in_fence = 0, False, False
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if _DASHES.match(nxt) and line.strip():
            in_examples = bool(_NUMPY_EXAMPLES.match(line))  # a numpy section starts here
        if in_fence or in_examples or not line.lstrip().startswith(">>>"):
            out.append(line)
            i += 1
            continue
        indent = line[: len(line) - len(line.lstrip())]
        out.append(f"{indent}```pycon")
        while i < len(lines) and lines[i].strip():  # the prompt lines and their output
            out.append(lines[i])
            i += 1
        out.append(f"{indent}```")
    return "\n".join(out)


class DoctestFences(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = fence_doctests(obj.docstring.value)
