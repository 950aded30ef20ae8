"""Review a correction plan in Jupyter: filter, look at before and after, approve.

The only module of scimtools that imports ipywidgets; the core never imports it.
Outside Jupyter, approve with `scimtools.plan.approve_rows` instead.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets
import pandas as pd

from scimtools.plan import make_plan

__all__ = ["ReviewPanel", "review_plan"]

_ALL = "(all)"
_FILTERS = ("kind", "client", "severity", "op")


def _options(frame: pd.DataFrame, column: str) -> list[str]:
    values = sorted({str(v) for v in frame[column] if v is not None and v == v})
    return [_ALL, *values]


def _show(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return html.escape(repr(value) if not isinstance(value, str) else value)


class ReviewPanel:
    """An ipywidgets panel over a plan: filters, one checkbox per row, counts.

    Parameters
    ----------
    plan : DataFrame
        The plan to review (`scimtools.plan.make_plan` is applied).
    dry : DataFrame, optional
        `scimtools.push.dry_run` of the plan: adds each row's before, after and
        status.
    page_size : int, default 50
        Rows shown at once.

    Attributes
    ----------
    widget : ipywidgets.VBox
        What to display (the panel also displays itself as the last expression
        of a cell).
    """

    def __init__(
        self, plan: pd.DataFrame, dry: pd.DataFrame | None = None, page_size: int = 50
    ) -> None:
        self._plan = make_plan(plan)
        self._dry = (
            dry.set_index("op_id")[["status", "before", "after"]]
            if dry is not None
            else None
        )
        self.page_size = page_size
        self.filters = {
            column: widgets.Dropdown(
                options=_options(self._plan, column), value=_ALL, description=column
            )
            for column in _FILTERS
        }
        self.counts = widgets.HTML()
        self.rows = widgets.VBox()
        approve = widgets.Button(description="Approve shown")
        reject = widgets.Button(description="Reject shown")
        approve.on_click(lambda _: self._set_shown(True))
        reject.on_click(lambda _: self._set_shown(False))
        for dropdown in self.filters.values():
            dropdown.observe(lambda _: self._render(), names="value")
        self.widget = widgets.VBox(
            [
                widgets.HBox(list(self.filters.values())),
                widgets.HBox([approve, reject, self.counts]),
                self.rows,
            ]
        )
        self._render()

    @property
    def plan(self) -> pd.DataFrame:
        """Return the plan with the ``approved`` column as reviewed."""
        return self._plan.copy()

    def shown(self) -> pd.DataFrame:
        """Return the rows the filters select."""
        mask = pd.Series(True, index=self._plan.index)
        for column, dropdown in self.filters.items():
            if dropdown.value != _ALL:
                mask &= self._plan[column].astype(str) == dropdown.value
        return self._plan[mask]

    def _set_shown(self, approved: bool) -> None:
        for label in self.shown().index:
            self._plan.at[label, "approved"] = approved
        self._render()

    def _toggle(self, label: Any, approved: bool) -> None:
        self._plan.at[label, "approved"] = approved
        self._update_counts()

    def _update_counts(self) -> None:
        approved = int(self._plan["approved"].map(bool).sum())
        self.counts.value = (
            f"{len(self.shown())} shown; {approved} of {len(self._plan)} approved"
        )

    def _render(self) -> None:
        boxes = []
        for label, row in self.shown().head(self.page_size).iterrows():
            before = after = status = ""
            if self._dry is not None and row["op_id"] in self._dry.index:
                found = self._dry.loc[row["op_id"]]
                before, after, status = found["before"], found["after"], found["status"]
            box = widgets.Checkbox(value=bool(row["approved"]), indent=False)
            box.observe(
                lambda change, label=label: self._toggle(label, change["new"]),
                names="value",
            )
            text = widgets.HTML(
                f"<code>{_show(row['op_id'])}</code> {_show(row['op'])}"
                f" {_show(row['resource_type'])} {_show(row['resource_id'])}"
                f" <b>{_show(row['path'])}</b>: {_show(before)} &rarr;"
                f" {_show(after if after != '' else row['value'])}"
                f" <i>{_show(status)}</i> {_show(row['reason'])}"
            )
            boxes.append(widgets.HBox([box, text]))
        self.rows.children = boxes
        self._update_counts()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def review_plan(
    plan: pd.DataFrame, dry: pd.DataFrame | None = None, page_size: int = 50
) -> ReviewPanel:
    """Return a `ReviewPanel` for a plan; read ``panel.plan`` when done.

    Examples
    --------
    >>> panel = review_plan(make_plan([{"op": "delete", "resource_type": "User",
    ...                                  "resource_id": "u1", "approved": False}]))
    >>> panel.filters["op"].options
    ('(all)', 'delete')
    >>> panel._set_shown(True)
    >>> panel.plan["approved"].tolist(), panel.counts.value
    ([True], '1 shown; 1 of 1 approved')
    """
    return ReviewPanel(plan, dry, page_size)
