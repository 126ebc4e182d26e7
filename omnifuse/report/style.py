"""Appearance of tables and figures. Changing any of these never changes a number in a tidy CSV."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReportStyle:
    dpi: int = 200  # PNG resolution (dots per inch)
    font_size: float = 9.0  # base font size (points)
    fig_width: float = 7.0  # figure width (inches)
    fig_height: float = 3.6  # figure height (inches; per row of panels)
    colormap: str = "tab10"  # matplotlib colour map for the series
    line_width: float = 1.5  # line width (points)
    marker_size: float = 4.0  # marker size of line plots (points)
    band_alpha: float = 0.2  # opacity of the ± std bands
    decimals: int = 3  # decimals of "mean ± std" in human tables
    marker: str = "*"  # significance marker appended to Table 3 cells

    def validate(self) -> None:
        if self.dpi <= 0 or self.font_size <= 0 or self.fig_width <= 0 or self.fig_height <= 0:
            raise ValueError("report style: dpi, font size and figure size must be positive")
        if not 0 <= self.decimals <= 10:
            raise ValueError(f"report style: decimals must be in 0..10, got {self.decimals}")
        if not 0.0 <= self.band_alpha <= 1.0:
            raise ValueError(f"report style: band alpha must be in [0, 1], got {self.band_alpha}")
