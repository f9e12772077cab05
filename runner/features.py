"""The static part of feature preparation: every column becomes numeric or categorical, whatever the data holds.

Roles: numeric (also numbers stored as text), categorical (few distinct values), date-like (expanded to numeric parts),
free text (length and word counts, plus the raw text as a pandas `string` column for the templates that vectorise words)
and near-unique strings such as names or codes (frequency counts). Ids and targets never get here. Categories are the
values seen in train, so a value seen only in test becomes NaN.

Free text is told apart from a high-cardinality category by shape: mostly unique values (at least 30% distinct), at
least 20 characters and 3 words on average. When the numeric block would take a large share of the memory ceiling,
numbers are stored as float32 (half the bytes; every model here computes in float32 or copies per fit anyway).

Wide, mostly-zero data (one-hot codes, fingerprint bits, pixels, counts) stays sparse: when at least
SPARSE_MIN_COLUMNS numeric columns each have at most SPARSE_MAX_DENSITY of their values non-zero, those columns become
pandas `Sparse[float32, 0]` columns, placed after the dense ones (`sparse_columns`). Between processes they travel as
one CSR matrix beside the dense frame (`FeatureRows`), never as a dense block.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

MAX_CATEGORIES = 100  # more distinct values than this and the column is encoded by frequency instead
# numbers go float32 when float64 would take more than this share of the memory ceiling (runner.memory)
DOWNCAST_SHARE = 0.05
SPARSE_MIN_COLUMNS = 100  # at least this many mostly-zero numeric columns make a sparse block
SPARSE_MAX_DENSITY = 0.1  # a column joins it when at most this share of its values is non-zero (missing counts)
SPARSE_DTYPE = pd.SparseDtype("float32", 0.0)
_DATE_SAMPLE = 200


@dataclass
class ColumnRoles:
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    dates: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    frequency: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{name} {len(cols)}" for name, cols in vars(self).items() if cols]
        return ", ".join(parts) or "no columns"


def build_features(
    combined: pd.DataFrame, n_train: int, memory_mb: float | None = None
) -> tuple[pd.DataFrame, ColumnRoles]:
    """Turn train+test feature columns (train rows first) into numeric floats, train-vocabulary categories and raw
    text; with `memory_mb` (the ceiling), numbers become float32 when float64 would crowd it (DOWNCAST_SHARE)."""
    roles = ColumnRoles()
    out: dict[str, pd.Series] = {}
    for column in combined.columns:
        series = combined[column].reset_index(drop=True)
        try:
            encoded = _encode_column(str(column), series, n_train, roles)
        except (ValueError, TypeError, OverflowError):  # a column too odd to use must not sink the run
            roles.dropped.append(str(column))
            continue
        out.update(encoded)
    frame = pd.DataFrame(out, index=range(len(combined)))
    if memory_mb is not None:
        frame = downcast(frame, memory_mb)
    return sparsify(frame), roles


def sparsify(frame: pd.DataFrame) -> pd.DataFrame:
    """The mostly-zero float columns as one sparse block after the dense columns, when there are SPARSE_MIN_COLUMNS
    of them (fewer are not worth a second representation); otherwise `frame` unchanged."""
    rows = max(1, len(frame))
    mostly_zero = [
        column
        for column in frame.columns
        if frame[column].dtype.kind == "f"
        and np.count_nonzero(frame[column].to_numpy()) <= SPARSE_MAX_DENSITY * rows  # NaN != 0: missing counts
    ]
    if len(mostly_zero) < SPARSE_MIN_COLUMNS:
        return frame
    dense = [c for c in frame.columns if c not in set(mostly_zero)]
    sparse = pd.DataFrame({c: frame[c].astype(SPARSE_DTYPE) for c in mostly_zero})  # column by column: no dense copy
    return pd.concat([frame[dense], sparse], axis=1)


def sparse_columns(frame: pd.DataFrame) -> list[str]:
    """The columns of `frame` held as pandas sparse arrays (the contract's `task.sparse`), in column order."""
    return [str(c) for c in frame.columns if isinstance(frame[c].dtype, pd.SparseDtype)]


def join_sparse(dense: pd.DataFrame, block: sp.spmatrix | None, names: list[str]) -> pd.DataFrame:
    """`dense` with the CSR `block` appended as `Sparse[float32, 0]` columns called `names` (a fresh 0..n-1 index)."""
    dense = dense.reset_index(drop=True)
    if block is None or not names:
        return dense
    sparse = pd.DataFrame.sparse.from_spmatrix(sp.csr_matrix(block, dtype="float32"), columns=names)
    if dense.shape[1] == 0:
        return sparse
    return pd.concat([dense, sparse], axis=1)


@dataclass
class FeatureRows:
    """Feature rows as the workers hold them: a dense frame and, for wide mostly-zero data, one CSR block (the
    frame's sparse columns, after the dense ones). `take` rebuilds the contract's frame for any rows; a row take on
    CSR is a gather of its non-zeros, where pandas takes 1,500 sparse columns one by one (~0.5 s a fold)."""

    dense: pd.DataFrame
    block: sp.csr_matrix | None = None
    names: list[str] = field(default_factory=list)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> FeatureRows:
        names = sparse_columns(frame)
        if not names:
            return cls(frame.reset_index(drop=True))
        dense = [c for c in frame.columns if c not in set(names)]
        if list(frame.columns) != [*dense, *names]:
            frame = frame[[*dense, *names]]
        block = sp.csr_matrix(frame[names].sparse.to_coo(), dtype="float32")
        return cls(frame[dense].reset_index(drop=True), block, names)

    def __len__(self) -> int:
        return len(self.dense) if self.block is None else int(self.block.shape[0])

    def take(self, positions: np.ndarray) -> pd.DataFrame:
        dense = self.dense.take(positions) if self.dense.shape[1] else pd.DataFrame(index=range(len(positions)))
        return join_sparse(dense, None if self.block is None else self.block[positions], self.names)

    def frame(self) -> pd.DataFrame:
        return self.take(np.arange(len(self)))

    def save(self, directory: Path, stem: str) -> None:
        """`<stem>.parquet` (the dense columns) and, with a block, `<stem>.sparse.npz` (CSR arrays, names; no pickle)"""
        self.dense.to_parquet(directory / f"{stem}.parquet", index=False)
        if self.block is not None:
            np.savez(
                directory / f"{stem}.sparse.npz",
                data=self.block.data,
                indices=self.block.indices,
                indptr=self.block.indptr,
                shape=np.asarray(self.block.shape),
                names=np.asarray(self.names, dtype=str),
            )

    @classmethod
    def load(cls, directory: Path, stem: str) -> FeatureRows:
        import pyarrow.parquet as pq  # noqa: PLC0415 - lazy: only the processes that read parquet load pyarrow

        dense = pq.read_table(directory / f"{stem}.parquet", use_threads=False).to_pandas(use_threads=False)
        path = directory / f"{stem}.sparse.npz"
        if not path.exists():
            return cls(dense)
        with np.load(path, allow_pickle=False) as parts:
            shape = tuple(int(v) for v in parts["shape"])
            block = sp.csr_matrix((parts["data"], parts["indices"], parts["indptr"]), shape=shape)
            names = [str(n) for n in parts["names"]]
        if dense.shape[1] == 0:
            dense = pd.DataFrame(index=range(shape[0]))
        return cls(dense, block, names)


def stack_rows(first: FeatureRows, second: FeatureRows) -> FeatureRows:
    """The rows of `first` then `second` (the same columns): train rows then test rows, as the zygote holds them."""
    if not len(second):
        return first
    if first.dense.shape[1]:
        dense = pd.concat([first.dense, second.dense], ignore_index=True)
    else:
        dense = pd.DataFrame(index=range(len(first) + len(second)))
    if first.block is None and second.block is None:
        return FeatureRows(dense)
    if first.block is None or second.block is None or first.names != second.names:
        raise ValueError("train and test rows must have the same sparse columns")
    return FeatureRows(dense, sp.vstack([first.block, second.block], format="csr"), first.names)


def downcast(frame: pd.DataFrame, memory_mb: float) -> pd.DataFrame:
    """float64 columns as float32 when together they would take more than DOWNCAST_SHARE of `memory_mb`."""
    floats = [c for c in frame.columns if frame[c].dtype == "float64"]
    if len(frame) * len(floats) * 8 <= DOWNCAST_SHARE * memory_mb * 2**20:
        return frame
    return frame.astype(dict.fromkeys(floats, "float32"))


def is_text_column(series: pd.Series) -> bool:
    """A raw free-text column as build_features keeps it: pandas' nullable `string` dtype (missing = pd.NA). Strings a
    body makes (pandas 3 infers `str`, whose missing value is NaN) or object columns are categories, as before."""
    dtype = series.dtype
    return isinstance(dtype, pd.StringDtype) and dtype.na_value is pd.NA


def column_kinds(frame: pd.DataFrame) -> tuple[list[str], list[str], list[str]]:
    """(numeric, categorical, text) column names of a prepared feature frame, in column order."""
    categorical = [c for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)]
    text = [c for c in frame.columns if is_text_column(frame[c])]
    taken = {*categorical, *text}
    return [c for c in frame.columns if c not in taken], categorical, text


def _encode_column(  # noqa: PLR0911 - one return per column role reads best
    name: str, series: pd.Series, n_train: int, roles: ColumnRoles
) -> dict[str, pd.Series]:
    present = series.dropna()
    if present.empty or (present.nunique() <= 1 and not series.isna().any()):
        roles.dropped.append(name)
        return {}
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        roles.numeric.append(name)
        return {name: pd.to_numeric(series, errors="coerce").astype("float64")}
    text = series.astype("string").str.strip().replace("", pd.NA)
    numbers = pd.to_numeric(text, errors="coerce")
    if numbers.notna().sum() >= 0.95 * text.notna().sum():
        roles.numeric.append(name)
        return {name: numbers.astype("float64")}
    if _looks_like_dates(text):
        roles.dates.append(name)
        return _date_parts(name, text)
    distinct = text.nunique()
    if _looks_like_text(text, distinct):
        roles.text.append(name)
        return {name: text.astype("string"), **_text_stats(name, text)}
    if distinct > MAX_CATEGORIES:
        roles.frequency.append(name)
        counts = text.map(text.value_counts()).astype("float64")
        return {f"{name}__count": counts}
    roles.categorical.append(name)
    return {name: to_category(text, n_train)}


def to_category(values: pd.Series, n_train: int) -> pd.Series:
    """Category dtype whose categories are the train rows' values (so test-only values become NaN)."""
    as_text = values.astype("string")
    categories = sorted(as_text.iloc[:n_train].dropna().unique())
    known = as_text.where(as_text.isin(categories)).astype(object)
    return pd.Series(pd.Categorical(known, categories=categories), index=values.index)


def _looks_like_dates(text: pd.Series) -> bool:
    sample = text.dropna().head(_DATE_SAMPLE)
    if sample.empty or not sample.str.contains(r"\d[-/:.]\d|\d{4}[-/]", regex=True).mean() > 0.9:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
    return bool(parsed.notna().mean() > 0.9)


def _date_parts(name: str, text: pd.Series) -> dict[str, pd.Series]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dates = pd.to_datetime(text, errors="coerce", format="mixed")
    if getattr(dates.dt, "tz", None) is not None:
        dates = dates.dt.tz_convert(None)
    days = (dates - pd.Timestamp("1970-01-01")).dt.total_seconds() / 86400.0
    parts = {
        f"{name}__year": dates.dt.year,
        f"{name}__month": dates.dt.month,
        f"{name}__dayofweek": dates.dt.day_of_week,
        f"{name}__dayofyear": dates.dt.day_of_year,
        f"{name}__days": days,
    }
    hours = dates.dt.hour
    if hours.fillna(0).nunique() > 1:
        parts[f"{name}__hour"] = hours
    return {k: v.astype("float64") for k, v in parts.items()}


def _looks_like_text(text: pd.Series, distinct: int) -> bool:
    present = text.dropna()
    if present.empty or distinct < 0.3 * len(present):
        return False
    words = present.str.count(r"\s+") + 1
    return bool(present.str.len().mean() >= 20 and words.mean() >= 3)


def _text_stats(name: str, text: pd.Series) -> dict[str, pd.Series]:
    filled = text.fillna("")
    return {
        f"{name}__chars": filled.str.len().astype("float64"),
        f"{name}__words": (filled.str.count(r"\S+")).astype("float64"),
        f"{name}__upper": filled.str.count(r"[A-Z]").astype("float64"),
        f"{name}__digits": filled.str.count(r"\d").astype("float64"),
    }


def _finite_sparse(series: pd.Series) -> pd.Series:
    """A body's sparse column as Sparse[float32, 0] with infinities as NaN, as for dense numbers: never densified."""
    array = series.astype(SPARSE_DTYPE).array
    values = array.sp_values.copy()
    values[np.isinf(values)] = np.nan
    rows = np.asarray(array.sp_index.indices)
    column = sp.csc_matrix((values, rows, [0, len(rows)]), shape=(len(series), 1), dtype="float32")
    return pd.DataFrame.sparse.from_spmatrix(column, index=series.index).iloc[:, 0].rename(series.name)


def normalise_body_output(frame: pd.DataFrame, n_train: int) -> pd.DataFrame:
    """After a body's add_features: make new columns follow the contract (floats or train-vocabulary categories)."""
    out: dict[str, pd.Series] = {}
    for column in frame.columns:
        series = frame[column].reset_index(drop=True)
        name = str(column)
        if isinstance(series.dtype, pd.SparseDtype):
            out[name] = _finite_sparse(series)  # a sparse column stays sparse (see sparse_columns)
        elif isinstance(series.dtype, pd.CategoricalDtype):
            out[name] = to_category(series.astype(object), n_train)
        elif is_text_column(series):
            out[name] = series  # raw free text stays text (see the contract)
        elif pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
            values = pd.to_numeric(series, errors="coerce").astype("float64")
            out[name] = values.replace([np.inf, -np.inf], np.nan)
        else:
            out[name] = to_category(series, n_train)
    return pd.DataFrame(out, index=range(len(frame)))
