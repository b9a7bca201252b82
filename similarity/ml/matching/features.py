"""Pair features: two listings, their stored vectors and catalog statistics -> one fixed-length row.

Pure Python and numpy (scipy sparse for the row-wise cosines), imports no Django. The worker
computes rows for training pairs; the web process computes the row of one candidate pair from
the two products' stored fields and vectors, catalog document frequencies and (optionally) the
pair's neighbour ranks. Per-listing work (tokens, model numbers, sparse rows) happens once in
``prepare_listings``; ``pair_features`` then works on index arrays, thousands of pairs a second.

Every feature is about 0..1 (``price_log_ratio`` is capped), missing data has an indicator
and a neutral value, and the order is ``FEATURES``: a scorer stores those names and refuses
rows built in another order.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from similarity.ml.matching.listing import Listing
from similarity.ml.text_pipeline import default_pipeline

__all__ = [
    "FEATURES", "CatalogStats", "PreparedListings", "prepare_listings", "pair_features",
    "neighbour_ranks", "model_numbers", "quantities", "brand_of", "editions", "platforms",
]

FEATURES = (
    "text_cosine",            # cosine of the stored text vectors (0 when either is missing)
    "text_missing",           # either listing has no text vector
    "image_cosine",           # cosine of the stored image vectors (0 when either is missing)
    "image_missing",          # either listing has no image vector
    "rank_ab",                # 1/rank of b among a's nearest by text cosine (0 beyond k or unknown)
    "rank_ba",                # 1/rank of a among b's nearest
    "title_jaccard",          # Jaccard of the titles' token sets
    "title_idf_jaccard",      # the same, each token weighted by its IDF
    "title_idf_containment",  # IDF of shared title tokens / IDF of the smaller title
    "title_char_cosine",      # TF-IDF cosine of the titles' character 3-grams
    "text_idf_cosine",        # TF-IDF cosine of title + description tokens
    "model_match",            # a model number (hyphens and spaces removed) in both titles
    "model_in_text",          # a model number of one appears inside the other's whole text
    "model_conflict",         # both titles have model numbers and none is found in the other
    "model_missing",          # either title has no model number
    "model_similarity",       # best common-prefix share of two model numbers (lds4821ww/lds4821wh: 0.78)
    "number_jaccard",         # Jaccard of the numbers in the titles (7.0 == 7)
    "number_conflict",        # both titles have numbers, none shared
    "unit_match",             # a quantity (128gb, 24in) in both titles
    "unit_conflict",          # the same unit with different values (128gb vs 256gb)
    "brand_match",            # same brand, or one's brand is a word of the other's title
    "brand_conflict",         # both brands known and no match
    "price_log_ratio",        # |ln(price a / price b)|, capped at PRICE_CAP; 0 when missing
    "price_missing",          # either price is missing
    "title_length_ratio",     # shorter / longer title in tokens
    "unmatched_idf_max",      # rarest title word of either side missing from the other's text (IDF / max IDF)
    "unmatched_idf_min",      # the same, the side whose rarest missing word is more common
    "edition_conflict",       # both titles name an edition (pro, standard, 专业版...) and none is shared
    "edition_one_sided",      # one title names an edition, the other none (iPhone 15 vs iPhone 15 Pro)
    "edition_distance",       # editions named by one title only / editions named by either
    "platform_conflict",      # both name a platform (mac, windows, linux) and none is shared
    "number_mismatch",        # both titles have numbers and their sets differ (a version, a size)
)
INDEX = {name: i for i, name in enumerate(FEATURES)}
PRICE_CAP = 3.0
RANK_K = 10
CHAR_N = 3
MIN_MODEL_CHARS = 4  # "40d", "cs3", "v2" are versions and lines, not model numbers
MIN_SUBSTRING_CHARS = 5  # a shorter code inside another text is too often an accident

# Units as titles write them -> one canonical unit, so "64g" == "64 GB" and 24' == 24 英寸.
# A "g" after a number is storage in phone and memory titles far more often than grams.
_UNIT_ALIASES = {
    "g": "gb", "gb": "gb", "tb": "tb", "mb": "mb", "mah": "mah", "毫安": "mah", "kg": "kg",
    "千克": "kg", "mm": "mm", "cm": "cm", "ml": "ml", "毫升": "ml", "l": "l", "升": "l", "w": "w",
    "瓦": "w", "hz": "hz", "khz": "khz", "mhz": "mhz", "ghz": "ghz", "mp": "mp", "'": "in",
    '"': "in", "''": "in", "in": "in", "inch": "in", "英寸": "in", "寸": "in", "v": "v", "lb": "lb",
    "lbs": "lb", "oz": "oz", "ft": "ft", "x": "x", "bit": "bit", "fps": "fps", "p": "p",
}
_UNIT_RE = re.compile(
    r"(?<![a-z0-9.])(\d+(?:\.\d+)?)\s?("
    + "|".join(re.escape(u) for u in sorted(_UNIT_ALIASES, key=lambda u: (-len(u), u)))
    + r")(?![a-z0-9])"
)
_QUANTITY_TOKEN_RE = re.compile(r"^\d+(?:\.\d+)?(?:" + "|".join(
    re.escape(u) for u in sorted(_UNIT_ALIASES, key=lambda u: (-len(u), u)) if u.isalpha()
) + r")$")
_COMPOUND_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_NUMBER_RE = re.compile(r"(?<![\d.])\d+(?:\.\d+)?")
_NOT_ALNUM_RE = re.compile(r"[^a-z0-9]+")
_PUNCT_RE = re.compile(r"[^\w]+")
_HAS_LETTER = re.compile(r"[a-z]")
_HAS_DIGIT = re.compile(r"\d")

# Editions and platforms: what tells two listings of one product line apart (software and
# phones above all: "Office 2007 Professional" / "Standard", "iPhone 15" / "iPhone 15 Pro").
EDITIONS = frozenset({
    "pro", "professional", "standard", "std", "home", "premium", "ultimate", "enterprise", "upgrade", "upg",
    "academic", "student", "deluxe", "basic", "plus", "lite", "express", "server", "business", "oem", "retail",
    "family", "suite", "complete", "gold", "platinum", "elements", "essentials", "edu", "education", "license",
    "max", "mini", "ultra",
})
EDITIONS_ZH = {
    "专业版": "pro", "标准版": "standard", "家庭版": "home", "旗舰版": "ultimate", "企业版": "enterprise",
    "升级版": "upgrade", "学生版": "student", "教育版": "academic", "豪华版": "deluxe", "基础版": "basic",
    "青春版": "lite", "尊享版": "premium", "至尊版": "premium", "高配版": "pro", "标配版": "standard",
}
PLATFORMS = {"mac": "mac", "macintosh": "mac", "osx": "mac", "win": "win", "windows": "win", "pc": "win", "linux": "linux"}
_WORD_RE = re.compile(r"[a-z]+")

# Chinese brand names -> the Latin name titles also use (苹果 iPhone == Apple iPhone).
BRAND_ALIASES = {
    "苹果": "apple", "华为": "huawei", "小米": "xiaomi", "三星": "samsung", "索尼": "sony",
    "联想": "lenovo", "戴尔": "dell", "惠普": "hp", "佳能": "canon", "尼康": "nikon",
    "微软": "microsoft", "飞利浦": "philips", "松下": "panasonic", "海尔": "haier", "美的": "midea",
    "格力": "gree", "耐克": "nike", "阿迪达斯": "adidas", "荣耀": "honor", "魅族": "meizu",
    "罗技": "logitech", "东芝": "toshiba", "夏普": "sharp", "博世": "bosch", "西门子": "siemens",
    "奥迪": "audi", "宝马": "bmw", "雅诗兰黛": "estee", "欧莱雅": "loreal", "华硕": "asus",
}


@dataclass
class CatalogStats:
    """Document frequencies over a catalog: text tokens and title character n-grams.

    Built from every listing of the catalog (no label read); the IDF of a pair's tokens comes
    from here, so "lg" is weak and "lds4821ww" strong in any shop.
    """

    n: int
    token_df: dict[str, int] = field(default_factory=dict)
    gram_df: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_listings(cls, listings: Sequence[Listing]) -> CatalogStats:
        """Count, per token and per title 3-gram, how many ``listings`` contain it."""
        tokens, grams = Counter(), Counter()
        for listing in listings:
            tokens.update(set(_tokens(listing.title)) | set(_tokens(listing.description)))
            grams.update(set(_char_grams(listing.title)))
        return cls(n=len(listings), token_df=dict(tokens), gram_df=dict(grams))

    def idf(self, df: np.ndarray) -> np.ndarray:
        """Smoothed IDF ``ln((1 + n) / (1 + df)) + 1``: positive, unseen tokens highest."""
        return np.log((1.0 + self.n) / (1.0 + np.asarray(df, np.float64))) + 1.0


@dataclass
class PreparedListings:
    """What the features need of each listing, computed once (rows follow the input order)."""

    title_binary: object  # scipy CSR (n, vocab) 0/1 title tokens
    token_idf: np.ndarray  # (vocab,) IDF of each column of title_binary
    text_tfidf: object  # CSR (n, vocab2) unit TF-IDF rows of title + description tokens
    grams_tfidf: object  # CSR (n, grams) unit TF-IDF rows of title 3-grams
    title_length: np.ndarray  # (n,) title tokens
    title_models: list[frozenset[str]]
    compact_text: list[str]  # title + description, lower-case letters and digits only
    numbers: list[frozenset[str]]
    quantities: list[dict[str, frozenset[str]]]
    brands: list[str]
    brand_given: np.ndarray  # (n,) bool: the brand field was filled
    title_words: list[frozenset[str]]
    title_tokens: list[frozenset[str]]
    text_tokens: list[frozenset[str]]
    token_idf_of: dict[str, float]  # share of the highest IDF (an unseen token: 1.0)
    prices: np.ndarray  # (n,) nan when missing
    editions: list[frozenset[str]]
    platforms: list[frozenset[str]]
    text_vectors: np.ndarray  # (n, d) unit rows, zeros when missing
    image_vectors: np.ndarray | None

    def __len__(self) -> int:
        return len(self.prices)


def _normalize(text: str) -> str:
    return default_pipeline().normalize(text or "")


def _tokens(text: str) -> list[str]:
    return default_pipeline().tokenize(text or "")


def _char_grams(title: str) -> list[str]:
    text = f" {_PUNCT_RE.sub(' ', _normalize(title)).strip()} "
    return [text[i:i + CHAR_N] for i in range(len(text) - CHAR_N + 1)] if text.strip() else []


def _canonical_number(text: str) -> str:
    value = float(text)
    return str(int(value)) if value.is_integer() else repr(value)


def _is_model(code: str) -> bool:
    return (
        len(code) >= MIN_MODEL_CHARS and bool(_HAS_LETTER.search(code)) and bool(_HAS_DIGIT.search(code))
        and not _QUANTITY_TOKEN_RE.match(code) and code.isascii()
    )


def model_numbers(title: str) -> frozenset[str]:
    """Return the model-number-like codes of a title, hyphens and spaces removed.

    A code mixes letters and digits and has at least ``MIN_MODEL_CHARS`` characters and is not
    a quantity ("128gb"): "dvd-2930ci" gives "dvd2930ci" and "2930ci"; "iPhone 15" gives
    "iphone15" (the text pipeline joins a word and a short number).
    """
    text = _normalize(title)
    codes = set()
    for match in _COMPOUND_RE.finditer(text):
        parts = match.group().split("-")
        candidates = ["".join(parts)] + (parts if len(parts) > 1 else [])
        codes.update(c for c in candidates if _is_model(c))
    # The pipeline joins a word and a short number across a space ("iphone 15" -> iphone15),
    # but not where the number is a quantity ("lg 24 '" is a 24-inch LG, not model lg24).
    sizes = {v for values in quantities(title).values() for v in values}
    for token in _tokens(title):
        joined = re.fullmatch(r"([a-z]+)(\d+)", token)
        if _is_model(token) and not (joined and token not in codes and joined.group(2) in sizes):
            codes.add(token)
    return frozenset(codes)


def quantities(title: str) -> dict[str, frozenset[str]]:
    """Return ``{canonical unit: values}`` of the quantities in a title ("64G" -> {"gb": {"64"}})."""
    found: dict[str, set[str]] = {}
    for value, unit in _UNIT_RE.findall(_normalize(title)):
        found.setdefault(_UNIT_ALIASES[unit], set()).add(_canonical_number(value))
    return {unit: frozenset(values) for unit, values in found.items()}


def editions(title: str) -> frozenset[str]:
    """The edition words of a title ("professional", "专业版" -> "pro"...)."""
    text = _normalize(title)
    found = {w for w in _WORD_RE.findall(text) if w in EDITIONS}
    return frozenset(found | {latin for word, latin in EDITIONS_ZH.items() if word in text})


def platforms(title: str) -> frozenset[str]:
    """The platforms a title names ("mac", "win", "linux")."""
    return frozenset(PLATFORMS[w] for w in _WORD_RE.findall(_normalize(title)) if w in PLATFORMS)


def brand_of(listing: Listing) -> tuple[str, bool]:
    """Return (brand, given): the brand field's first token, else the title's, with aliases applied."""
    given = _tokens(listing.brand)
    tokens = given or _tokens(listing.title)
    if not tokens:
        return "", False
    first = tokens[0]
    # "apple13" (the pipeline joined a word and a number): the brand is the word.
    first = re.sub(r"\d+$", "", first) or first
    return BRAND_ALIASES.get(first, first), bool(given)


def _csr(rows: list[dict[int, float]], width: int):
    from scipy import sparse

    indptr, indices, values = [0], [], []
    for row in rows:
        indices.extend(row)
        values.extend(row.values())
        indptr.append(len(indices))
    return sparse.csr_matrix((np.asarray(values, np.float64), np.asarray(indices, np.int64), indptr), shape=(len(rows), width))


def _unit_rows(counts: list[Counter], df: dict[str, int], stats: CatalogStats):
    """Unit-length TF-IDF CSR rows of ``counts`` (columns: every term seen here) and the IDF per column."""
    vocab = {term: j for j, term in enumerate(sorted({t for c in counts for t in c}))}
    idf = stats.idf(np.array([df.get(term, 0) for term in vocab], np.float64)) if vocab else np.zeros(0)
    rows = []
    for c in counts:
        weights = {vocab[t]: tf * idf[vocab[t]] for t, tf in c.items()}
        norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
        rows.append({j: w / norm for j, w in weights.items()})
    return _csr(rows, len(vocab)), vocab, idf


def _unit_vectors(vectors: np.ndarray | None, n: int) -> np.ndarray | None:
    if vectors is None:
        return None
    vectors = np.asarray(vectors, np.float32)
    if vectors.shape[0] != n:
        raise ValueError(f"got {vectors.shape[0]} vectors for {n} listings; pass one row per listing (zeros when missing)")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.where(norms > 0, vectors / np.maximum(norms, 1e-12), 0.0).astype(np.float32)


def prepare_listings(
    listings: Sequence[Listing], stats: CatalogStats, text_vectors: np.ndarray | None = None,
    image_vectors: np.ndarray | None = None,
) -> PreparedListings:
    """Compute each listing's tokens, codes, quantities and sparse rows once.

    Args:
        listings: the listings pairs will refer to by index.
        stats: the catalog's document frequencies (``CatalogStats.from_listings``).
        text_vectors: (n, d) stored text vectors (rows of zeros: none); None: no text vectors.
        image_vectors: (n, d) stored image vectors (rows of zeros: no photo); None: no photos.
    """
    n = len(listings)
    title_tokens = [_tokens(l.title) for l in listings]
    text_tokens = [t + _tokens(l.description) for t, l in zip(title_tokens, listings)]
    title_sets = [Counter(set(t)) for t in title_tokens]
    title_binary, _, token_idf = _unit_rows(title_sets, stats.token_df, stats)
    title_binary.data[:] = 1.0  # binary membership; the IDF is applied per column when summing
    text_tfidf, _, _ = _unit_rows([Counter(t) for t in text_tokens], stats.token_df, stats)
    grams_tfidf, _, _ = _unit_rows([Counter(_char_grams(l.title)) for l in listings], stats.gram_df, stats)
    brands = [brand_of(l) for l in listings]
    text = _unit_vectors(text_vectors, n)
    return PreparedListings(
        title_binary=title_binary, token_idf=token_idf, text_tfidf=text_tfidf, grams_tfidf=grams_tfidf,
        title_length=np.array([len(t) for t in title_tokens], np.float64),
        title_models=[model_numbers(l.title) for l in listings],
        compact_text=[_NOT_ALNUM_RE.sub("", _normalize(f"{l.title} {l.description}")) for l in listings],
        numbers=[frozenset(_canonical_number(x) for x in _NUMBER_RE.findall(_normalize(l.title))) for l in listings],
        quantities=[quantities(l.title) for l in listings],
        brands=[b for b, _ in brands], brand_given=np.array([g for _, g in brands], bool),
        title_words=[frozenset(t) | frozenset(re.sub(r"\d+$", "", w) for w in t) for t in title_tokens],
        title_tokens=[frozenset(t) for t in title_tokens], text_tokens=[frozenset(t) for t in text_tokens],
        token_idf_of=_relative_idf({t for tokens in text_tokens for t in tokens}, stats),
        prices=np.array([l.price if l.price else np.nan for l in listings], np.float64),
        editions=[editions(l.title) for l in listings], platforms=[platforms(l.title) for l in listings],
        text_vectors=text if text is not None else np.zeros((n, 1), np.float32),
        image_vectors=_unit_vectors(image_vectors, n),
    )


def _relative_idf(tokens: Iterable[str], stats: CatalogStats) -> dict[str, float]:
    tokens = sorted(tokens)
    idf = stats.idf(np.array([stats.token_df.get(t, 0) for t in tokens], np.float64)) / stats.idf(0.0)
    return dict(zip(tokens, idf.tolist()))


def _unmatched(p: PreparedListings, i: int, j: int) -> tuple[float, float]:
    idf = p.token_idf_of
    a = max((idf[t] for t in p.title_tokens[i] - p.text_tokens[j]), default=0.0)
    b = max((idf[t] for t in p.title_tokens[j] - p.text_tokens[i]), default=0.0)
    return max(a, b), min(a, b)


def _rowwise_dot(matrix, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    return np.asarray(matrix[left].multiply(matrix[right]).sum(axis=1)).ravel()


def _vector_cosine(vectors: np.ndarray | None, left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if vectors is None:
        return np.zeros(len(left)), np.ones(len(left))
    a, b = vectors[left], vectors[right]
    present = (np.abs(a).sum(axis=1) > 0) & (np.abs(b).sum(axis=1) > 0)
    return np.where(present, np.einsum("ij,ij->i", a, b), 0.0), (~present).astype(np.float64)


def _common_prefix_share(a: str, b: str) -> float:
    size = 0
    for x, y in zip(a, b):
        if x != y:
            break
        size += 1
    return size / max(len(a), len(b))


def _model_features(p: PreparedListings, i: int, j: int) -> tuple[float, float, float, float, float]:
    a, b = p.title_models[i], p.title_models[j]
    in_text = any(c in p.compact_text[j] for c in a if len(c) >= MIN_SUBSTRING_CHARS) or any(
        c in p.compact_text[i] for c in b if len(c) >= MIN_SUBSTRING_CHARS
    )
    if not a or not b:
        return 0.0, float(in_text), 0.0, 1.0, 0.0
    match = bool(a & b)
    similarity = 1.0 if match else max(_common_prefix_share(x, y) for x in a for y in b)
    conflict = not match and not in_text
    return float(match), float(in_text), float(conflict), 0.0, similarity


def _edition_features(p: PreparedListings, i: int, j: int) -> tuple[float, ...]:
    ea, eb = p.editions[i], p.editions[j]
    pa, pb = p.platforms[i], p.platforms[j]
    na, nb = p.numbers[i], p.numbers[j]
    either = ea | eb
    return (
        float(bool(ea) and bool(eb) and not ea & eb),
        float(bool(ea) != bool(eb)),
        len(ea ^ eb) / len(either) if either else 0.0,
        float(bool(pa) and bool(pb) and not pa & pb),
        float(bool(na) and bool(nb) and na != nb),
    )


def _set_features(p: PreparedListings, i: int, j: int) -> tuple[float, ...]:
    na, nb = p.numbers[i], p.numbers[j]
    number_jaccard = len(na & nb) / len(na | nb) if na and nb else 0.0
    number_conflict = float(bool(na) and bool(nb) and not (na & nb))
    qa, qb = p.quantities[i], p.quantities[j]
    shared = [u for u in qa if u in qb]
    unit_match = float(any(qa[u] & qb[u] for u in shared))
    unit_conflict = float(any(not (qa[u] & qb[u]) for u in shared))
    ba, bb = p.brands[i], p.brands[j]
    brand_match = bool(ba) and bool(bb) and (ba == bb or ba in p.title_words[j] or bb in p.title_words[i])
    brand_conflict = bool(ba) and bool(bb) and not brand_match and bool(p.brand_given[i] or p.brand_given[j])
    return number_jaccard, number_conflict, unit_match, unit_conflict, float(brand_match), float(brand_conflict)


def pair_features(
    prepared: PreparedListings, left: Sequence[int] | np.ndarray, right: Sequence[int] | np.ndarray,
    ranks: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Return the (pairs, len(FEATURES)) float32 rows of the pairs ``(left[i], right[i])``.

    Args:
        prepared: ``prepare_listings`` of the listings the indices point into.
        left, right: row indices into ``prepared``, one pair per position.
        ranks: (rank of b among a's nearest, rank of a among b's), 1 = nearest, 0 = not
            among the nearest ``RANK_K`` or unknown (``neighbour_ranks`` computes them
            exactly offline; the web process reads them off its nearest-neighbour query).
    """
    left, right = np.asarray(left, np.int64), np.asarray(right, np.int64)
    if left.shape != right.shape:
        raise ValueError("left and right must hold one index per pair each")
    out = np.zeros((len(left), len(FEATURES)), np.float64)
    if len(left) == 0:
        return out.astype(np.float32)
    col = INDEX
    out[:, col["text_cosine"]], out[:, col["text_missing"]] = _vector_cosine(prepared.text_vectors, left, right)
    out[:, col["image_cosine"]], out[:, col["image_missing"]] = _vector_cosine(prepared.image_vectors, left, right)
    if ranks is not None:
        for name, rank in zip(("rank_ab", "rank_ba"), ranks):
            rank = np.asarray(rank, np.float64)
            out[:, col[name]] = np.where((rank >= 1) & (rank <= RANK_K), 1.0 / np.maximum(rank, 1.0), 0.0)

    binary = prepared.title_binary
    shared = binary[left].multiply(binary[right])
    shared_count = np.asarray(shared.sum(axis=1)).ravel()
    shared_idf = shared @ prepared.token_idf
    count_a, count_b = (np.asarray(binary[x].sum(axis=1)).ravel() for x in (left, right))
    idf_a, idf_b = binary[left] @ prepared.token_idf, binary[right] @ prepared.token_idf
    union = count_a + count_b - shared_count
    union_idf = idf_a + idf_b - shared_idf
    out[:, col["title_jaccard"]] = np.divide(shared_count, union, out=np.zeros_like(union), where=union > 0)
    out[:, col["title_idf_jaccard"]] = np.divide(shared_idf, union_idf, out=np.zeros_like(union_idf), where=union_idf > 0)
    smaller = np.minimum(idf_a, idf_b)
    out[:, col["title_idf_containment"]] = np.divide(shared_idf, smaller, out=np.zeros_like(smaller), where=smaller > 0)
    out[:, col["title_char_cosine"]] = _rowwise_dot(prepared.grams_tfidf, left, right)
    out[:, col["text_idf_cosine"]] = _rowwise_dot(prepared.text_tfidf, left, right)

    models = np.array([_model_features(prepared, i, j) for i, j in zip(left.tolist(), right.tolist())])
    names = ("model_match", "model_in_text", "model_conflict", "model_missing", "model_similarity")
    out[:, [col[n] for n in names]] = models
    sets = np.array([_set_features(prepared, i, j) for i, j in zip(left.tolist(), right.tolist())])
    names = ("number_jaccard", "number_conflict", "unit_match", "unit_conflict", "brand_match", "brand_conflict")
    out[:, [col[n] for n in names]] = sets

    pa, pb = prepared.prices[left], prepared.prices[right]
    priced = np.isfinite(pa) & np.isfinite(pb)
    ratio = np.abs(np.log(np.where(priced, pa, 1.0) / np.where(priced, pb, 1.0)))
    out[:, col["price_log_ratio"]] = np.minimum(ratio, PRICE_CAP)
    out[:, col["price_missing"]] = (~priced).astype(np.float64)
    out[:, [col["unmatched_idf_max"], col["unmatched_idf_min"]]] = np.array(
        [_unmatched(prepared, i, j) for i, j in zip(left.tolist(), right.tolist())]
    )
    names = ("edition_conflict", "edition_one_sided", "edition_distance", "platform_conflict", "number_mismatch")
    out[:, [col[n] for n in names]] = np.array(
        [_edition_features(prepared, i, j) for i, j in zip(left.tolist(), right.tolist())]
    ).reshape(len(left), len(names))
    la, lb = prepared.title_length[left], prepared.title_length[right]
    longer = np.maximum(la, lb)
    out[:, col["title_length_ratio"]] = np.divide(np.minimum(la, lb), longer, out=np.zeros_like(longer), where=longer > 0)
    return out.astype(np.float32)


def neighbour_ranks(
    vectors: np.ndarray, left: Sequence[int] | np.ndarray, right: Sequence[int] | np.ndarray, *, chunk: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """Exact ranks by cosine among every row of ``vectors`` (offline; the web process asks its index).

    Returns:
        (rank of right[i] among left[i]'s neighbours, rank of left[i] among right[i]'s),
        1 = nearest other row (ties counted in the pair's favour), 0 when either vector is
        missing.
    """
    vectors = _unit_vectors(vectors, len(vectors))
    left, right = np.asarray(left, np.int64), np.asarray(right, np.int64)
    present = np.abs(vectors).sum(axis=1) > 0

    def ranks(queries: np.ndarray, targets: np.ndarray) -> np.ndarray:
        out = np.zeros(len(queries), np.int64)
        order = np.argsort(queries, kind="stable")
        for start in range(0, len(order), chunk):
            rows = order[start:start + chunk]
            scores = vectors[queries[rows]] @ vectors.T
            scores[:, ~present] = -np.inf
            scores[np.arange(len(rows)), queries[rows]] = -np.inf  # a listing is not its own neighbour
            target = scores[np.arange(len(rows)), targets[rows]]
            out[rows] = (scores > target[:, None]).sum(axis=1) + 1
        valid = present[queries] & present[targets]
        return np.where(valid, out, 0)

    return ranks(left, right), ranks(right, left)
