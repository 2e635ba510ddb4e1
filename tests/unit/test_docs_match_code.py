"""The documentation lists what the code defines, all of it and nothing else.

The lists come from the code: inbound types from `INBOUND_TYPES`, outbound types from the builders in
engine/protocol/outbound.py, error codes from `ERROR_CODES`, close codes from `CloseCode`, settings
from `Settings.model_fields`, the engine's parts from its folders and the import-linter layers. When
one of these tests fails after a change, document the new thing (or remove the stale line): the
failure names it.
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api.settings import Settings
from engine.log.schema import metadata
from engine.protocol import INBOUND_TYPES, RESERVED_TYPES
from engine.protocol import outbound as outbound_module
from engine.protocol.close_codes import CloseCode
from engine.protocol.error_codes import ERROR_CODES

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = ROOT / "docs" / "protocol.md"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
README = ROOT / "README.md"
SECURITY = ROOT / "SECURITY.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]


def section(path: Path, heading: str) -> str:
    """The text under `## heading` (or any level), up to the next heading of the same or a higher level."""
    text = path.read_text()
    found = re.search(rf"^(#+) {re.escape(heading)}\n", text, re.M)
    assert found, f"{path.name} has no heading {heading!r}"
    level = len(found.group(1))
    end = re.compile(rf"^#{{1,{level}}} ", re.M).search(text, found.end())
    return text[found.end() : end.start() if end else len(text)]


def first_table(text: str) -> list[list[str]]:
    """The cells of the first Markdown table in `text`, header and separator rows left out."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(_cells(line))
    return rows


def _cells(line: str) -> list[str]:
    """Split a table row on `|`, except inside backticks (`{a | b}` stays one cell)."""
    cells, current, quoted = [], "", False
    for char in line.strip().strip("|"):
        if char == "`":
            quoted = not quoted
        if char == "|" and not quoted:
            cells.append(current.strip())
            current = ""
        else:
            current += char
    return [*cells, current.strip()]


def quoted(cell: str) -> set[str]:
    return set(re.findall(r"`([^`]+)`", cell))


def _differences(documented: set[Any], defined: set[Any]) -> str:
    return (
        f"defined but not documented: {sorted(defined - documented)}; "
        f"documented but not defined: {sorted(documented - defined)}"
    )


# Messages, errors, close codes: docs/protocol.md


def outbound_types() -> set[str]:
    """Every `type` a builder in engine/protocol/outbound.py can produce: the constant of a `"type"`
    key, or the constant passed to a helper that puts its first parameter there (`_typing`)."""
    tree = ast.parse(Path(outbound_module.__file__).read_text())
    found: set[str] = set()
    helpers: set[str] = set()
    for function in (node for node in tree.body if isinstance(node, ast.FunctionDef)):
        first = function.args.args[0].arg if function.args.args else None
        for node in ast.walk(function):
            if not isinstance(node, ast.Dict):
                continue
            for key, value in zip(node.keys, node.values, strict=True):
                if not (isinstance(key, ast.Constant) and key.value == "type"):
                    continue
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    found.add(value.value)
                elif isinstance(value, ast.Name) and value.id == first:
                    helpers.add(function.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in helpers:
            argument = node.args[0] if node.args else None
            if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                found.add(argument.value)
    return found


def test_docs_list_every_inbound_message_type() -> None:
    table = first_table(section(PROTOCOL, "Client -> server"))
    documented = set().union(*(quoted(row[0]) for row in table))
    assert documented == set(INBOUND_TYPES), _differences(documented, set(INBOUND_TYPES))


def test_docs_list_every_outbound_message_type() -> None:
    table = first_table(section(PROTOCOL, "Server -> client"))
    documented = set().union(*(quoted(row[0]) for row in table))
    defined = outbound_types()
    assert documented == defined, _differences(documented, defined)


def test_no_admin_broadcast_can_take_a_protocol_message_type() -> None:
    """docs/protocol.md promises a broadcast never passes for a server message: every type a builder
    makes must be in RESERVED_TYPES, which broadcasts may not use."""
    assert outbound_types() <= RESERVED_TYPES, sorted(outbound_types() - RESERVED_TYPES)


def test_docs_list_every_error_code_with_its_http_status() -> None:
    table = first_table(section(PROTOCOL, "Errors"))
    documented = {row[0].strip("`"): row[-1] for row in table}
    assert set(documented) == set(ERROR_CODES), _differences(set(documented), set(ERROR_CODES))
    for code, status in documented.items():
        assert status == str(ERROR_CODES[code].http_status), (code, status)


def test_docs_list_every_close_code() -> None:
    table = first_table(section(PROTOCOL, "Close codes"))
    documented = {int(row[0]) for row in table}
    defined = {int(code) for code in CloseCode}
    assert documented == defined, _differences(documented, defined)


# Settings: the README's table


def _documented_default(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(value) if value else "empty"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def test_readme_lists_every_setting_with_its_default() -> None:
    table = first_table(section(README, "Settings"))
    documented = {row[0].strip("`"): row[1].strip("`") for row in table}
    defined = {name.upper(): field for name, field in Settings.model_fields.items()}
    assert set(documented) == set(defined), _differences(set(documented), set(defined))
    for name, field in defined.items():
        assert documented[name] == _documented_default(field.default), name


# uvicorn's own variable, which it reads for `collab serve` too.
NOT_OURS = frozenset({"FORWARDED_ALLOW_IPS"})


def _names_in_code() -> set[str]:
    """Module-level UPPER_CASE constants of the Python sources, the environment variables they read,
    and the Makefile's variables."""
    names: set[str] = set()
    for folder in ("api", "engine", "tests", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            names.update(re.findall(r"^([A-Z][A-Z0-9_]+)\s*(?::[^=\n]+)?=", text, re.M))
            names.update(re.findall(r"environ(?:\.get\(|\[)\s*\"([A-Z][A-Z0-9_]+)\"", text))
    names.update(re.findall(r"^([A-Z][A-Z0-9_]+)\s*\??=", (ROOT / "Makefile").read_text(), re.M))
    return names


def test_docs_name_no_setting_the_code_does_not_have() -> None:
    """Any `UPPER_CASE_NAME` in backticks is a setting, an error code, or something else the code
    defines or reads (a constant, a test's environment variable, a make variable)."""
    known = {name.upper() for name in Settings.model_fields} | set(ERROR_CODES) | NOT_OURS | _names_in_code()
    for path in [*DOCS, SECURITY]:
        named = set(re.findall(r"`([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)(?:=[^`]*)?`", path.read_text()))
        assert named <= known, f"{path.name} names settings the code does not have: {sorted(named - known)}"


# The engine's parts: docs/architecture.md


def _layers() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    [contract] = [c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"]
    return [name.strip().removeprefix("engine.") for layer in contract["layers"] for name in layer.split("|")]


def _parts(folder: Path) -> set[str]:
    """The modules and subpackages of a package, by name."""
    return {
        path.stem if path.suffix == ".py" else path.name
        for path in folder.iterdir()
        if (path.suffix == ".py" and path.name != "__init__.py") or (path / "__init__.py").exists()
    }


def test_architecture_lists_the_engine_layers_in_import_order() -> None:
    table = first_table(section(ARCHITECTURE, "The engine's layers"))
    documented = [row[0].strip("`").removesuffix("/").removesuffix(".py") for row in table]
    assert documented == _layers()
    assert set(documented) == _parts(ROOT / "engine"), "every part of engine/ is a layer"


def test_architecture_names_every_module_of_each_engine_folder() -> None:
    for row in first_table(section(ARCHITECTURE, "The engine's layers")):
        folder = ROOT / "engine" / row[0].strip("`")
        if not folder.is_dir():
            continue
        named = {name.removesuffix("/") for name in quoted(row[1])}
        missing = _parts(folder) - named
        assert not missing, (
            f"docs/architecture.md does not say what engine/{folder.name}/ {sorted(missing)} hold"
        )


# Every doc: paths that exist, nothing pointing outside the repository, no issue numbers


def _repo_paths(text: str) -> Iterator[str]:
    # Not after a `/` or a word character: `/api/v1/ws` is a URL, not the api/ folder.
    for match in re.finditer(
        r"(?<![\w/.])((?:engine|api|tests|migrations|bench|docs|clients)/[\w./-]*[\w/])", text
    ):
        yield match.group(1)


@pytest.mark.parametrize("path", [*DOCS, SECURITY], ids=lambda p: p.name)
def test_docs_name_only_files_that_exist(path: Path) -> None:
    missing = sorted({name for name in _repo_paths(path.read_text()) if not (ROOT / name).exists()})
    assert not missing, f"{path.name} names files that do not exist: {missing}"


_TEXT = frozenset({".py", ".md", ".mako", ".toml", ".ini", ".js", ".ts", ".html", ".css", ".json", ""})


def _sources() -> Iterator[Path]:
    for folder in ("api", "engine", "migrations", "tests", "bench", "docs", "clients", ".ci"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and path.suffix in _TEXT and "node_modules" not in path.parts:
                yield path
    top = ("README.md", "SECURITY.md", "Makefile", "pyproject.toml", "alembic.ini")
    yield from (ROOT / name for name in top)


# Built from parts so that this file does not match itself.
OUTSIDE = re.compile("|".join(["PROTOCOL" + r"\.md", "DESIGN" + r"\.md", r"\.\./shared", "seed" + " guide"]))
ISSUE_NUMBER = re.compile(r"\bissues?\s*#?\d", re.I)


def test_nothing_points_outside_the_repository_or_at_issue_numbers() -> None:
    """Docs a clone does not have cannot be read, and an issue number says nothing once it is closed."""
    found = []
    for path in _sources():
        if "__pycache__" in path.parts:
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE.search(line) or ISSUE_NUMBER.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)


def test_readme_points_to_the_security_policy() -> None:
    assert "[SECURITY.md](SECURITY.md)" in README.read_text()
    assert "Report a vulnerability" in SECURITY.read_text()


def test_the_citus_plan_distributes_every_table_with_a_partition_and_only_those() -> None:
    """docs/scaling.md's distribution DDL names every table that keeps rows per log partition."""
    plan = section(ROOT / "docs" / "scaling.md", "Onto Citus, on paper")
    ddl = re.search(r"```sql\n(.*?)```", plan, re.S)
    assert ddl, "docs/scaling.md has no distribution DDL"
    on_partition = set(re.findall(r"create_distributed_table\('(\w+)', 'partition'", ddl.group(1)))
    colocated = re.search(r"ARRAY\[(.*?)\]", ddl.group(1), re.S)
    assert colocated, "docs/scaling.md names no co-located tables"
    on_partition |= set(re.findall(r"'(\w+)'", colocated.group(1)))
    with_partition = {table.name for table in metadata.tables.values() if "partition" in table.columns}
    assert on_partition == with_partition
