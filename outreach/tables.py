"""Rich tables that stay readable in a narrow terminal (80 columns and less).

Rich shrinks every column alike when a table is too wide, down to one character
(`┏┳┳┳┳`). Here the short columns (ids, counts, states) never shrink; the one
`wide` text column (a title) takes the width that is left and wraps at words, and
other `wrap` columns (lists of topics) wrap when the terminal is too narrow.
"""

from __future__ import annotations

from collections.abc import Collection

from rich.console import JustifyMethod
from rich.table import Table


def fitted_table(
    *headers: str,
    wide: str | None = None,
    wrap: Collection[str] = (),
    right: Collection[str] = (),
    title: str | None = None,
) -> Table:
    """A table for the terminal's width: `wide` and `wrap` columns wrap, the others stay whole."""
    table = Table(title=title, title_justify="left")
    for header in headers:
        justify: JustifyMethod = "right" if header in right else "left"
        if header == wide:
            table.add_column(header, justify=justify, ratio=1, overflow="fold")
        elif header in wrap:
            table.add_column(header, justify=justify, overflow="fold")
        else:
            table.add_column(header, justify=justify, no_wrap=True, min_width=len(header))
    return table
