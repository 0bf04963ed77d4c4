"""The one way detpipe renders a matplotlib figure: object API on the Agg canvas, PNG bytes.

No pyplot state, no display, matplotlib's bundled DejaVu fonts only (nothing is downloaded)::

    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.add_subplot()
    ...
    write_bytes(out / "plot.png", png_bytes(fig))
"""

from __future__ import annotations

import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def png_bytes(fig: Figure, dpi: int = 110, tight: bool = False) -> bytes:
    """``fig`` rendered as PNG; ``tight`` crops to the drawn content (``bbox_inches="tight"``)."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    return buf.getvalue()
