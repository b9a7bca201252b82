"""Clustering and merchandiser suggestions on a small synthetic catalog (pure; no database)."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score, silhouette_score
from threadpoolctl import threadpool_limits

from similarity.ml import clusters as clusters_module
from similarity.ml.clusters import (
    choose_k_and_cluster,
    cluster_catalog,
    cosine_silhouette,
    default_k_candidates,
    describe,
    suggest,
)
from similarity.ml.text_pipeline import tokenize

DRESSES, PHONES, COOKWARE = "服装 > 女装 > 连衣裙", "Electronics > Phones", "Home > Kitchen > Cookware"
PER_GROUP = 15
UNLABELLED_DRESSES = [3, 8, 12]  # rows of group 0 without a category
MISLABELLED_PHONES = [PER_GROUP + 4, PER_GROUP + 10]  # rows of group 1 filed under cookware


def _texts(group: int, i: int) -> str:
    colours_zh = ["红色", "白色", "蓝色", "黑色", "粉色"]
    colours_en = ["black", "blue", "pink", "white", "green"]
    if group == 0:
        return f"{colours_zh[i % 5]}{['碎花', '雪纺', '蕾丝'][i % 3]}连衣裙 女 夏季{['长款', '短款'][i % 2]}"
    if group == 1:
        return f"Apple iPhone 15 {['128GB', '256GB', '512GB'][i % 3]} {colours_en[i % 5]} smartphone"
    if group == 2:
        return f"Non-stick frying pan {[24, 26, 28][i % 3]}cm {['cast iron', 'aluminium', 'steel'][i % 3]}"
    return f"{['透气', '轻便', '减震'][i % 3]}跑步鞋 {['男', '女'][i % 2]} running sneakers {colours_en[i % 5]}"


@pytest.fixture(scope="module")
def catalog():
    """60 products in 4 well-separated groups; group 3 has no category at all."""
    rng = np.random.default_rng(7)
    dim = 16
    groups = np.repeat(np.arange(4), PER_GROUP)
    vectors = np.eye(dim)[groups] + rng.normal(0, 0.12, (len(groups), dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    texts = [_texts(g, i) for i, g in enumerate(groups)]
    labels = [[DRESSES, PHONES, COOKWARE, ""][g] for g in groups]
    for row in UNLABELLED_DRESSES:
        labels[row] = ""
    for row in MISLABELLED_PHONES:
        labels[row] = COOKWARE
    return vectors.astype(np.float32), texts, labels, groups


@pytest.fixture(scope="module")
def result(catalog):
    vectors, texts, labels, _ = catalog
    return cluster_catalog(vectors, texts, labels, tokenize)


def _cluster_of_group(result, groups, group):
    owners = {result.fit.labels[row] for row in np.flatnonzero(groups == group)}
    assert len(owners) == 1
    return result.clusters[owners.pop()]


def test_k_is_chosen_by_silhouette_and_recovers_the_groups(catalog, result):
    _, _, _, groups = catalog
    fit = result.fit
    assert fit.k == 4
    assert max(fit.scores, key=fit.scores.get) == 4
    assert set(fit.scores) == set(default_k_candidates(60))
    assert normalized_mutual_info_score(groups, fit.labels) == pytest.approx(1.0)
    assert (fit.method, fit.sample_size, fit.search_size) == ("kmeans", 60, 60)
    assert fit.centres.shape == (4, 16)
    assert np.allclose(np.linalg.norm(fit.centres, axis=1), 1.0, atol=1e-5)
    assert all(type(x) is int for x in fit.labels)


def test_describe_names_members_and_purity(catalog, result):
    vectors, _, _, groups = catalog
    expected = {0: "连衣裙", 1: "iphone15", 2: "pan", 3: "跑步"}
    for group, word in expected.items():
        cluster = _cluster_of_group(result, groups, group)
        assert word in cluster.name.split(), (group, cluster.name, cluster.keywords)
        assert word in cluster.keywords[:3]
        assert sorted(cluster.members) == np.flatnonzero(groups == group).tolist()
        assert cluster.distances == sorted(cluster.distances)
        centre = result.fit.centres[cluster.index]
        assert cluster.distances[0] == pytest.approx(1 - float(vectors[cluster.members[0]] @ centre), abs=1e-5)
        assert len(cluster.name.split()) == 3
    dresses = _cluster_of_group(result, groups, 0)
    assert (dresses.majority_label, dresses.labelled, dresses.purity) == (DRESSES, 12, 1.0)
    phones = _cluster_of_group(result, groups, 1)
    assert phones.majority_label == PHONES
    assert phones.purity == pytest.approx(13 / 15, abs=1e-4)
    assert phones.label_counts == {PHONES: 13, COOKWARE: 2}
    shoes = _cluster_of_group(result, groups, 3)
    assert (shoes.majority_label, shoes.purity, shoes.labelled) == ("", 0.0, 0)


def test_words_every_cluster_uses_are_not_keywords():
    # "sale" is in every text: it sets no cluster apart.
    vectors = np.repeat(np.eye(2), 5, axis=0).astype(np.float32)
    texts = ["sale dress"] * 5 + ["sale phone"] * 5
    fit = choose_k_and_cluster(vectors, k=2)
    clusters = describe(fit, vectors, texts, [""] * 10, str.split)
    assert sorted(c.keywords[0] for c in clusters) == ["dress", "phone"]
    assert all("sale" not in c.keywords for c in clusters)


def test_suggestions_assign_move_and_create(catalog, result):
    _, _, _, groups = catalog
    by_kind = {}
    for s in result.suggestions:
        by_kind.setdefault(s.kind, []).append(s)
    assert sorted(by_kind) == ["assign", "create", "move"]
    assert [len(v) for v in by_kind.values()] == [1, 1, 1]

    (assign,) = by_kind["assign"]
    assert sorted(assign.members) == UNLABELLED_DRESSES
    assert assign.target_label == DRESSES and assign.source_label == ""
    assert assign.text.startswith(f'Assign these 3 uncategorised products to "{DRESSES}"')

    (move,) = by_kind["move"]
    assert sorted(move.members) == MISLABELLED_PHONES
    assert (move.source_label, move.target_label) == (COOKWARE, PHONES)
    assert move.text == f'Move these 2 products from "{COOKWARE}" to "{PHONES}".'

    (create,) = by_kind["create"]
    shoes = _cluster_of_group(result, groups, 3)
    assert create.cluster == shoes.index
    assert sorted(create.members) == np.flatnonzero(groups == 3).tolist()
    assert "跑步" in create.name.split() and create.parent == ""
    assert create.target_label == create.name
    assert create.text == f'Create new category "{create.name}" under the top level for these 15 products.'


def test_create_goes_under_the_parent_most_members_share():
    cluster = clusters_module.Cluster(
        index=0, members=[0, 1, 2, 3], distances=[0.0] * 4, keywords=["mugs"], name="mugs",
        majority_label="Home > Kitchen > Cups", purity=0.5, size=4, labelled=4, majority_count=2,
        label_counts={"Home > Kitchen > Cups": 2, "Home > Kitchen > Plates": 1, "Toys": 1},
    )
    labels = ["Home > Kitchen > Cups", "Home > Kitchen > Cups", "Home > Kitchen > Plates", "Toys"]
    # all four are categorised, in no clear majority: left alone unless asked
    assert suggest([cluster], labels) == []
    (create,) = suggest([cluster], labels, create_min_unlabelled=0)
    assert (create.kind, create.parent, create.target_label) == ("create", "Home > Kitchen", "Home > Kitchen > mugs")
    assert create.text == 'Create new category "mugs" under "Home > Kitchen" for these 4 products.'
    # now "Cups" is a clear majority; the only "Plates" and "Toys" products are here, so no move
    assert suggest([cluster], labels, min_purity=0.5) == []
    assert [s.kind for s in suggest([cluster], labels, min_purity=0.5, max_stray_share=1)] == ["move", "move"]
    assert suggest([cluster], labels, min_size=5) == []


def test_no_move_when_the_cluster_is_the_home_of_the_minority_category():
    # 4 of the 5 "Nebulisers" products sit in this cluster: it merged two categories.
    labels = ["Oxygen"] * 6 + ["Nebulisers"] * 4 + ["Toys", "Nebulisers", "Toys", "Toys"]
    cluster = clusters_module.Cluster(
        index=0, members=list(range(11)), distances=[0.0] * 11, keywords=[], name="", majority_label="Oxygen",
        purity=6 / 11, size=11, labelled=11, majority_count=6, label_counts={},
    )
    moves = suggest([cluster], labels, min_purity=0.5)
    assert [(s.source_label, s.members) for s in moves] == [("Toys", [10])]
    assert len(suggest([cluster], labels, min_purity=0.5, max_stray_share=0.8)) == 2


def test_no_move_out_of_a_subcategory_of_the_majority():
    labels = ["Home > Kitchen", "Home > Kitchen", "Home > Kitchen", "Home > Kitchen > Pans", "Toys", "Toys"]
    cluster = clusters_module.Cluster(
        index=0, members=[0, 1, 2, 3, 4], distances=[0.0] * 5, keywords=[], name="", majority_label="Home > Kitchen",
        purity=0.6, size=5, labelled=5, majority_count=3, label_counts={},
    )
    moves = suggest([cluster], labels)
    assert [(s.kind, s.members, s.source_label) for s in moves] == [("move", [4], "Toys")]


def test_a_single_labelled_member_is_not_a_majority():
    labels = ["Toys", "", "", ""]
    cluster = clusters_module.Cluster(
        index=0, members=[0, 1, 2, 3], distances=[0.0] * 4, keywords=["kites"], name="kites",
        majority_label="Toys", purity=1.0, size=4, labelled=1, majority_count=1, label_counts={"Toys": 1},
    )
    assert [s.kind for s in suggest([cluster], labels)] == ["create"]
    assert [s.kind for s in suggest([cluster], labels, min_votes=1)] == ["assign"]


def test_fit_on_a_sample_then_predict_every_row(catalog, monkeypatch):
    vectors, _, _, groups = catalog
    monkeypatch.setattr(clusters_module, "SMALL", 10)
    with threadpool_limits(1):  # OpenMP start-up per mini-batch dominates on tiny data
        fit = choose_k_and_cluster(vectors, k_candidates=[2, 3, 4, 6, 8], sample=40, search_sample=30, seed=3)
    assert (fit.method, fit.sample_size, fit.search_size, fit.k) == ("minibatch-kmeans", 40, 30, 4)
    assert max(fit.scores, key=fit.scores.get) == 4
    assert len(fit.labels) == 60
    assert normalized_mutual_info_score(groups, fit.labels) == pytest.approx(1.0)


def test_fixed_k_and_determinism(catalog):
    vectors, _, _, groups = catalog
    fit = choose_k_and_cluster(vectors, k=6, seed=1)
    assert fit.k == 6 and list(fit.scores) == [6]
    assert fit.scores[6] < choose_k_and_cluster(vectors, k=4).scores[4]
    assert choose_k_and_cluster(vectors, k=6, seed=1).labels == fit.labels
    # every group split, never merged: each cluster holds one group only
    for c in range(6):
        assert len(set(groups[np.asarray(fit.labels) == c])) == 1


def test_graph_communities_find_the_groups_without_a_k_search(catalog):
    vectors, texts, labels, groups = catalog
    fit = choose_k_and_cluster(vectors, method="graph", seed=2)
    assert (fit.k, fit.method, fit.criterion, fit.search_size) == (4, "louvain", "modularity (kNN graph)", 60)
    assert normalized_mutual_info_score(groups, fit.labels) == pytest.approx(1.0)
    assert list(fit.scores) == [4] and fit.scores[4] > 0.5  # silhouette of the partition, for the record
    assert np.allclose(np.linalg.norm(fit.centres, axis=1), 1.0, atol=1e-5)
    assert choose_k_and_cluster(vectors, method="graph", seed=2).labels == fit.labels
    assert choose_k_and_cluster(vectors, method="graph", k=6).k == 6  # k given: plain k-means
    result = cluster_catalog(vectors, texts, labels, tokenize, method="graph")
    assert result.fit.k == 4 and {s.kind for s in result.suggestions} == {"assign", "move", "create"}
    with pytest.raises(ValueError, match="unknown clustering method"):
        choose_k_and_cluster(vectors, method="dbscan")


def test_graph_communities_on_a_sample_assign_the_rest_to_the_nearest_centre(catalog):
    vectors, _, _, groups = catalog
    fit = choose_k_and_cluster(vectors, method="graph", search_sample=32, seed=0)
    assert (fit.k, fit.search_size, len(fit.labels)) == (4, 32, 60)
    assert normalized_mutual_info_score(groups, fit.labels) == pytest.approx(1.0)


def test_cosine_silhouette_matches_sklearn():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 8))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = rng.integers(0, 4, size=50)
    labels[7] = 9  # a singleton cluster scores 0 in both
    expected = silhouette_score(vectors, labels, metric="cosine")
    assert cosine_silhouette(vectors, labels) == pytest.approx(expected, abs=1e-9)


def test_default_grid_and_bad_input():
    assert default_k_candidates(60)[0] == 2 and default_k_candidates(60)[-1] == 22
    assert default_k_candidates(100_000)[-1] == 200
    assert default_k_candidates(2) == []
    with pytest.raises(ValueError, match="zero vectors"):
        choose_k_and_cluster(np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="out of range"):
        choose_k_and_cluster(np.eye(3), k=5)
    with pytest.raises(ValueError, match="no usable k"):
        choose_k_and_cluster(np.eye(3), k_candidates=[7])
    with pytest.raises(TypeError, match="unknown option"):
        cluster_catalog(np.eye(3), ["a", "b", "c"], ["", "", ""], str.split, purity=0.5)
    tiny = choose_k_and_cluster(np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert (tiny.k, tiny.labels, tiny.scores) == (1, [0, 0], {})
