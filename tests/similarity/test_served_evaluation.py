"""The evaluation through the served code: similar_to and suggest, held-out categories hidden."""
from __future__ import annotations

from unittest import mock

import pytest

from similarity.indexing.writer import encode_objects
from similarity.learning.evaluation import evaluate_served
from similarity.ml.evaluation import is_held_out
from similarity.models import CatalogFit
from similarity.tasks import encode_task
from tests.factories import GADGET, image_bytes, make_gadget

pytestmark = pytest.mark.django_db

# Each category has its own title words and photo colour: neighbours are exact.
KINDS = {
    "数码 > 手机": ("华为 手机 mate60", (30, 30, 200)),
    "数码 > 耳机": ("蓝牙 耳机 降噪", (40, 200, 40)),
    "食品 > 茶叶": ("西湖 龙井 绿茶", (200, 40, 40)),
}


@pytest.fixture
def catalog():
    made = []
    with mock.patch.object(encode_task, "apply_async"):
        for path, (title, colour) in KINDS.items():
            made += [make_gadget(f"{title[:2]}-{i}", title, shelf=path, image=image_bytes(colour)) for i in range(14)]
        # A category only held-out items have: nothing visible can suggest it.
        secret = [code for code in (f"秘密-{i}" for i in range(60)) if is_held_out(code)][:3]
        made += [make_gadget(code, "神秘 礼盒 限定", shelf="礼品 > 秘密", image=image_bytes((120, 120, 120))) for code in secret]
        encode_objects(GADGET, [g.pk for g in made])
    return made


def test_every_row_and_level_is_measured_through_similar_to(catalog):
    report = evaluate_served(GADGET)
    held = [g for g in catalog if is_held_out(g.code)]
    assert report["held_out"] == len(held) and report["items"] == len(catalog)
    # No learned model: the served vectors are the fixed fusion; the test settings turn lexical off.
    assert set(report["rows"]) == {"image only", "text only", "fixed-weight fusion"}
    for row in report["rows"].values():
        assert set(row) == {"1", "2"}
        assert row["2"]["p@1"] == 1.0  # the nearest item shares the category
        assert row["2"]["queries"] == len(held)
    # 14 items per category, 13 others: a list of 10 is all same-category where categories are big.
    big = [g for g in held if not g.code.startswith("秘密")]
    fixed = report["rows"]["fixed-weight fusion"]["2"]
    expected_p10 = (len(big) * 1.0 + 3 * (2 / 10)) / len(held)  # a secret item finds its 2 siblings, then strangers
    assert fixed["p@10"] == pytest.approx(expected_p10)
    share = report["held_out_share"]["fixed-weight fusion"]
    assert 0 <= share["share"] <= 1 and share["expected"] == pytest.approx((len(held) - 1) / (len(catalog) - 1), abs=1e-4)


def test_suggestions_hide_the_held_out_categories(catalog):
    report = evaluate_served(GADGET)
    level2 = report["suggestions"]["2"]
    held = [g for g in catalog if is_held_out(g.code)]
    assert level2["queries"] == len(held)
    assert level2["queries_whose_category_is_known"] == len(held) - 3  # 礼品 > 秘密 has no visible item
    ceiling = (len(held) - 3) / len(held)
    assert level2["answered_by"] in {"classifier", "neighbours"}
    assert level2["served"]["top1"] == level2[level2["answered_by"]]["top1"]  # what is served is one of the two
    for source in ("served", "classifier", "neighbours"):
        # Never right about the hidden category (its own label never votes), right about the rest.
        assert level2[source]["top1"] == pytest.approx(ceiling), source
        assert level2[source]["top3"] == pytest.approx(ceiling), source
        assert 0 <= level2[source]["ece"] <= 1
    assert not CatalogFit.objects.exists()  # the evaluation's classifier is never kept for serving


def test_the_fit_command_can_leave_the_held_out_categories_out(catalog, settings, sent):
    from io import StringIO

    from django.core.management import call_command

    settings.SIMILARITY = {**settings.SIMILARITY, "FIT_FUSION_WEIGHTS": True}  # off in the suite's settings

    out = StringIO()
    call_command("similarity_fit", "--model", GADGET, "--train-split-only", stdout=out)
    fit = CatalogFit.objects.get(model_label=GADGET)
    visible = sum(1 for g in catalog if not is_held_out(g.code))
    assert fit.classifier_report["2"]["rows"] == visible  # no held-out category was used
    assert "level 2: 3 categories" in out.getvalue()  # 礼品 > 秘密 is only held out
    assert fit.image_weight is not None and "fusion weights: image" in out.getvalue()
    call_command("similarity_fit", "--model", GADGET, stdout=StringIO())
    fit.refresh_from_db()
    assert fit.classifier_report["2"]["rows"] == len(catalog) and fit.classifier_report["2"]["categories"] == 4


def test_a_large_catalog_asks_a_seeded_sample_of_its_held_out_items(catalog):
    held = [g for g in catalog if is_held_out(g.code)]
    whole = evaluate_served(GADGET)
    sampled = evaluate_served(GADGET, max_queries=5, seed=3)
    assert sampled["held_out"] == len(held) and sampled["queries"] == 5 and whole["queries"] == len(held)
    fixed = sampled["rows"]["fixed-weight fusion"]["2"]
    assert fixed["queries"] == 5 and fixed["p@1"] == 1.0
    assert sampled["suggestions"]["2"]["queries"] == 5
    # The share of held-out neighbours is still against every held-out item, and the sample is
    # the seed's: the same again, another with another seed.
    assert sampled["held_out_share"]["fixed-weight fusion"]["expected"] == whole["held_out_share"]["fixed-weight fusion"]["expected"]
    assert evaluate_served(GADGET, max_queries=5, seed=3)["rows"] == sampled["rows"]


def test_hidden_rows_never_vote_as_if_they_were_left_out_of_the_candidates(catalog):
    from similarity.categories.suggestions import suggest
    from tests.testapp.models import Gadget

    phone = catalog[0]  # 华为 手机, shelf 数码 > 手机
    others = Gadget.objects.exclude(pk=phone.pk)
    phones = set(others.filter(shelf=phone.shelf).values_list("pk", flat=True))
    # Every other phone hidden: the voters are the next nearest, as with those rows left out.
    hidden = suggest(phone, queryset=others, level=2, classifier=None, hidden=phones)
    left_out = suggest(phone, queryset=others.exclude(pk__in=phones), level=2, classifier=None)
    assert hidden == left_out and hidden[0].label != "数码 > 手机"
    assert suggest(phone, queryset=others, level=2, classifier=None)[0].label == "数码 > 手机"


def test_the_evaluate_command_samples_a_large_catalog(catalog, tmp_path, settings):
    import json

    from django.core.management import call_command

    call_command("similarity_evaluate", "--model", GADGET, "--output", str(tmp_path), "--max-queries", "4", "--max-products", "20")
    report = json.loads((tmp_path / "evaluation.json").read_text(encoding="utf-8"))
    assert report["products"] == 20 and report["served"]["queries"] == 4
    assert report["served"]["items"] == len(catalog)  # the gallery is still every product
    assert "4 of them asked" in (tmp_path / "evaluation.md").read_text(encoding="utf-8")
    settings.SIMILARITY = {**settings.SIMILARITY, "TRAINING_MAX_PRODUCTS": 30}
    call_command("similarity_evaluate", "--model", GADGET, "--output", str(tmp_path), "--max-queries", "0")
    report = json.loads((tmp_path / "evaluation.json").read_text(encoding="utf-8"))
    assert report["products"] == 30 and report["served"]["queries"] == report["served"]["held_out"]
