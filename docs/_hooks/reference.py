"""MkDocs hook: the reference tables are generated from the code when the site is built.

A page asks for a table with a marker line; the marker is replaced by Markdown made from the code
itself, so the reference cannot drift from what the program does:

* ``<!-- generated: settings -->``: every field of :class:`fraudstream.config.Settings`, as its
  ``FRAUD_*`` environment variable, type, default, bounds and description;
* ``<!-- generated: api -->``: every operation of the OpenAPI document of
  ``create_app(Settings())``, grouped by tag, with its parameters and the statuses it can answer;
* ``<!-- generated: api-schemas -->``: the request and response bodies of that document;
* ``<!-- generated: cli -->``: every ``fraudstream`` command with its arguments and options.

The OpenAPI document is also published beside the pages as ``openapi.json``.
"""

from __future__ import annotations

import functools
import json
import re
import types
import typing
from pathlib import Path
from typing import Any

MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.MULTILINE)
REF = "#/components/schemas/"


def _cell(text: Any) -> str:
    """One Markdown table cell: no line breaks, no column separators."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _prose(text: str | None) -> str:
    """A docstring or help text as Markdown: reStructuredText's roles and double backticks become code
    spans, and angle brackets outside code (``extra.<name>``) are shown, not taken for HTML."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"`\1`", (text or "").strip())
    text = re.sub(r"``([^`]+)``", r"`\1`", text)
    parts = re.split(r"(`[^`]*`)", text)
    return "".join(p if p.startswith("`") else p.replace("<", "&lt;").replace(">", "&gt;") for p in parts)


# --- settings ---------------------------------------------------------------------------------------

_TYPE_NAMES = {str: "text", int: "integer", float: "number", bool: "boolean", Path: "path"}


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        names = [_type_name(a) for a in typing.get_args(annotation) if a is not type(None)]
        return " or ".join(names) + " (optional)"
    return _TYPE_NAMES.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _default(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value == "":
        return "empty"
    return f"`{value}`"


def _bounds(metadata: list[Any]) -> str:
    signs = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}
    parts = [
        f"{sign} {getattr(item, name)}"
        for item in metadata
        for name, sign in signs.items()
        if getattr(item, name, None) is not None
    ]
    return ", ".join(parts)


@functools.cache
def settings_table() -> str:
    from fraudstream.config import Settings

    prefix = Settings.model_config.get("env_prefix", "")
    lines = [
        "| variable | type | default | meaning |",
        "|---|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        bounds = _bounds(field.metadata)
        kind = _type_name(field.annotation) + (f" ({bounds})" if bounds else "")
        meaning = _prose(field.description) or "—"
        lines.append(
            f"| `{(prefix + name).upper()}` | {_cell(kind)} | {_cell(_default(field.default))} "
            f"| {_cell(meaning)} |"
        )
    return "\n".join(lines)


# --- API --------------------------------------------------------------------------------------------


@functools.cache
def openapi() -> dict[str, Any]:
    from fraudstream.api.app import create_app
    from fraudstream.config import Settings

    # Built, not started: nothing connects until the app's lifespan runs.
    return create_app(Settings(_env_file=None)).openapi()


def _schema_name(schema: dict[str, Any]) -> str:
    """A short name for a JSON schema: a linked component, an array of one, or its type."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix(REF)
        return f"[{name}](#schema-{name.lower()})"
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [_schema_name(s) for s in schema[key] if s.get("type") != "null"]
            optional = any(s.get("type") == "null" for s in schema[key])
            return " or ".join(options) + (" (optional)" if optional else "")
    if schema.get("type") == "array":
        return f"list of {_schema_name(schema.get('items', {}))}"
    if "enum" in schema:
        return " / ".join(f"`{v}`" for v in schema["enum"])
    kind = str(schema.get("type", "any"))
    bounds = [
        f"{sign} {schema[key]}"
        for key, sign in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"))
        if key in schema
    ]
    if "maxLength" in schema:
        bounds.append(f"at most {schema['maxLength']} characters")
    if "format" in schema:
        kind = f"{kind} ({schema['format']})"
    return kind + (f", {', '.join(bounds)}" if bounds else "")


def _when(description: str) -> str:
    """A response's description; FastAPI's generic ones said plainly."""
    generic = {"Successful Response": "success", "Service Unavailable": "not ready (see the body)"}
    return generic.get(description, _prose(description))


def _operation(method: str, path: str, op: dict[str, Any]) -> list[str]:
    out = [
        f"### `{method.upper()} {path}`",
        "",
        f"**{op.get('summary', '')}.** {_prose(op.get('description'))}",
        "",
    ]
    params = op.get("parameters", [])
    if params:
        out += ["| parameter | in | type | default | meaning |", "|---|---|---|---|---|"]
        for p in params:
            schema = p.get("schema", {})
            default = (
                _default(schema["default"])
                if "default" in schema
                else ("required" if p.get("required") else "—")
            )
            out.append(
                f"| `{p['name']}` | {p['in']} | {_cell(_schema_name(schema))} | {_cell(default)} "
                f"| {_cell(_prose(p.get('description') or schema.get('description')) or '—')} |"
            )
        out.append("")
    body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    if body:
        out += [f"Body: {_schema_name(body)}.", ""]
    out += ["| status | when | body |", "|---|---|---|"]
    for status, response in sorted(op.get("responses", {}).items()):
        schema = response.get("content", {}).get("application/json", {}).get("schema")
        out.append(
            f"| {status} | {_cell(_when(response.get('description', '')))} "
            f"| {_cell(_schema_name(schema) if schema else '—')} |"
        )
    security = [s for s in op.get("security", []) if s]
    if security:
        keyed = "optional" if {} in op.get("security", []) else "required when `FRAUD_API_KEYS` is set"
        out += ["", f"API key: {keyed}."]
    return [*out, ""]


@functools.cache
def api_operations() -> str:
    doc = openapi()
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            by_tag.setdefault((op.get("tags") or ["other"])[0], []).append((method, path, op))
    out = [
        "| operation | what it does |",
        "|---|---|",
        *(
            f"| [`{m.upper()} {p}`](#{_anchor(m, p)}) | {_cell(op.get('summary', ''))} |"
            for ops in by_tag.values()
            for m, p, op in ops
        ),
        "",
    ]
    for tag, ops in by_tag.items():
        out += [f"## {tag.capitalize()}", ""]
        for method, path, op in ops:
            out += _operation(method, path, op)
    return "\n".join(out)


def _anchor(method: str, path: str) -> str:
    """The id MkDocs' table of contents gives the heading ``METHOD path`` (code span)."""
    return re.sub(r"[^\w\- ]", "", f"{method} {path}".lower()).strip().replace(" ", "-")


@functools.cache
def api_schemas() -> str:
    schemas = openapi().get("components", {}).get("schemas", {})
    out: list[str] = []
    for name in sorted(schemas):
        schema = schemas[name]
        out += [f"### {name} {{#schema-{name.lower()}}}", ""]
        if schema.get("description"):
            out += [_prose(schema["description"]), ""]
        properties = schema.get("properties", {})
        if properties:
            required = set(schema.get("required", []))
            out += ["| field | type | required | meaning |", "|---|---|---|---|"]
            for field, prop in properties.items():
                out.append(
                    f"| `{field}` | {_cell(_schema_name(prop))} | {'yes' if field in required else 'no'} "
                    f"| {_cell(_prose(prop.get('description')) or '—')} |"
                )
        elif "enum" in schema:
            out.append("One of " + ", ".join(f"`{v}`" for v in schema["enum"]) + ".")
        out.append("")
    return "\n".join(out)


# --- command line -----------------------------------------------------------------------------------


def _commands(command: Any, words: list[str]) -> list[tuple[list[str], Any]]:
    subcommands = getattr(command, "commands", None)
    if not subcommands:
        return [(words, command)]
    return [item for name, sub in subcommands.items() for item in _commands(sub, [*words, name])]


def _option(param: Any) -> str:
    names = " / ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
    if type(param).__name__.endswith("Argument"):
        names = f"`{param.name.upper()}`" + (" …" if param.nargs == -1 or param.multiple else "")
    return names


@functools.cache
def cli_reference() -> str:
    import typer

    from fraudstream.cli import app

    root = typer.main.get_command(app)
    out: list[str] = []
    for words, command in _commands(root, ["fraudstream"]):
        out += [f"### `{' '.join(words)}`", "", _prose(command.help), ""]
        params = [p for p in command.params if not getattr(p, "hidden", False)]
        if params:
            out += ["| argument or option | default | meaning |", "|---|---|---|"]
            for p in params:
                default = p.default
                if getattr(p, "secondary_opts", None) and isinstance(default, bool):
                    default = (p.opts if default else p.secondary_opts)[0]
                if getattr(p, "is_flag", False) and not getattr(p, "secondary_opts", None):
                    default = "on" if default else "off"
                shown = "required" if p.required else ("—" if default in (None, (), []) else f"`{default}`")
                meaning = _prose(getattr(p, "help", None)) or "—"
                if getattr(p, "envvar", None):
                    meaning += f" (env `{p.envvar}`)"
                out.append(f"| {_option(p)} | {_cell(shown)} | {_cell(meaning)} |")
            out.append("")
    return "\n".join(out)


GENERATORS = {
    "settings": settings_table,
    "api": api_operations,
    "api-schemas": api_schemas,
    "cli": cli_reference,
}


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    def generate(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise ValueError(f"{page.file.src_uri}: no generated table named {name!r}")
        return GENERATORS[name]()

    return MARKER.sub(generate, markdown)


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    files.append(File.generated(config, "openapi.json", content=json.dumps(openapi(), indent=2)))
    return files
