"""Write notebooks/01-export-tenant.ipynb from the cells below (outputs empty).

Execute it afterwards: `.venv/bin/jupyter nbconvert --to notebook --execute
--inplace notebooks/01-export-tenant.ipynb`.
"""

from pathlib import Path

import nbformat as nbf

md = nbf.v4.new_markdown_cell
code = nbf.v4.new_code_cell

cells = [
    md(
        "# Export a tenant into DataFrames\n\n"
        "**Question:** what is in the tenant, completely: every user, enterprise "
        "user, group and membership, even past FusionAuth's 10,000-result window, "
        "and can the export be trusted?\n\n"
        "**Reads:** the SCIM server configured in the environment or `.env` "
        "(see the README), or, with nothing configured, the local sandbox with the "
        "demo tenant. **Changes:** nothing on the server; writes Parquet files "
        "under `OUTPUT_DIR`."
    ),
    code(
        "# Parameters (papermill's convention). Secrets come from the environment or\n"
        "# a .env file, never from this cell.\n"
        'ENV_FILE = ".env"\n'
        'OUTPUT_DIR = "../out/01-export-tenant"\n'
        "PAGE_SIZE = 100\n"
        "MAX_WORKERS = 4\n"
        "PROGRESS = True",
        metadata={"tags": ["parameters"]},
    ),
    md(
        "## Connect\n\n"
        "`scimtools.connect()` reads `FUSIONAUTH_URL`, `SCIM_CLIENT_ID`, "
        "`SCIM_CLIENT_SECRET` and `SCIM_SERVER_ENTITY_ID` (a client-credentials "
        "grant) or `SCIM_BASE_URL` with `SCIM_TOKEN` (a pasted token). With none "
        "of them set it starts the sandbox and says so."
    ),
    code(
        "import logging\n\n"
        "import matplotlib.pyplot as plt\n"
        "import pandas as pd\n\n"
        "import scimtools\n"
        "from scimtools.discovery import check_discovery\n\n"
        'logging.getLogger("httpx").setLevel(logging.WARNING)\n'
        'pd.set_option("display.width", 120)\n\n'
        "client = scimtools.connect(\n"
        "    env_file=ENV_FILE,\n"
        "    page_size=PAGE_SIZE,\n"
        "    max_workers=MAX_WORKERS,\n"
        "    progress=PROGRESS,\n"
        ")"
    ),
    md(
        "## The token\n\n"
        "What the token says about itself (never the token itself), and whether it "
        "holds every permission this notebook needs, checked before any request. "
        "FusionAuth answers a missing permission with 401, not 403, so it is worth "
        "knowing in advance."
    ),
    code("scimtools.describe_token(client)"),
    code(
        'needed = ["export users", "export enterprise users", "export groups",'
        ' "read discovery"]\n'
        "missing = scimtools.missing_permissions(client, needed)\n"
        'missing or "The token holds every permission these operations need."'
    ),
    md(
        "## What the server says about itself, and what it does\n\n"
        "FusionAuth's ServiceProviderConfig reports filtering and PATCH as "
        "unsupported, although both work, and its ResourceTypes leave out "
        "/EnterpriseUsers, although it is served. scimtools probes instead of "
        "trusting the claims; rows where `agrees` is False are the places where the "
        "self-description is wrong."
    ),
    code("check_discovery(client)"),
    md(
        "## Export\n\n"
        "Users, EnterpriseUsers and Groups are each exported completely: pages are "
        "fetched concurrently, every resource is counted once, and a collection "
        "larger than the window is split into `userName sw` partitions whose totals "
        "must add up to the whole. An export that cannot be complete raises "
        "`IncompleteExportError` instead of returning a short frame."
    ),
    code(
        "# NBVAL_IGNORE_OUTPUT: progress bars and timings differ from run to run.\n"
        "export = scimtools.export_tenant(client)"
    ),
    code('pd.Series(export.counts(), name="rows")'),
    md(
        "How each collection was exported: the requests it took, the partitions "
        "used past the window, duplicates seen, and the server's deviations from "
        "RFC 7644 that were noticed and tolerated (FusionAuth echoes `count` as "
        "`itemsPerPage`). "
        "`complete` is True only when every id arrived once and the count matches "
        "`totalResults`."
    ),
    code(
        "report = pd.DataFrame(\n"
        "    {\n"
        "        endpoint: {\n"
        '            "total_results": summary.get("expected"),\n'
        '            "exported": summary.get("count"),\n'
        '            "requests": summary.get("requests"),\n'
        '            "complete": summary.get("complete"),\n'
        '            "partitions": len(summary.get("partitions") or []),\n'
        '            "duplicates": len(summary.get("duplicates") or []),\n'
        '            "deviations": "; ".join(summary.get("problems") or []),\n'
        "        }\n"
        '        for endpoint, summary in export.metadata["reports"].items()\n'
        "    }\n"
        ").T\n"
        "report"
    ),
    md("## A sample\n\nThe first users by userName, a few columns of the wide table."),
    code(
        'columns = ["user_name", "given_name", "family_name", "email", "active"]\n'
        'export.users.sort_values("user_name")[columns].head(5)'
    ),
    md(
        "Multi-valued attributes keep every value in long tables; the wide table "
        "keeps the primary one. Users whose emails came without a primary flag "
        "have no email in the wide table."
    ),
    code(
        'export.emails.groupby(["type", "primary"], dropna=False).size()'
        '.rename("emails")'
    ),
    md("## Users by status and by creation month"),
    code(
        "fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.5))\n"
        'status = export.users["active"].map({True: "active", False: "inactive"})\n'
        "status.value_counts().sort_index().plot.bar(\n"
        '    ax=left, title="Users by status", rot=0, xlabel=""\n'
        ")\n"
        'months = export.users["created"].dt.tz_convert("UTC").dt.strftime("%Y-%m")\n'
        "months.value_counts().sort_index().plot.bar(\n"
        '    ax=right, title="Users by creation month", rot=90, xlabel=""\n'
        ")\n"
        "fig.tight_layout();"
    ),
    md(
        "## Save\n\n"
        "One Parquet file per frame, with the run's metadata (server, time, counts, "
        "partitions, duplicates) in each file and in `metadata.json`."
    ),
    code("saved = export.save(OUTPUT_DIR)\nsorted(p.name for p in saved.iterdir())"),
    code("client.close()"),
]

notebook = nbf.v4.new_notebook(cells=cells)
notebook.metadata["kernelspec"] = {
    "name": "python3",
    "display_name": "Python 3",
    "language": "python",
}
path = Path(__file__).resolve().parents[1] / "notebooks" / "01-export-tenant.ipynb"
nbf.write(notebook, path)
print(path)
