"""Stage 3: the paper's tables and figures from training run directories.

Modules, one job each:

* :mod:`.runs`: run directory path ↔ :class:`omnifuse.workflow.plan.Run`, combination ordering;
* :mod:`.collect`: fold metrics (and training histories) of many runs → one tidy long frame;
* :mod:`.stats`: mean ± std summaries and the paired t-test significance marker;
* :mod:`.style`: :class:`ReportStyle`, appearance only (never the numbers);
* :mod:`.tables`: Tables 2, 3 and 4 (human CSV + tidy CSV);
* :mod:`.figures`: Figures 2, 4, 5, 6 and 7 (PNG + PDF + tidy CSV of the plotted numbers);
* :mod:`.embeddings`: Figure 8 (t-SNE of true vs imputed embeddings, from a checkpoint);
* :mod:`.write`: atomic, deterministic CSV / PNG / PDF writers.

The ``omnifuse report ...`` commands (:mod:`omnifuse.cli.report`) call these functions.
"""
