"""The product layer: ``scan`` (every lens over one model), ``compare_report`` (several models),
the :class:`Report` (tables, summary, one self-contained HTML file) and a user's own model.

Example
-------
>>> import netxray
>>> report = netxray.scan(model, "digits")            # doctest: +SKIP
>>> report["modularity"].head()                        # doctest: +SKIP
>>> report.save("out/")                                # index.html, results.json, CSV/Parquet
"""

from netxray.models.user_model import UserModelError, load_user_model, read_weights
from netxray.report.core import (
    LENSES,
    TEMP_MARKER,
    LensResult,
    Report,
    ReportLockedError,
    ScanOptions,
    check_owned_files,
    check_report_out,
    compare_report,
    mark_temp_dir,
    own_temp_dir,
    record_owned_files,
    report_files,
    report_lock,
    resolve_data,
    scan,
    write_owned_files,
)
from netxray.report.html import Plot, figure_to_plot, render_html

__all__ = [
    "LENSES",
    "TEMP_MARKER",
    "LensResult",
    "Plot",
    "Report",
    "ReportLockedError",
    "ScanOptions",
    "check_owned_files",
    "check_report_out",
    "record_owned_files",
    "report_files",
    "report_lock",
    "UserModelError",
    "compare_report",
    "figure_to_plot",
    "load_user_model",
    "mark_temp_dir",
    "own_temp_dir",
    "read_weights",
    "render_html",
    "resolve_data",
    "scan",
    "write_owned_files",
]
