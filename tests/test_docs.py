"""The docs stay true: every relative link in README.md, docs/ and benchmarks/README.md resolves, and every
documented ``run.py`` command composes (tests/docs_check.py; lines marked ``docs-check: skip`` are left out)."""

from __future__ import annotations

from pathlib import Path

from tests.docs_check import broken_links, compose_errors, documented_commands, markdown_files

REPO = Path(__file__).resolve().parents[1]


def test_relative_links_resolve():
    broken = [problem for path in markdown_files(REPO) for problem in broken_links(path)]
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_documented_commands_compose():
    commands = documented_commands(markdown_files(REPO))
    assert len(commands) > 20, "the docs' run.py commands were not found"
    errors = compose_errors(commands)
    assert not errors, "documented commands that do not compose:\n" + "\n".join(errors)


def test_the_check_catches_a_broken_link_and_a_bad_option(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("# A heading\n")
    page.write_text(
        "[ok](there.md#a-heading) [gone](missing.md) [no heading](there.md#nope) [web](https://example.org)\n"
        "```bash\n"
        "python run.py lora=attention train.max_steps=40   # fine\n"
        "python run.py --multirun lora=platypus,nonexistent_option \\\n"
        "  train.lerning_rate=1e-4\n"
        "python run.py lora=also_missing   # docs-check: skip\n"
        "```\n"
        "Inline: `python run.py model=no_such_model`.\n"
    )
    assert broken_links(page) == [f"{page}:1: missing.md (no such file)",
                                  f"{page}:1: there.md#nope (no such heading in there.md)"]
    commands = documented_commands([page])
    assert [str(where) for where, _ in commands] == [f"{page}:3", f"{page}:4", f"{page}:8"]
    assert commands[1][1] == ["lora=platypus,nonexistent_option", "train.lerning_rate=1e-4"]
    errors = compose_errors(commands)
    assert len(errors) == 2
    assert errors[0].startswith(f"{page}:4: run.py lora=platypus,nonexistent_option") and "lerning_rate" in errors[0]
    assert errors[1].startswith(f"{page}:8: run.py model=no_such_model") and "no_such_model" in errors[1]
