"""`--plot DIR`: one PNG per record, a contact map split along its diagonal.

For `rnaernie fold`, the lower triangle shows the pair probabilities and the upper one the decoded
pairs. For `rnaernie score`, the upper triangle shows the predicted pairs (green when the reference
has them, red when not) and the lower one the reference pairs (green when found, grey when
missed). Cell (i, j) is the pair of bases i and j, numbered from 1. Needs matplotlib
(`pip install 'rnaernie-convert[plot]'`); the folder appears whole when the command ends, or not at all.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

from rnaernie.errors import InputError
from rnaernie.output import atomic_folder, check_output_folder
from rnaernie.structures import claim_file_name

if TYPE_CHECKING:
    import numpy as np

FOUND, WRONG, MISSED, DECODED = "#1a9850", "#d73027", "#a0a0a0", "#000000"


def check_plot_folder(folder: Path) -> None:
    """Refuse `--plot DIR` before any work: matplotlib missing, or a folder that cannot be written."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InputError("--plot needs matplotlib; install it with pip install 'rnaernie-convert[plot]' "
                         "(or pip install matplotlib).") from None
    check_output_folder(folder)


class PlotFolder:
    def __init__(self, folder: Path):
        self.folder = folder
        self.taken: dict[str, str] = {}

    def add(self, record_id: str, length: int, *, probabilities: "np.ndarray | None" = None,
            predicted: Sequence[tuple[int, int]] = (), reference: Sequence[tuple[int, int]] | None = None,
            title: str = "") -> None:
        name = claim_file_name(self.taken, record_id, "png")
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed
        import numpy as np
        from matplotlib import pyplot

        figure, axes = pyplot.subplots(figsize=(6, 6), dpi=100)
        try:
            extent = (0.5, length + 0.5, length + 0.5, 0.5)  # cell (i, j) centred on (j, i), numbered from 1
            if probabilities is not None:
                below = np.ma.masked_where(np.triu(np.ones((length, length), dtype=bool)), probabilities)
                image = axes.imshow(below, cmap="Blues", vmin=0.0, vmax=1.0, extent=extent, interpolation="nearest")
                figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="pair probability")
            size = max(2.0, 3000.0 / max(length, 1))
            if reference is None:
                _scatter(axes, predicted, DECODED, size, "decoded pairs", upper=True)
            else:
                truth, guessed = set(reference), set(predicted)
                _scatter(axes, sorted(guessed & truth), FOUND, size, "predicted, in the reference", upper=True)
                _scatter(axes, sorted(guessed - truth), WRONG, size, "predicted, not in the reference", upper=True)
                _scatter(axes, sorted(truth & guessed), FOUND, size, None, upper=False)
                _scatter(axes, sorted(truth - guessed), MISSED, size, "reference, missed", upper=False)
            axes.plot([0.5, length + 0.5], [0.5, length + 0.5], color="#cccccc", linewidth=0.8)
            axes.set_xlim(0.5, length + 0.5)
            axes.set_ylim(length + 0.5, 0.5)
            axes.set_aspect("equal")
            lower = "pair probabilities" if reference is None else "reference pairs"
            axes.set_xlabel(f"base (upper triangle: {'decoded' if reference is None else 'predicted'} pairs; "
                            f"lower: {lower})")
            axes.set_ylabel("base")
            axes.set_title(f"{record_id} ({length} nt){title}", fontsize=10)
            if axes.get_legend_handles_labels()[0]:  # below the map, so it hides no pair
                axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, fontsize=7, frameon=False)
            figure.tight_layout()
            figure.savefig(self.folder / name)
        finally:
            pyplot.close(figure)


def _scatter(axes, pairs, color, size, label, upper):
    if not pairs:
        return
    rows = [i + 1 if upper else j + 1 for i, j in pairs]
    columns = [j + 1 if upper else i + 1 for i, j in pairs]
    axes.scatter(columns, rows, s=size, c=color, marker="s", linewidths=0, label=label)


@contextmanager
def plot_folder(folder: Path | None) -> Iterator[PlotFolder | None]:
    """A `PlotFolder` staged beside `folder` (None when no plots were asked for)."""
    if folder is None:
        yield None
        return
    with atomic_folder(folder) as staging:
        yield PlotFolder(staging)
