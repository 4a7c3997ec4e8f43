"""MkDocs hooks: the pages that describe code are generated from it when the site is built.

- ``stages/``: one page per stage, from the stage registry (``jobs/stages.py``) and the
  docstring of the module each stage runs;
- ``configuration.md``: every setting, from ``jobs/common/settings.py``;
- the architecture picture on the overview (``<!-- architecture -->``), from the registry;
- the table of library adapters (``<!-- adapters -->``), from each adapter module's docstring.
"""

from __future__ import annotations

import ast
import sys
from itertools import pairwise
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jobs import stages  # noqa: E402


def module_docstring(module: str) -> str:
    path = ROOT / (module.replace(".", "/") + ".py")
    return ast.get_docstring(ast.parse(path.read_text())) or ""


def yes(flag: bool) -> str:
    return "yes" if flag else "no"


def stage_page(stage: stages.Stage) -> str:
    outlets = ", ".join(f"`{o}`" for o in stage.outlets) or "none"
    return f"""# {stage.name}

{stage.doc}

| | |
|---|---|
| runs | `jobs.pipeline.{stage.name}` → `{stage.module}` |
| needs Spark | {yes(stage.spark)} |
| over a data interval (`nightjar_history`) | {yes(stage.interval)} |
| waits for the previous run's `{stage.name}` (`depends_on_past`) | {yes(stage.depends_on_past)} |
| trigger rule | `{stage.trigger_rule}` |
| emits Assets | {outlets} |
| one at a time across runs | {yes(stage.one_at_a_time)} |

Run it alone: `nightjar stage {stage.name} --date 2013-03-01`.

## What `{stage.module}` does

{module_docstring(stage.module)}
"""


def stages_index() -> str:
    rows = "\n".join(
        f"| [{s.name}]({s.name}.md) | {s.doc} | {yes(s.spark)} | {yes(s.interval)} |"
        for s in stages.STAGES
    )
    return f"""# Stages

Each stage is declared once, in `jobs/stages.py`; both DAGs, the pipeline, the CLI and these
pages read that declaration. `nightjar_daily` runs all of them for one night in this order;
`nightjar_history` runs those over a data interval for a month at a time.

| stage | what it does | Spark | interval |
|---|---|---|---|
{rows}
"""


def configuration_page() -> str:
    from jobs.common.settings import Settings

    rows = []
    for name, field in Settings.model_fields.items():
        default = field.default if field.default_factory is None else "(computed)"
        text = (field.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `NIGHTJAR_{name.upper()}` | `{default!r}` | {text} |")
    return (
        "# Configuration\n\n"
        "Every setting of `jobs/common/settings.py` is an environment variable (or a line of a "
        "`.env` file). This page is generated from the settings object when the site is built.\n\n"
        "| variable | default | what it does |\n|---|---|---|\n" + "\n".join(rows) + "\n"
    )


def architecture() -> str:
    """The stages in order, and what serves them, as a Mermaid flowchart."""
    lines = ["```mermaid", "flowchart LR"]
    names = [s.name for s in stages.STAGES]
    for before, after in pairwise(names):
        lines.append(f"    {before} --> {after}")
    lines += [
        '    lake[("Delta lakehouse<br/>bronze, silver, gold")]',
        '    feast[("Feast<br/>offline + online")]',
        '    mlflow[("MLflow<br/>runs, registry")]',
        "    bronze & silver & gold -.-> lake",
        "    materialize -.-> feast",
        "    train[nightjar_training] -.-> mlflow",
        "    mlflow -. champion .-> score",
        "    request_retrain -. retrain_request Asset .-> train",
        "    feast -.-> train",
        "```",
    ]
    return "\n".join(lines)


# The modules that replace a library's stock behaviour: jobs/adapters/, and the delta-rs backend
ADAPTERS = (*sorted(ROOT.glob("jobs/adapters/[!_]*.py")), ROOT / "jobs/common/delta/rs.py")
ADAPTER_FIELDS = ("Replaces", "Why", "Written for", "Back to stock")


def adapter_fields(path: Path) -> dict[str, str]:
    """The ``- Replaces:``, ``- Why:``, ``- Written for:`` and ``- Back to stock:`` items of a
    module's docstring (each may run over indented lines), as Markdown."""
    fields: dict[str, str] = {}
    current = None
    for line in ast.get_docstring(ast.parse(path.read_text())).splitlines():
        field = next((f for f in ADAPTER_FIELDS if line.startswith(f"- {f}:")), None)
        if field:
            current = field
            fields[field] = line.removeprefix(f"- {field}:").strip()
        elif current and line.startswith("  "):
            fields[current] += " " + line.strip()
        else:
            current = None
    if missing := [f for f in ADAPTER_FIELDS if f not in fields]:
        raise ValueError(f"{path.relative_to(ROOT)}'s docstring does not say {missing}")
    return {k: v.replace("``", "`").replace("|", "\\|") for k, v in fields.items()}


def adapters_table() -> str:
    rows = []
    for path in ADAPTERS:
        fields = adapter_fields(path)
        cells = [f"`{path.relative_to(ROOT)}`", *(fields[f] for f in ADAPTER_FIELDS)]
        rows.append("| " + " | ".join(cells) + " |")
    header = "| module | replaces | why (measured) | written for | back to stock |"
    return "\n".join([header, "|---|---|---|---|---|", *rows])


def on_files(files, config):
    generated = {"configuration.md": configuration_page(), "stages/index.md": stages_index()}
    generated |= {f"stages/{s.name}.md": stage_page(s) for s in stages.STAGES}
    for uri, content in generated.items():
        files.append(File.generated(config, uri, content=content))
    return files


def on_page_markdown(markdown, page, config, files):
    markdown = markdown.replace("<!-- architecture -->", architecture())
    if "<!-- adapters -->" in markdown:
        markdown = markdown.replace("<!-- adapters -->", adapters_table())
    return markdown
