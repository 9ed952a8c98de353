"""The README and docs/ say what the code does: links resolve, tables match the code.

The error-code, exit-status, attribute and limit tables are written by hand and read back here
against the constants they document, so a new code or a changed default fails this file until
the page says so. No emulator: this reads files and imports the contract only.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re
from pathlib import Path

import pytest

from fileops_daemon.contract import attributes, exitcodes
from fileops_daemon.contract.errors import DESCRIPTIONS, ErrorCode
from fileops_daemon.contract.limits import Limits
from fileops_daemon.contract.plan import parse_plan

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = REPO / "docs"
PACKAGE = REPO / "fileops_daemon"
#: A landing page, not a manual: what it is, how to start, where to read on.
README_MAX_BYTES = 12 * 1024

PAGES = [README, *sorted(DOCS.glob("*.md"))]

_FENCE = re.compile(r"^```.*?^```[ \t]*$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*$", re.MULTILINE)


def prose(text: str) -> str:
    """The text outside fenced code blocks (a shell comment is not a heading)."""
    return _FENCE.sub("", text)


def fenced(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(heading) for heading in _HEADING.findall(prose(page.read_text()))}


def relative_links(page: Path) -> list[str]:
    text = _CODE_SPAN.sub("", prose(page.read_text()))
    return [target for target in _LINK.findall(text) if not re.match(r"[a-z]+:", target)]


def table_after(page: Path, heading: str) -> list[list[str]]:
    """The body rows of the first table under ``heading`` (a whole heading line)."""
    lines = page.read_text().splitlines()
    start = lines.index(heading)
    rows: list[list[str]] = []
    for line in lines[start + 1 :]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            break
    header, rule, *body = rows
    assert set("".join(rule)) <= {"-", " ", ":"}, f"{page.name}: {header} is not a table"
    return body


def unquoted(cell: str) -> str:
    return cell.removeprefix("`").removesuffix("`")


def exit_constants() -> dict[str, int]:
    return {
        name: value
        for name, value in vars(exitcodes).items()
        if name.startswith("EXIT_") and isinstance(value, int)
    }


def names_used(names: set[str], sources: list[Path]) -> set[str]:
    """The exit codes ``sources`` name, plus those a result status maps to (EXIT_BY_STATUS is
    how the commands that print a result choose their exit code)."""
    text = "\n".join(source.read_text() for source in sources)
    named = {name for name in names if re.search(rf"\b{name}\b", text)}
    by_status = set(exitcodes.EXIT_BY_STATUS.values())
    if re.search(r"\bEXIT_BY_STATUS\b", text):
        named |= {name for name in names if getattr(exitcodes, name) in by_status}
    return named


def package_sources() -> list[Path]:
    """Every module that may use an exit code, not the table that defines them."""
    return [
        path
        for path in PACKAGE.rglob("*.py")
        if path != PACKAGE / "contract" / "exitcodes.py" and path.name != "__init__.py"
    ]


class TestLandingPage:
    def test_the_readme_stays_under_12_kb(self) -> None:
        size = len(README.read_bytes())
        assert size < README_MAX_BYTES, f"README.md is {size} bytes; move detail to docs/"

    def test_the_readme_links_every_docs_page(self) -> None:
        linked = {target.partition("#")[0] for target in relative_links(README)}
        unlinked = [page.name for page in DOCS.glob("*.md") if f"docs/{page.name}" not in linked]
        assert not unlinked

    def test_the_readme_plan_is_the_seed_example(self) -> None:
        (example,) = fenced(README.read_text(), "json")
        seed = json.loads((REPO / "examples" / "seed-plan.json").read_text())
        assert json.loads(example) == seed


class TestLinks:
    @pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
    def test_every_relative_link_points_to_an_existing_file(self, page: Path) -> None:
        broken = []
        for target in relative_links(page):
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            if not resolved.exists():
                broken.append(f"{target}: no such file")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                broken.append(f"{target}: no heading #{anchor} in {resolved.name}")
        assert not broken, f"{page.name}: {broken}"

    def test_links_stay_inside_the_repository(self) -> None:
        outside = [
            (page.name, target)
            for page in PAGES
            for target in relative_links(page)
            if not (page.parent / target.partition("#")[0]).resolve().is_relative_to(REPO)
        ]
        assert not outside


class TestContractPage:
    PAGE = DOCS / "contract.md"

    def test_the_error_code_table_is_the_code_list_with_its_descriptions(self) -> None:
        documented = [
            (unquoted(code), meaning)
            for code, meaning, *_ in table_after(self.PAGE, "## Error codes")
        ]
        expected = [(code.value, DESCRIPTIONS[code]) for code in ErrorCode]
        assert documented == expected, "expected rows:\n" + "\n".join(
            f"| `{code}` | {meaning} |" for code, meaning in expected
        )

    def test_the_attribute_table_names_every_message_attribute(self) -> None:
        documented = {unquoted(row[0]) for row in table_after(self.PAGE, "## Pub/Sub messages")}
        names = {
            value
            for name, value in vars(attributes).items()
            if name.isupper() and isinstance(value, str)
        }
        assert documented == names

    def test_the_limits_table_gives_the_code_defaults(self) -> None:
        units = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
        documented = {}
        for variable, default, _ in table_after(self.PAGE, "## Limits"):
            number, _, unit = default.replace(",", "").partition(" ")
            documented[unquoted(variable)] = int(number) * units.get(unit, 1)
        expected = {
            f"FILEOPS_{field.name.upper()}": field.default for field in dataclasses.fields(Limits)
        }
        assert documented == expected


class TestExitStatusTables:
    def test_the_cli_table_lists_every_exit_code_the_code_returns(self) -> None:
        """Codes defined but returned nowhere yet (6-8 for infrastructure faults, when this was
        written) stay out of the page until a command returns them."""
        constants = exit_constants()
        used = names_used(set(constants), package_sources())
        documented = {
            unquoted(name): int(status)
            for status, name, _ in table_after(DOCS / "cli.md", "## Exit status")
        }
        assert documented == {name: constants[name] for name in used}

    def test_the_daemon_table_lists_what_the_daemon_returns(self) -> None:
        constants = exit_constants()
        used = names_used(set(constants), [PACKAGE / "service" / "daemon.py"])
        documented = {
            int(status) for status, _ in table_after(DOCS / "daemon.md", "## Exit status")
        }
        assert documented == {constants[name] for name in used}


class TestExamples:
    @pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
    def test_every_documented_plan_is_a_valid_plan(self, page: Path) -> None:
        plans = [json.loads(block) for block in fenced(page.read_text(), "json")]
        for plan in plans:
            if "operations" in plan:
                parse_plan(plan)

    @pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
    def test_python_examples_parse_and_import_what_exists(self, page: Path) -> None:
        for block in fenced(page.read_text(), "python"):
            for node in ast.walk(ast.parse(block)):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "fileops_daemon"
                ):
                    module = __import__(node.module or "", fromlist=["_"])
                    missing = [a.name for a in node.names if not hasattr(module, a.name)]
                    assert not missing, f"{page.name}: {node.module} has no {missing}"


def test_every_setting_the_package_reads_is_documented() -> None:
    text = "\n".join(source.read_text() for source in PACKAGE.rglob("*.py"))
    read = set(re.findall(r"\bFILEOPS_[A-Z0-9_]*[A-Z0-9]\b", text))
    read |= {f"FILEOPS_{field.name.upper()}" for field in dataclasses.fields(Limits)}
    docs = "\n".join(page.read_text() for page in DOCS.glob("*.md"))
    undocumented = sorted(name for name in read if f"`{name}`" not in docs)
    assert not undocumented
