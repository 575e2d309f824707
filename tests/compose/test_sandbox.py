"""Templates are edited by people who are not developers: whatever reaches past the variables is refused.

Refusals that can be decided from the template's text happen when it is
compiled, so nothing in it runs (a probe in the same template is never
called); the rest are refused at run time before the work is done.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mailer.compose.render import MAX_STEPS, Renderer, RenderError


class Probe:
    """A callable the template can reach: records each call, so a test can prove nothing ran."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, *args: object) -> str:
        self.calls += 1
        return ""


def render(tmp_path: Path, source: str, **context: object) -> str:
    (tmp_path / "t.txt").write_text(source, encoding="utf-8")
    return Renderer(tmp_path).render_file("t.txt", context)


REFUSED_BEFORE_RUNNING = {
    "class": ("{{ probe() }}{{ ''.__class__ }}", "'.__class__' is not allowed"),
    "subclasses": ("{{ probe() }}{{ ().__class__.__base__.__subclasses__() }}", "'.__subclasses__' is not allowed"),
    "globals": ("{{ probe() }}{{ probe.__call__.__globals__ }}", "'.__globals__' is not allowed"),
    "subscript": ("{{ probe() }}{{ probe['__class__'] }}", "'['__class__']' is not allowed"),
    "builtins": ("{{ probe() }}{{ __builtins__ }}", "'__builtins__' is not allowed"),
    "recursive macro": ("{% macro m() %}{{ probe() }}{{ m() }}{% endmacro %}{{ m() }}", "macro 'm' calls itself"),
    "mutual recursion": (
        "{% macro a() %}{{ probe() }}{{ b() }}{% endmacro %}{% macro b() %}{{ a() }}{% endmacro %}{{ a() }}",
        "macro 'a' calls itself",
    ),
    "recursive loop": (
        "{% for x in [1] recursive %}{{ probe() }}{{ loop([1]) }}{% endfor %}",
        "recursive loops are not allowed",
    ),
    "absolute include": ('{{ probe() }}{% include "/etc/passwd" %}', "'/etc/passwd' is outside the templates folder"),
    "climbing include": ('{{ probe() }}{% include "../../../etc/passwd" %}', "is outside the templates folder"),
    "climbing extends": ('{% extends "../x.html" %}{{ probe() }}', "is outside the templates folder"),
    "climbing import": ('{% import "_x/../../x.txt" as x %}{{ probe() }}', "is outside the templates folder"),
    "dynamic include": ("{{ probe() }}{% include where %}", "name a fixed file in quotes"),
}


@pytest.mark.parametrize("case", sorted(REFUSED_BEFORE_RUNNING))
def test_unsafe_templates_are_refused_at_compile_time_and_nothing_in_them_runs(tmp_path: Path, case: str) -> None:
    source, message = REFUSED_BEFORE_RUNNING[case]
    probe = Probe()
    with pytest.raises(RenderError) as caught:
        render(tmp_path, source, probe=probe, where="/etc/passwd")
    assert str(caught.value).startswith(f"{tmp_path / 't.txt'}:1: ")
    assert message in str(caught.value)
    assert probe.calls == 0


REFUSED_AT_RUN_TIME = {
    "huge range": ("{% for i in range(10**9) %}{{ probe() }}{% endfor %}", "the number 1000000000 is too large"),
    "big range": ("{% for i in range(50000) %}{{ probe() }}{% endfor %}", "range of 50000 items refused"),
    "huge power": ("{{ 10 ** 100000 }}", "power with exponent 100000 refused"),
    "huge string": ("{{ 'x' * 1000000000 }}", "repeating 1 items 1000000000 times refused"),
    "padding bomb": ("{{ 'a' | center(1000000000) }}", "too large for a template"),
    "method bomb": ("{{ 'a'.ljust(1000000000) }}", "too large for a template"),
    "format bomb": ("{{ '{:>999999999}'.format(1) }}", "a format field a million characters wide"),
    "macro passed to itself": (
        "{% macro m(f) %}{{ probe() }}{{ f(f) }}{% endmacro %}{{ m(m) }}",
        "calls nested more than",
    ),
    "mutating a list": ("{% set xs = [] %}{{ xs.append(1) }}", "unsafe"),
}


@pytest.mark.parametrize("case", sorted(REFUSED_AT_RUN_TIME))
def test_runaway_work_is_refused_before_it_is_done(tmp_path: Path, case: str) -> None:
    source, message = REFUSED_AT_RUN_TIME[case]
    probe = Probe()
    started = time.monotonic()
    with pytest.raises(RenderError) as caught:
        render(tmp_path, source, probe=probe)
    assert str(caught.value).startswith(f"{tmp_path / 't.txt'}:1: ")
    assert message in str(caught.value)
    assert probe.calls <= 50
    assert time.monotonic() - started < 30  # a guard only: refusals take milliseconds


def test_nested_loops_that_would_run_for_hours_stop_at_the_step_budget(tmp_path: Path) -> None:
    probe = Probe()
    source = "{% for a in range(10000) %}{% for b in range(10000) %}{{ probe() }}{% endfor %}{% endfor %}"
    with pytest.raises(RenderError, match="loop steps and calls: a loop or macro runs without end"):
        render(tmp_path, source, probe=probe)
    assert probe.calls < MAX_STEPS


def test_a_symlink_out_of_the_templates_folder_is_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("the secret")
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "_part.txt").symlink_to(secret)
    (folder / "t.txt").write_text('{% include "_part.txt" %}')
    with pytest.raises(RenderError) as caught:
        Renderer(folder).render_file("t.txt", {})
    assert "the secret" not in str(caught.value)
    assert "_part.txt" in str(caught.value)


def test_ordinary_template_code_still_works_in_the_sandbox(tmp_path: Path) -> None:
    source = (
        "{% macro hello(n) %}hi {{ n }}{% endmacro %}{{ hello('Zoë') }}; "
        "{% for i in range(3) %}{{ loop.index }}{% endfor %}; {{ 'ab' * 2 }}; {{ 2 ** 10 }}; "
        "{{ names | join(', ') }}; {{ '%05.1f' | format(3.14159) }}; {{ '{} and {}'.format('a', 'b') }}"
    )
    assert render(tmp_path, source, names=["王芳", "Ólafur"]) == "hi Zoë; 123; abab; 1024; 王芳, Ólafur; 003.1; a and b"
