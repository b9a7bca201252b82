"""Text pipeline: normalisation, model numbers and units, dictionaries, stop words, real titles.

Pure Python, no database: runs with ``-p no:django``. jieba's dictionary loads once per process
(about 1.5 s); every other pipeline copies it.
"""
from __future__ import annotations

import csv
import functools
import logging
import re
import time
from pathlib import Path

import pytest

from similarity.ml.text_pipeline import TextPipeline, default_pipeline, tokenize

ROOT = Path(__file__).resolve().parents[2]
ZH_TITLES = ROOT.parent / "shared" / "data" / "zh-titles" / "products.csv"
FLIPKART = ROOT.parent / "shared" / "data" / "flipkart1050" / "products.csv"


@functools.lru_cache(maxsize=None)
def read_titles(path: Path) -> dict[str, str]:
    """Return sku -> title from a shared products.csv, or skip when the data set is absent."""
    if not path.is_file():
        pytest.skip(
            f"real data set not found at {path} (it lives in ../shared/data, beside the repo)"
        )
    with open(path, encoding="utf-8", newline="") as handle:
        return {row["sku"]: row["title"] for row in csv.DictReader(handle)}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("iPhone 15", ["iphone15"]),
        ("iPhone15", ["iphone15"]),
        ("64G", ["64g"]),
        ("15英寸", ["15英寸"]),
        ("15 英寸", ["15英寸"]),
        ("256GB", ["256gb"]),
        ("256 GB", ["256gb"]),
        ("500ml", ["500ml"]),
        ("2.5kg", ["2.5kg"]),
        ("RTX4090", ["rtx4090"]),
        ("RTX 4090 显卡", ["rtx4090", "显卡"]),
        ("华为Mate 60 Pro", ["华为", "mate60", "pro"]),
        ("max 256gb", ["max", "256gb"]),
        ("iphone 15英寸", ["iphone", "15英寸"]),
        ("pack of 2", ["pack", "2"]),
        ("Art n Beyond 150013", ["art", "beyond", "150013"]),
        ("HEM-7133", ["hem", "7133"]),
        ("5G手机 3+64G", ["5g", "手机", "3", "64g"]),
    ],
)
def test_model_numbers_and_units_stay_whole(text, expected):
    assert tokenize(text) == expected


def test_full_width_text_is_folded_to_half_width_and_lower_case():
    assert tokenize("ＩＰＨＯＮＥ１５") == ["iphone15"]
    assert tokenize("ＡＢＣ（手机）") == ["abc", "手机"]
    assert default_pipeline().normalize("  Ｈｅｌｌｏ\u3000ＷＯＲＬＤ  ") == "hello world"


def test_lowercase_can_be_turned_off():
    assert TextPipeline(lowercase=False).tokenize("iPhone 15 ＲＴＸ4090") == ["iPhone15", "RTX4090"]


def test_stop_words_are_removed_in_both_languages():
    assert tokenize("包邮 正品 新款 官方旗舰店 的 连衣裙") == ["连衣裙"]
    assert tokenize("【热卖】特价 保温杯 送 赠品") == ["保温杯"]
    assert tokenize("The best genuine shoes for men with free shipping") == ["shoes", "men"]


def test_stop_words_can_be_overridden():
    assert TextPipeline(stop_words=[]).tokenize("包邮 的 with") == ["包邮", "的", "with"]
    assert TextPipeline(stop_words=["手机"]).tokenize("华为 手机 的") == ["华为", "的"]


def test_single_letters_dropped_single_chinese_characters_kept():
    assert tokenize("a b c 鞋 茶 米 的") == ["鞋", "茶", "米"]


def test_mixed_chinese_english_and_numbers():
    title = "Apple/苹果 iPhone15 Pro Max 256GB 5G手机 全网通"
    assert tokenize(title) == ["apple", "苹果", "iphone15", "pro", "max", "256gb", "5g", "手机", "全网通"]


def test_punctuation_emoji_control_characters_and_html_entities():
    assert tokenize("&amp; &lt;b&gt; 😀🔥 ★☆ —— ！？") == []
    assert tokenize("Tom &amp; Jerry") == ["tom", "jerry"]
    assert tokenize("耳机\x00\x07蓝牙\u200b音箱\t\n充电宝") == ["耳机", "蓝牙", "音箱", "充电宝"]
    assert tokenize("Apple™ iPad®") == ["apple", "ipad"]


def test_default_dictionary_keeps_brands_and_terms_whole():
    assert tokenize("海飞丝洗发水") == ["海飞丝", "洗发水"]
    assert tokenize("小米充电宝") == ["小米", "充电宝"]
    assert tokenize("腾讯30元Q币") == ["腾讯", "30元", "q币"]
    assert TextPipeline(default_dict=False).tokenize("小米充电宝") == ["小米", "充电", "宝"]


def test_extra_words_stay_whole_and_do_not_leak_into_other_pipelines():
    custom = TextPipeline(extra_words=["喵呜星球", "华为mate60"])
    plain = TextPipeline()
    assert custom.tokenize("喵呜星球充电宝") == ["喵呜星球", "充电宝"]
    assert custom.tokenize("华为 Mate60 手机") == ["华为mate60", "手机"]
    assert plain.tokenize("喵呜星球充电宝") == ["喵", "呜", "星球", "充电宝"]
    assert plain.tokenize("华为 Mate60 手机") == ["华为", "mate60", "手机"]
    assert tokenize("喵呜星球") == ["喵", "呜", "星球"]


def test_user_dict_file_stays_whole_and_is_isolated(tmp_path):
    user_dict = tmp_path / "shop.txt"
    user_dict.write_text("# shop brands\n飞天小猪 10 nz\n\n小度Mini3\n灵狐 0\n", encoding="utf-8")
    custom = TextPipeline(user_dict=user_dict)
    assert custom.tokenize("飞天小猪充电宝") == ["飞天小猪", "充电宝"]
    assert custom.tokenize("小度 mini3 智能音箱") == ["小度mini3", "智能", "音箱"]
    assert TextPipeline().tokenize("飞天小猪充电宝") == ["飞天", "小猪", "充电宝"]


def test_missing_user_dict_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="user_dict=None"):
        TextPipeline(user_dict=tmp_path / "missing.txt")


def test_output_is_deterministic_across_calls_and_instances():
    titles = ["Apple/苹果 iPhone15 Pro Max 256GB 5G手机 全网通", "金山剑网3月卡/点卡/剑网三50元", "同仁堂菊花茶35g 瓶装"]
    first, second = TextPipeline(), TextPipeline()
    for title in titles:
        assert first.tokenize(title) == first.tokenize(title) == second(title) == tokenize(title)


def test_empty_and_whitespace_input():
    assert tokenize("") == []
    assert tokenize(" \t\n\u3000 ") == []


def test_huge_input_is_cut_and_cheap():
    text = "华为手机充电宝 " * 150_000  # about 1 MB of text
    started = time.perf_counter()
    tokens = tokenize(text)
    assert time.perf_counter() - started < 1.0
    assert 0 < len(tokens) <= default_pipeline().max_chars


@pytest.mark.parametrize("value", [None, b"bytes", 42, ["a"]])
def test_non_str_input_raises_type_error(value):
    with pytest.raises(TypeError, match="expects str"):
        tokenize(value)


def test_jieba_loads_quietly(capfd):
    tokenize("华为手机")  # the shared dictionary is loaded by now, whichever test ran first
    assert logging.getLogger("jieba").getEffectiveLevel() >= logging.WARNING
    capfd.readouterr()
    assert TextPipeline(extra_words=["喵呜星球"]).tokenize("喵呜星球") == ["喵呜星球"]
    assert capfd.readouterr().err == ""


@pytest.mark.data
def test_real_chinese_titles_tokenize_sensibly():
    titles = list(read_titles(ZH_TITLES).values())[:2000]
    cjk = re.compile(r"[\u4e00-\u9fff]")
    pipeline = default_pipeline()
    for title in titles:
        tokens = pipeline.tokenize(title)
        if cjk.search(title):
            assert tokens, title
        assert not any(re.search(r"\s", token) for token in tokens), (title, tokens)


@pytest.mark.data
@pytest.mark.parametrize(
    ("sku", "expected"),
    [
        (  # 金山剑网3月卡/点卡/剑网三/剑侠情缘3剑三50元5000通宝 自动充值
            "zh-a748eabebee5",
            ["金山", "剑网", "3", "月卡", "点卡", "剑网三", "剑侠情缘", "3", "剑", "三", "50元", "5000",
             "通宝", "自动", "充值"],
        ),
        (  # 夏普（SHARP）电视 50英寸 4K超高清智能网络wifi液晶平板电视机
            "zh-d960a83ed781",
            ["夏普", "sharp", "电视", "50英寸", "4k", "超高", "清", "智能", "网络", "wifi", "液晶", "平板",
             "电视机"],
        ),
        (  # 小米（MI）小米电视4A 43英寸 青春版 L43M5-AD 1GB+8GB 全高清 蓝牙语音遥控 人工智能语音网络液晶平板电视
            "zh-7bdde5ee820b",
            ["小米", "mi", "小米", "电视", "4a", "43英寸", "青春", "版", "l43m5", "ad", "1gb", "8gb", "全高清",
             "蓝牙", "语音", "遥控", "人工智能", "语音网络", "液晶", "平板电视"],
        ),
        (  # 暴雪战网魔兽世界点卡198元90天季卡魔兽月卡wow游戏时间自动充值
            "zh-295ef5729a3e",
            ["暴雪", "战网", "魔兽", "世界", "点卡", "198元", "90天", "季卡", "魔兽", "月卡", "wow", "游戏",
             "时间", "自动", "充值"],
        ),
    ],
)
def test_real_chinese_titles_exact_tokens(sku, expected):
    assert tokenize(read_titles(ZH_TITLES)[sku]) == expected


@pytest.mark.data
def test_real_english_titles_exact_tokens():
    titles = read_titles(FLIPKART)
    # TAG Heuer CAU1116.BA0858 Formula 1 Analog Watch  - For Boys, Men
    assert tokenize(titles["710ed5f2393a4b9e8823aa0029f71f93"]) == [
        "tag", "heuer", "cau1116", "ba0858", "formula1", "analog", "watch", "boys", "men",
    ]
