"""Template model body: word and character n-gram TF-IDF of the free-text columns, plus the other features, in one
sparse linear model (logistic or ridge regression).

The classic strong baseline for text: word uni- and bigrams catch what is said, character 3-5-grams (within word
boundaries, on each text's first 200 characters; only when a fit may take 8 s or more) catch spelling, inflections
and emphasis ("LOVE", "!!!"). Sublinear term frequencies and a vocabulary capped by size keep it fast and the matrix
sparse end to end; numbers are scaled and categories one-hot encoded beside the n-grams, so the model sees the whole
row. Runs only when the profile found free text (`task.text`).
"""

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

CHAR_HEAD = 200  # characters of each text that get character n-grams
CHARS_MIN_SECONDS = 8.0  # character n-grams only when one fit may take this long (longer budgets)


def signed_log(values):
    values = np.asarray(values, dtype=float)
    return np.sign(values) * np.log1p(np.abs(values))


def as_text(frame):
    return frame.astype(object).where(frame.notna(), "(missing)").astype(str)


def sparse_block(frame):
    """The contract's sparse columns (`task.sparse`) as one CSR matrix, signed-log scaled, missing as 0: never dense."""
    block = frame.sparse.to_coo().tocsr().astype(np.float32)
    block.data = np.nan_to_num(np.sign(block.data) * np.log1p(np.abs(block.data)), nan=0.0)
    block.eliminate_zeros()
    return block


def text_head(frame):
    """The first CHAR_HEAD characters of each text: character n-grams cost a Python loop per character, and the words
    already cover the rest of a long text."""
    return [text[:CHAR_HEAD] for text in one_text(frame)]


def one_text(frame):
    """One text column (a single-column frame) as a flat list of strings, missing as empty."""
    return frame.iloc[:, 0].fillna("").astype(str).tolist()


def text_features(task):
    """The sparse encoder: per text column word and char n-grams; scaled numbers; one-hot categories."""
    # vocabularies shrink as rows grow so one fit stays within its time and memory share
    words = 100_000 if task.n_rows < 50_000 else 50_000
    chars = 20_000 if task.n_rows < 50_000 else 10_000
    parts = []
    for column in task.text:
        parts.append(
            (
                f"words_{column}",
                make_pipeline(
                    FunctionTransformer(one_text),
                    TfidfVectorizer(
                        ngram_range=(1, 2),
                        min_df=2,
                        max_df=0.9,
                        sublinear_tf=True,
                        max_features=words,
                        strip_accents="unicode",
                        dtype=np.float32,
                    ),
                ),
                [column],
            )
        )
        if task.fit_seconds < CHARS_MIN_SECONDS:
            continue  # a tight fit budget: words only (character n-grams cost most of a text fit)
        parts.append(
            (
                f"chars_{column}",
                make_pipeline(
                    FunctionTransformer(text_head),
                    TfidfVectorizer(
                        analyzer="char_wb",
                        ngram_range=(3, 5),
                        min_df=3,
                        sublinear_tf=True,
                        max_features=chars,
                        lowercase=True,
                        dtype=np.float32,
                    ),
                ),
                [column],
            )
        )
    numeric = make_pipeline(
        FunctionTransformer(signed_log, feature_names_out="one-to-one"),
        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
        StandardScaler(),
    )
    categorical = make_pipeline(
        FunctionTransformer(as_text, feature_names_out="one-to-one"),
        OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=3),
    )
    sparse = list(task.sparse)  # wide mostly-zero columns: one sparse matrix, scaled without centring
    dense = [c for c in task.numeric if c not in set(sparse)]
    if dense:
        parts.append(("numeric", numeric, dense))
    if sparse:
        scaled = make_pipeline(FunctionTransformer(sparse_block), StandardScaler(with_mean=False))
        parts.append(("sparse", scaled, sparse))
    if task.categorical:
        parts.append(("categorical", categorical, list(task.categorical)))
    return ColumnTransformer(parts, remainder="drop", sparse_threshold=1.0)


def build_model(task):
    if task.type == "regression":
        model = Ridge(alpha=3.0)
    else:
        # saga handles the wide sparse matrix (and multiclass) without densifying it
        model = LogisticRegression(C=4.0, solver="saga" if task.type == "multiclass" else "liblinear", max_iter=2000)
    return make_pipeline(text_features(task), model)
