"""`mailer templates check` covers the preference page: it renders for every visitor, and every form stays safe."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mailer.compose.checker import check_templates
from mailer.service.project import SHIPPED_TEMPLATES


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    target = tmp_path / "email"
    shutil.copytree(SHIPPED_TEMPLATES, target)
    return target


def edit(folder: Path, old: str, new: str, count: int = -1) -> None:
    page = folder / "_preferences.html"
    text = page.read_text(encoding="utf-8")
    assert old in text
    page.write_text(text.replace(old, new, count), encoding="utf-8")


def messages(folder: Path) -> list[str]:
    found = check_templates(folder)
    return [f"{p.path.name}:{p.line}: {p.message}" for p in found if p.path.name == "_preferences.html"]


def test_the_shipped_page_passes() -> None:
    assert [p for p in check_templates(SHIPPED_TEMPLATES) if p.path.name == "_preferences.html"] == []


def test_a_misspelt_variable_is_named_with_its_line(folder: Path) -> None:
    edit(folder, "{{ postal_address }}", "{{ postal_adress }}")
    found = messages(folder)
    assert found and all(m.startswith("_preferences.html:") and "'postal_adress' is undefined" in m for m in found)
    assert not any(m.startswith("_preferences.html:1:") for m in found), "the line of the mistake, not line 1"


def test_a_form_without_the_csrf_field_is_caught(folder: Path) -> None:
    edit(folder, '<input type="hidden" name="csrf" value="{{ csrf }}">\n<fieldset>', "<fieldset>")
    assert any("a form without <input type=\"hidden\" name=\"csrf\"" in m for m in messages(folder))


def test_a_form_that_gets_is_caught(folder: Path) -> None:
    edit(folder, '<form method="post" action="{{ action }}">\n<input type="hidden" name="csrf" value="{{ csrf }}">\n'
         '<button type="submit" name="do" value="unsubscribe"',
         '<form method="get" action="{{ action }}">\n<input type="hidden" name="csrf" value="{{ csrf }}">\n'
         '<button type="submit" name="do" value="unsubscribe"')
    assert any('method="post"' in m for m in messages(folder))


def test_a_script_or_a_missing_postal_address_is_caught(folder: Path) -> None:
    edit(folder, "</main>", "<script>track()</script></main>")
    edit(folder, "· {{ postal_address }}", "")
    found = messages(folder)
    assert any("<script>" in m for m in found)
    assert any("no postal address" in m for m in found)


def test_the_sandbox_holds_on_the_page_too(folder: Path) -> None:
    edit(folder, "{{ company }} · ", "{{ company.__class__ }} · ")
    assert any("__class__" in m or "unsafe" in m.lower() or "refused" in m.lower() for m in messages(folder))
