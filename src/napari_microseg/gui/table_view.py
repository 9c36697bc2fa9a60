"""A sortable Qt table over a pandas DataFrame, for the Measure and Evaluate docks."""

from __future__ import annotations

import numpy as np
import pandas as pd
from qtpy.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt, Signal
from qtpy.QtWidgets import QAbstractItemView, QTableView


class DataFrameModel(QAbstractTableModel):
    """Read-only model of a DataFrame; numbers sort as numbers."""

    def __init__(self, df: pd.DataFrame | None = None, parent=None):
        super().__init__(parent)
        self._df = pd.DataFrame() if df is None else df

    @property
    def dataframe(self) -> pd.DataFrame:
        """The table shown."""
        return self._df

    def set_dataframe(self, df: pd.DataFrame) -> None:
        """Replace the table."""
        self.beginResetModel()
        self._df = df.reset_index(drop=True)
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()):  # noqa: B008 (Qt API)
        return 0 if parent.isValid() else len(self._df)

    def columnCount(self, parent=QModelIndex()):  # noqa: B008
        return 0 if parent.isValid() else len(self._df.columns)

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        value = self._df.iat[index.row(), index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            if isinstance(value, (float, np.floating)):
                return "" if np.isnan(value) else f"{value:.4g}"
            return str(value)
        if role == Qt.ItemDataRole.UserRole:  # sort key
            if isinstance(value, (bool, np.bool_)):
                return int(value)
            if isinstance(value, (int, float, np.integer, np.floating)):
                return float(value)
            return str(value)
        return None

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        if orientation == Qt.Orientation.Horizontal:
            return str(self._df.columns[section])
        return str(section + 1)


class DataFrameView(QTableView):
    """Sortable table; emits :attr:`row_clicked` with the clicked row as a Series."""

    row_clicked = Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.source = DataFrameModel(parent=self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.source)
        self.proxy.setSortRole(Qt.ItemDataRole.UserRole)
        self.setModel(self.proxy)
        self.setSortingEnabled(True)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.clicked.connect(self._on_clicked)

    def set_dataframe(self, df: pd.DataFrame) -> None:
        """Show ``df``."""
        self.source.set_dataframe(df)
        self.resizeColumnsToContents()

    def row_at(self, view_row: int) -> pd.Series:
        """The DataFrame row shown at ``view_row`` (after sorting)."""
        src = self.proxy.mapToSource(self.proxy.index(view_row, 0))
        return self.source.dataframe.iloc[src.row()]

    def _on_clicked(self, index):
        self.row_clicked.emit(self.row_at(index.row()))
