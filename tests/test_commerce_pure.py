"""The pure parts of commerce/: chat order commands, product and deal validation, the order
helpers, the CSV export and the payment callback's signature.

No Redis, no server: every function here is called directly with exact inputs and outputs.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import re
from typing import Any

import pytest

from chat.normalize import normalize
from commerce import export, payments
from commerce.catalog import (
    ELIGIBLE,
    MAX_PRICE,
    MAX_STOCK,
    check_deal,
    check_id,
    deal_of,
    image_path,
    image_pid,
    public,
    validate_product,
)
from commerce.chat_orders import parse as parse_order
from commerce.orders import bid_of, body_hash, mask_name, new_order_id, public_order
from commerce.payments import REPLAY_WINDOW_S, provider, sign, verify
from core.problems import BadRequest, Problem, Unauthorized, Unprocessable

KW = "keyword: 1-20 letters, digits, Hangul, _ or - (viewers type it after #)"

# -- chat order commands --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "order"),
    [
        # the pinned product
        ("구매", (None, 1)),
        ("구매 2", (None, 2)),
        ("구매2", (None, 2)),
        ("구매 2개", (None, 2)),
        ("구매2개", (None, 2)),
        ("구매 2 개", (None, 2)),
        ("구매 99", (None, 99)),
        ("  구매 3  ", (None, 3)),  # outer spaces
        ("구매개", (None, 1)),  # a unit without a number: one
        ("buy", (None, 1)),
        ("buy 3", (None, 3)),
        ("BUY 3", (None, 3)),
        ("Buy 3 EA", (None, 3)),  # the buy command ignores case
        ("buy3ea", (None, 3)),
        ("구매 07", (None, 7)),
        ("구매 0", (None, 0)),  # parsed; try_order refuses a quantity of 0 (not an order)
        # a product by its keyword
        ("#A1", ("A1", 1)),
        ("#A1 2", ("A1", 2)),
        ("#a1 2개", ("a1", 2)),  # the keyword as typed; try_order compares case-insensitively
        ("#A1 2ea", ("A1", 2)),
        ("#신발 3", ("신발", 3)),
        ("#summer_sale-1 5", ("summer_sale-1", 5)),
        ("#A12", ("A12", 1)),  # digits glued to the keyword are the keyword
        ("#" + "k" * 20, ("k" * 20, 1)),
        (" #A1 2 ", ("A1", 2)),
    ],
)
def test_order_commands(text: str, order: tuple[str | None, int]) -> None:
    assert parse_order(text) == order


@pytest.mark.parametrize(
    "text",
    [
        "",
        "안녕하세요",
        "구매하고 싶어요",
        "저 구매 2",  # the command must start the line
        "구매 2 주세요",
        "구매 100",  # at most two digits
        "구매 -1",
        "구매 두개",
        "구매 2.5",
        "구 매 2",
        "purchase 2",
        "#",
        "# A1",
        "#A1!",
        "#A 1 2",
        "#" + "k" * 21,  # keywords are at most 20 characters
        "#A1 100",
        "#A1 2 EA",  # unlike buy, the keyword command's unit is lower case only
        "A1 2",
    ],
)
def test_not_order_commands(text: str) -> None:
    assert parse_order(text) is None


def test_full_width_order_commands_work_after_the_chat_normalises_them() -> None:
    # the chat socket hands try_order the NFKC-normalised text (chat/ws.py check_text)
    assert parse_order(normalize("구매 ２개")) == (None, 2)
    assert parse_order(normalize("＃Ａ１ ３")) == ("A1", 3)
    assert parse_order(normalize("ＢＵＹ")) == (None, 1)


# -- product validation (PUT /api/broadcasts/{bid}/products/{pid}) ---------------------------------

BASE: dict[str, Any] = {"name": "딸기 1kg", "price": 15900, "stock": 30}


def _refused(pid: str, doc: dict[str, Any]) -> BadRequest:
    with pytest.raises(BadRequest) as exc:
        validate_product(pid, doc)
    return exc.value


def test_minimal_product() -> None:
    product, stock = validate_product("p1", dict(BASE))
    assert product == {
        "id": "p1",
        "name": "딸기 1kg",
        "price": 15900,
        "list_price": 15900,  # defaults to the price
        "per_buyer_limit": 0,  # 0: no limit
        "mode": "hold",
        "image": "",
        "keyword": "",
        "options": [],
    }
    assert stock == {"p1": 30}


def test_full_product_with_options() -> None:
    doc = {
        "name": "  반팔 티셔츠  ",
        "price": 19900,
        "list_price": 29900,
        "per_buyer_limit": 2,
        "mode": "fpfs",
        "image": "https://cdn.example.com/t.jpg",
        "keyword": "T1",
        "stock": 999,  # ignored: the options carry the stock
        "options": [{"id": "S", "name": "소", "stock": 3}, {"id": "L", "stock": 0}],
    }
    product, stock = validate_product("tee-01", doc)
    assert product == {
        "id": "tee-01",
        "name": "반팔 티셔츠",  # stripped
        "price": 19900,
        "list_price": 29900,
        "per_buyer_limit": 2,
        "mode": "fpfs",
        "image": "https://cdn.example.com/t.jpg",
        "keyword": "T1",
        "options": [{"id": "S", "name": "소"}, {"id": "L", "name": "L"}],  # name defaults to id
    }
    assert stock == {"tee-01/S": 3, "tee-01/L": 0}


def test_validation_does_not_change_the_body() -> None:
    doc = {**BASE, "options": [{"id": "S", "stock": 1}]}
    before = copy.deepcopy(doc)
    validate_product("p1", doc)
    assert doc == before


@pytest.mark.parametrize(
    ("change", "field", "value"),
    [
        ({"price": 0}, "price", 0),
        ({"price": MAX_PRICE, "stock": 1}, "price", MAX_PRICE),
        ({"list_price": 15900}, "list_price", 15900),  # equal to the price
        ({"list_price": MAX_PRICE}, "list_price", MAX_PRICE),
        ({"stock": 0}, "per_buyer_limit", 0),
        ({"stock": MAX_STOCK}, "per_buyer_limit", 0),
        ({"per_buyer_limit": None}, "per_buyer_limit", 0),
        ({"per_buyer_limit": 1}, "per_buyer_limit", 1),
        ({"per_buyer_limit": 10_000}, "per_buyer_limit", 10_000),
        ({"mode": "hold"}, "mode", "hold"),
        ({"name": "x"}, "name", "x"),
        ({"name": "가" * 100}, "name", "가" * 100),
        ({"name": "  " + "가" * 100 + "  "}, "name", "가" * 100),  # the stripped length counts
        ({"image": None}, "image", ""),
        ({"image": ""}, "image", ""),
        ({"image": "https://x/" + "u" * 1990}, "image", "https://x/" + "u" * 1990),
        (
            {"image": "/api/broadcasts/b1/products/p1/image"},
            "image",
            "/api/broadcasts/b1/products/p1/image",
        ),
        ({"image": "HTTP://cdn.example.com/a.jpg"}, "image", "HTTP://cdn.example.com/a.jpg"),
        ({"keyword": None}, "keyword", ""),
        ({"keyword": "k" * 20}, "keyword", "k" * 20),
        ({"keyword": "신발"}, "keyword", "신발"),
        ({"options": []}, "options", []),  # no options: the product's own stock
        ({"options": None}, "options", []),
    ],
)
def test_accepted_values(change: dict[str, Any], field: str, value: object) -> None:
    product, _ = validate_product("p1", BASE | change)
    assert product[field] == value


@pytest.mark.parametrize(
    ("pid", "change", "code", "detail"),
    [
        # the product id (from the path)
        ("", {}, "bad_product_id", "product_id: 1-40 letters, digits, '-' or '_'"),
        ("a b", {}, "bad_product_id", "product_id: 1-40 letters, digits, '-' or '_'"),
        ("a/b", {}, "bad_product_id", "product_id: 1-40 letters, digits, '-' or '_'"),
        ("상품", {}, "bad_product_id", "product_id: 1-40 letters, digits, '-' or '_'"),
        ("p" * 41, {}, "bad_product_id", "product_id: 1-40 letters, digits, '-' or '_'"),
        # name
        ("p1", {"name": None}, "bad_name", "name: 1-100 characters"),
        ("p1", {"name": ""}, "bad_name", "name: 1-100 characters"),
        ("p1", {"name": "   "}, "bad_name", "name: 1-100 characters"),
        ("p1", {"name": 5}, "bad_name", "name: 1-100 characters"),
        ("p1", {"name": ["딸기"]}, "bad_name", "name: 1-100 characters"),
        ("p1", {"name": "가" * 101}, "bad_name", "name: 1-100 characters"),
        # price
        ("p1", {"price": None}, "bad_price", "price is required"),
        ("p1", {"price": "15900"}, "bad_price", "price must be an integer (won, units)"),
        ("p1", {"price": 15900.0}, "bad_price", "price must be an integer (won, units)"),
        ("p1", {"price": True}, "bad_price", "price must be an integer (won, units)"),
        ("p1", {"price": -1}, "bad_price", "price must be 0..100000000"),
        ("p1", {"price": MAX_PRICE + 1}, "bad_price", "price must be 0..100000000"),
        # list price: at least the price
        ("p1", {"list_price": 15899}, "bad_list_price", "list_price must be 15900..100000000"),
        ("p1", {"list_price": MAX_PRICE + 1}, "bad_list_price",
         "list_price must be 15900..100000000"),
        ("p1", {"list_price": "29900"}, "bad_list_price",
         "list_price must be an integer (won, units)"),
        # an explicit null is not "absent" here (unlike per_buyer_limit, image and keyword)
        ("p1", {"list_price": None}, "bad_list_price", "list_price is required"),
        # per-buyer limit
        ("p1", {"per_buyer_limit": 0}, "bad_per_buyer_limit", "per_buyer_limit must be 1..10000"),
        ("p1", {"per_buyer_limit": 10_001}, "bad_per_buyer_limit",
         "per_buyer_limit must be 1..10000"),
        ("p1", {"per_buyer_limit": "2"}, "bad_per_buyer_limit",
         "per_buyer_limit must be an integer (won, units)"),
        ("p1", {"per_buyer_limit": False}, "bad_per_buyer_limit",
         "per_buyer_limit must be an integer (won, units)"),
        # mode
        ("p1", {"mode": "FPFS"}, "bad_mode", "mode must be hold or fpfs"),
        ("p1", {"mode": None}, "bad_mode", "mode must be hold or fpfs"),
        ("p1", {"mode": ""}, "bad_mode", "mode must be hold or fpfs"),
        # image
        ("p1", {"image": "https://x/" + "u" * 1991}, "bad_image", "image must be a URL"),
        ("p1", {"image": "javascript:alert(1)"}, "bad_image", "image must be a URL"),
        ("p1", {"image": "data:image/png;base64,AAAA"}, "bad_image", "image must be a URL"),
        ("p1", {"image": "//evil.example/x.jpg"}, "bad_image", "image must be a URL"),
        ("p1", {"image": "https://x/a b.jpg"}, "bad_image", "image must be a URL"),
        ("p1", {"image": 1}, "bad_image", "image must be a URL"),
        ("p1", {"image": {"url": "x"}}, "bad_image", "image must be a URL"),
        # keyword
        ("p1", {"keyword": ""}, "bad_keyword", KW),
        ("p1", {"keyword": "k" * 21}, "bad_keyword", KW),
        ("p1", {"keyword": 7}, "bad_keyword", KW),
        ("p1", {"keyword": "세일!"}, "bad_keyword", KW),
        ("p1", {"keyword": "A 1"}, "bad_keyword", KW),
        # stock (no options)
        ("p1", {"stock": None}, "bad_stock", "stock is required"),
        ("p1", {"stock": -1}, "bad_stock", "stock must be 0..10000000"),
        ("p1", {"stock": MAX_STOCK + 1}, "bad_stock", "stock must be 0..10000000"),
        ("p1", {"stock": 1.5}, "bad_stock", "stock must be an integer (won, units)"),
        ("p1", {"stock": None, "options": []}, "bad_stock", "stock is required"),
        # options
        ("p1", {"options": "S,M,L"}, "bad_options", "options must be a list of {id, name, stock}"),
        ("p1", {"options": {"id": "S"}}, "bad_options",
         "options must be a list of {id, name, stock}"),
        ("p1", {"options": [{"id": f"o{i}", "stock": 1} for i in range(101)]}, "bad_options",
         "options must be a list of {id, name, stock}"),
        ("p1", {"options": ["S"]}, "bad_options", "options must be a list of {id, name, stock}"),
        ("p1", {"options": [{"name": "소", "stock": 1}]}, "bad_option",
         "option: 1-40 letters, digits, '-' or '_'"),
        ("p1", {"options": [{"id": "스몰", "stock": 1}]}, "bad_option",
         "option: 1-40 letters, digits, '-' or '_'"),
        ("p1", {"options": [{"id": "S", "name": "", "stock": 1}]}, "bad_options",
         "option name: 1-60 characters"),
        ("p1", {"options": [{"id": "S", "name": None, "stock": 1}]}, "bad_options",
         "option name: 1-60 characters"),
        ("p1", {"options": [{"id": "S", "name": "n" * 61, "stock": 1}]}, "bad_options",
         "option name: 1-60 characters"),
        ("p1", {"options": [{"id": "S", "stock": 1}, {"id": "S", "stock": 2}]}, "bad_options",
         "option S twice"),
        ("p1", {"options": [{"id": "S"}]}, "bad_stock", "stock is required"),
        ("p1", {"options": [{"id": "S", "stock": -1}]}, "bad_stock", "stock must be 0..10000000"),
    ],
)  # fmt: skip
def test_refused_products(pid: str, change: dict[str, Any], code: str, detail: str) -> None:
    exc = _refused(pid, BASE | change)
    assert (exc.status, exc.code, exc.detail) == (400, code, detail)


def test_option_limits_accepted() -> None:
    options = [{"id": f"o{i}", "name": "n" * 60, "stock": i} for i in range(100)]
    product, stock = validate_product("p1", {"name": "x", "price": 1, "options": options})
    assert len(product["options"]) == 100
    assert stock["p1/o99"] == 99 and "p1" not in stock


def test_the_first_broken_rule_is_reported() -> None:
    assert _refused("bad id", {}).code == "bad_product_id"
    assert _refused("p1", {"price": -1}).code == "bad_name"
    assert _refused("p1", {"name": "x", "price": -1, "stock": -1}).code == "bad_price"


def test_image_is_a_web_url_or_our_own_path() -> None:
    for bad in ("javascript:alert(1)", "JaVaScRiPt:alert(1)", "vbscript:x", "u" * 20):
        with pytest.raises(BadRequest):
            validate_product("p1", BASE | {"image": bad})


@pytest.mark.parametrize("value", ["p", "P-1", "a_b", "0" * 40, "flash-a1b2c3"])
def test_check_id_accepts(value: str) -> None:
    assert check_id(value) == value


@pytest.mark.parametrize("value", [None, 1, "", " p", "p ", "p.1", "p/1", "x" * 41, "ｐ"])
def test_check_id_refuses(value: object) -> None:
    with pytest.raises(BadRequest) as exc:
        check_id(value, "option")
    assert (exc.value.code, exc.value.detail) == (
        "bad_option",
        "option: 1-40 letters, digits, '-' or '_'",
    )


def test_check_id_refuses_a_trailing_newline() -> None:
    with pytest.raises(BadRequest):
        check_id("p1\n")


@pytest.mark.parametrize(
    "keyword", ["세일", "A1", "Ａ１", "\u1109\u1166\u110b\u1175\u11af", "a_b-9"]
)
def test_every_accepted_keyword_can_be_ordered_from_chat(keyword: str) -> None:
    product, _ = validate_product("p1", BASE | {"keyword": keyword})  # width and jamo normalised
    parsed = parse_order(normalize(f"#{product['keyword']} 2"))
    assert parsed is not None and parsed[0] is not None
    assert parsed[0].casefold() == product["keyword"].casefold()  # what try_order compares


def test_public_product_without_options() -> None:
    product, stock = validate_product("p1", dict(BASE))
    assert public(product, stock) == {
        "id": "p1",
        "name": "딸기 1kg",
        "price": 15900,
        "list_price": 15900,
        "per_buyer_limit": None,  # 0 / "" are shown as null
        "mode": "hold",
        "image": None,
        "keyword": None,
        "options": [],
        "stock": 30,
    }
    assert public(product, {})["stock"] == 0


def test_public_product_with_options() -> None:
    options = [{"id": "S", "name": "소", "stock": 3}, {"id": "L", "stock": 4}]
    doc = BASE | {"per_buyer_limit": 3, "keyword": "A1", "image": "https://x/y.jpg"}
    doc["options"] = options
    product, stock = validate_product("p1", doc)
    stock["p1/L"] = 1  # live stock, after sales
    out = public(product, stock)
    assert out["options"] == [
        {"id": "S", "name": "소", "stock": 3},
        {"id": "L", "name": "L", "stock": 1},
    ]
    assert out["stock"] == 4
    assert (out["per_buyer_limit"], out["keyword"], out["image"]) == (3, "A1", "https://x/y.jpg")
    assert product["options"] == [{"id": "S", "name": "소"}, {"id": "L", "name": "L"}]  # intact
    del stock["p1/S"]
    assert public(product, stock)["stock"] == 1  # a missing entry counts as 0


# -- deals and the pin ----------------------------------------------------------------------------

NOW = 1_700_000_000_000
PRODUCT = {"id": "p1", "price": 10_000}


def test_pin_without_a_deal() -> None:
    assert check_deal(PRODUCT, {}, NOW) == {
        "product_id": "p1",
        "deal_price": None,
        "deal_ends_at": None,
        "pinned_at": NOW,
        "eligible": "anyone",
    }


@pytest.mark.parametrize("eligible", ELIGIBLE)
def test_pin_with_a_deal(eligible: str) -> None:
    doc = {"deal_price": 7900, "deal_ends_at": NOW + 60_000, "eligible": eligible}
    pin = check_deal(PRODUCT, doc, NOW)
    assert pin == {"product_id": "p1", "deal_price": 7900, "deal_ends_at": NOW + 60_000,
                   "pinned_at": NOW, "eligible": eligible}  # fmt: skip
    assert deal_of(pin) == {"price": 7900, "ends_at": NOW + 60_000}


@pytest.mark.parametrize(
    ("doc", "status", "code", "detail"),
    [
        ({"deal_price": 10_001}, 400, "bad_deal_price", "deal_price must be 0..10000"),
        ({"deal_price": -1}, 400, "bad_deal_price", "deal_price must be 0..10000"),
        ({"deal_price": "7900"}, 400, "bad_deal_price",
         "deal_price must be an integer (won, units)"),
        ({"deal_price": 1, "deal_ends_at": NOW + 999}, 400, "bad_deal_ends_at",
         f"deal_ends_at must be {NOW + 1000}..{NOW + 7 * 24 * 3600 * 1000}"),
        ({"deal_price": 1, "deal_ends_at": NOW + 7 * 24 * 3600 * 1000 + 1}, 400,
         "bad_deal_ends_at", f"deal_ends_at must be {NOW + 1000}..{NOW + 7 * 24 * 3600 * 1000}"),
        ({"deal_ends_at": NOW + 60_000}, 422, "bad_deal", "deal_ends_at needs a deal_price"),
        ({"eligible": "vip"}, 400, "bad_eligible",
         "eligible must be one of anyone, joined_before, verified"),
        ({"eligible": None}, 400, "bad_eligible",
         "eligible must be one of anyone, joined_before, verified"),
    ],
)  # fmt: skip
def test_refused_deals(doc: dict[str, Any], status: int, code: str, detail: str) -> None:
    with pytest.raises(Problem) as exc:
        check_deal(PRODUCT, doc, NOW)
    assert (exc.value.status, exc.value.code, exc.value.detail) == (status, code, detail)
    assert isinstance(exc.value, Unprocessable if status == 422 else BadRequest)


def test_deal_boundaries() -> None:
    assert check_deal(PRODUCT, {"deal_price": 0}, NOW)["deal_price"] == 0  # free
    assert check_deal(PRODUCT, {"deal_price": 10_000}, NOW)["deal_price"] == 10_000
    doc = {"deal_price": 1, "deal_ends_at": NOW + 1000}
    assert check_deal(PRODUCT, doc, NOW)["deal_ends_at"] == NOW + 1000


@pytest.mark.parametrize(
    ("pin", "deal"),
    [
        (None, None),
        ({"product_id": "p1"}, None),
        ({"product_id": "p1", "deal_price": None, "deal_ends_at": None}, None),
        ({"product_id": "p1", "deal_price": 0}, {"price": 0, "ends_at": None}),  # a 0 won deal
    ],
)
def test_deal_of(pin: dict[str, Any] | None, deal: dict[str, Any] | None) -> None:
    assert deal_of(pin) == deal


def test_image_path_and_back() -> None:
    assert image_path("b1", "flash-1") == "/api/broadcasts/b1/products/flash-1/image"
    assert image_pid("b1", "/api/broadcasts/b1/products/flash-1/image") == "flash-1"
    assert image_pid("b1", "/api/broadcasts/b2/products/flash-1/image") is None  # another show
    assert image_pid("b1", "/api/broadcasts/b1/products//image") is None  # no product
    assert image_pid("b1", "https://cdn.example.com/a.jpg") is None
    assert image_pid("b1", "") is None


# -- order helpers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "digest"),
    [
        (("p1", 2, None), "a514babc7d2266d8c451c595e38d32d5"),  # sha256('["p1",2,""]')[:32]
        (("p1", 2, ""), "a514babc7d2266d8c451c595e38d32d5"),  # no option == ""
        (("딸기", 1, "L"), "ea2d19d687658679e27440675cccfbeb"),  # UTF-8, not \\uXXXX
    ],
)
def test_body_hash(args: tuple[str, int, str | None], digest: str) -> None:
    assert body_hash(*args) == digest


def test_body_hash_tells_bodies_apart() -> None:
    hashes = {
        body_hash("p1", 1, None),
        body_hash("p1", 2, None),
        body_hash("p2", 1, None),
        body_hash("p1", 1, "S"),
        body_hash("p1", 12, None),
        body_hash("p11", 2, None),
    }
    assert len(hashes) == 6


@pytest.mark.parametrize(
    ("name", "masked"),
    [
        ("김민지", "김**"),
        ("  김민지  ", "김**"),
        ("이수", "이**"),
        ("Alice", "A**"),
        ("A", "A**"),
        ("😀smile", "😀**"),
        ("", "***"),
        ("   ", "***"),
    ],
)
def test_mask_name(name: str, masked: str) -> None:
    assert mask_name(name) == masked


@pytest.mark.parametrize("bid", ["b1", "bcast_01", "my-show-2024", "-"])
def test_new_order_id_carries_its_broadcast(bid: str) -> None:
    ids = [new_order_id(bid) for _ in range(1000)]
    assert len(set(ids)) == 1000
    for oid in ids:
        assert re.fullmatch(re.escape(bid) + r"-[0-9a-f]+", oid), oid
        assert bid_of(oid) == bid


@pytest.mark.parametrize(
    ("oid", "bid"),
    [("b1-abc123", "b1"), ("my-show-abc123", "my-show"), ("b1-", "b1"), ("plain", "plain")],
)
def test_bid_of(oid: str, bid: str) -> None:
    assert bid_of(oid) == bid


ANSWER = {"id": "b1-abc1", "status": "reserved", "product_id": "p1", "option": None, "qty": 2,
          "unit_price": 7900, "total": 15800,
          "shown": {"name": "딸기", "price": 7900, "list_price": 9900, "deal": None},
          "created_at": NOW, "expires_at": NOW + 600_000, "mode": "hold"}  # fmt: skip


def _row(**kw: str) -> dict[str, str]:
    row = {"id": "b1-abc1", "status": "reserved", "buyer_id": "g_x1", "buyer_name": "김민지",
           "answer": json.dumps(ANSWER, ensure_ascii=False)}  # fmt: skip
    return row | kw


def test_public_order_reserved() -> None:
    row = _row(paid_at="", closed_at="")
    assert public_order(row) == ANSWER | {"buyer": {"id": "g_x1", "name": "김민지"}}


def test_public_order_paid_and_closed() -> None:
    row = _row(status="paid", paid_at=str(NOW + 5), closed_at=str(NOW + 6))
    out = public_order(row)
    assert out["status"] == "paid"  # the row's state wins over the answer's "reserved"
    assert out["paid_at"] == NOW + 5 and isinstance(out["paid_at"], int)
    assert out["closed_at"] == NOW + 6
    assert json.loads(row["answer"]) == ANSWER  # the stored answer is not touched


# -- CSV export -----------------------------------------------------------------------------------

HEADER = ["주문번호 order_id", "주문시각 created_at (KST)", "상태 status", "상품ID product_id",
          "상품명 product", "옵션 option", "수량 qty", "단가 unit_price (KRW)",
          "합계 total (KRW)", "정가 list_price (KRW)", "특가 deal", "구매자ID buyer_id",
          "구매자 buyer"]  # fmt: skip


def _order(**kw: str) -> dict[str, str]:
    shown = {"name": "제주 감귤 5kg", "price": 19900, "list_price": 25900, "deal": None}
    row = {"id": "b1-ff01", "created_at": "1700000000000", "status": "paid", "product_id": "p1",
           "option": "", "option_name": "", "qty": "2", "unit_price": "19900",
           "shown": json.dumps(shown, ensure_ascii=False), "buyer_id": "g_1",
           "buyer_name": "김민지"}  # fmt: skip
    return row | kw


def _cells(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def test_csv_for_excel() -> None:
    data = export.to_csv([_order()])
    assert data.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM: Excel reads the Korean right
    assert not data.startswith(b"\xef\xbb\xbf\xef\xbb\xbf")
    assert "제주 감귤".encode() in data  # UTF-8, not escaped
    text = data.decode("utf-8")[1:]
    assert text.endswith("\r\n") and text.count("\r\n") == 2  # CRLF rows
    row = ["b1-ff01", "2023-11-15 07:13:20", "paid", "p1", "제주 감귤 5kg", "", "2", "19900",
           "39800", "25900", "", "g_1", "김민지"]  # fmt: skip
    assert _cells(data) == [HEADER, row]


def test_csv_header_only() -> None:
    data = export.to_csv([])
    assert data == ("\ufeff" + ",".join(HEADER) + "\r\n").encode()


def test_csv_created_at_is_korean_time() -> None:
    (row,) = export.rows([_order(created_at="0")])
    assert row["created"] == "1970-01-01 09:00:00"  # epoch in KST (UTC+9)
    (row,) = export.rows([_order(created_at="1700000000999")])
    assert row["created"] == "2023-11-15 07:13:20"


@pytest.mark.parametrize(
    ("kw", "option"),
    [
        ({"option": "L", "option_name": "라지"}, "라지"),  # the option's name, as shown
        ({"option": "L", "option_name": ""}, "L"),
        ({"option": "L"}, "L"),
        ({}, ""),
    ],
)
def test_csv_option_column(kw: dict[str, str], option: str) -> None:
    order = _order(**kw)
    if "option_name" not in kw:
        del order["option_name"]
    (row,) = export.rows([order])
    assert row["option"] == option


def test_csv_rows() -> None:
    shown = {"name": "감귤", "price": 9900, "list_price": 25900, "deal": {"price": 9900}}
    (row,) = export.rows([_order(shown=json.dumps(shown), qty="3", unit_price="9900")])
    assert row == {"id": "b1-ff01", "created": "2023-11-15 07:13:20", "status": "paid",
                   "product_id": "p1", "name": "감귤", "option": "", "qty": 3,
                   "unit_price": 9900, "total": 29700, "list_price": 25900, "deal": "Y",
                   "buyer_id": "g_1", "buyer_name": "김민지"}  # fmt: skip


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
        ("+82-10-1234", "'+82-10-1234"),
        ("-50% 세일", "'-50% 세일"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1+1", "'\t=1+1"),
        ("\r=1+1", "'\r=1+1"),
        ("김=민지", "김=민지"),  # only the first character matters
        (" =1+1", " =1+1"),
        ("'quoted", "'quoted"),
        ("", ""),
    ],
)
def test_csv_neutralises_formulas(value: str, cell: str) -> None:
    shown = {"name": value, "price": 1, "list_price": 1, "deal": None}
    order = _order(buyer_name=value, option_name=value, shown=json.dumps(shown))
    (_, row) = _cells(export.to_csv([order]))
    assert row[4] == row[5] == row[12] == cell  # product, option, buyer


def test_csv_numbers_are_numbers() -> None:
    # numeric cells are not prefixed (a negative number would be, were it a string)
    (_, row) = _cells(export.to_csv([_order(qty="1", unit_price="0")]))
    assert row[6:10] == ["1", "0", "0", "25900"]


def test_csv_quotes_commas_quotes_and_newlines() -> None:
    name = '사과, "부사" 5kg\n특품'
    shown = {"name": name, "price": 1, "list_price": 1, "deal": None}
    (_, row) = _cells(export.to_csv([_order(shown=json.dumps(shown, ensure_ascii=False))]))
    assert row[4] == name


# -- payments -------------------------------------------------------------------------------------

SECRET = "whsec-test"
TS = 1_700_000_000
BODY = b'{"order_id":"b1-abc1","payment_id":"pay_1","status":"paid","amount":59800}'
# HMAC-SHA256(SECRET, "1700000000." + BODY), computed independently (openssl dgst -hmac)
SIGNATURE = "v1=518baab0cf6a5e89773e3bc5e73e25321feff4459e6aeffb4af31cd96bca612e"


def test_sign_known_vector() -> None:
    assert sign(SECRET, TS, BODY) == SIGNATURE


@pytest.mark.parametrize(
    ("signature", "now"),
    [
        (SIGNATURE, TS),
        (f" {SIGNATURE} ", TS),
        (f"v1=deadbeef,{SIGNATURE}", TS),  # several signatures (secret rotation): one matches
        (f"{SIGNATURE}, v1=deadbeef", TS),
        (SIGNATURE, TS + REPLAY_WINDOW_S),  # the edges of the replay window
        (SIGNATURE, TS - REPLAY_WINDOW_S),
        (SIGNATURE, TS + 0.5),
    ],
)
def test_verify_accepts(signature: str, now: float) -> None:
    verify(SECRET, str(TS), signature, BODY, now=now)


@pytest.mark.parametrize(
    ("timestamp", "signature", "body", "now", "code", "detail"),
    [
        (None, SIGNATURE, BODY, TS, "unsigned_callback", "signed callbacks only"),
        (str(TS), None, BODY, TS, "unsigned_callback", "signed callbacks only"),
        ("", SIGNATURE, BODY, TS, "unsigned_callback", "signed callbacks only"),
        (str(TS), "", BODY, TS, "unsigned_callback", "signed callbacks only"),
        ("soon", SIGNATURE, BODY, TS, "bad_signature", "bad timestamp"),
        ("1.7e9", SIGNATURE, BODY, TS, "bad_signature", "bad timestamp"),
        (str(TS), SIGNATURE, BODY, TS + REPLAY_WINDOW_S + 1, "stale_callback",
         "timestamp outside the replay window"),
        (str(TS), SIGNATURE, BODY, TS - REPLAY_WINDOW_S - 1, "stale_callback",
         "timestamp outside the replay window"),
        (str(TS + 1), SIGNATURE, BODY, TS, "bad_signature", "signature does not match"),
        (str(TS), SIGNATURE, BODY + b" ", TS, "bad_signature", "signature does not match"),
        (str(TS), SIGNATURE.upper(), BODY, TS, "bad_signature", "signature does not match"),
        (str(TS), SIGNATURE[3:], BODY, TS, "bad_signature", "signature does not match"),
        (str(TS), "v2=" + SIGNATURE[3:], BODY, TS, "bad_signature", "signature does not match"),
        (str(TS), SIGNATURE[:-1] + "é", BODY, TS, "bad_signature", "signature does not match"),
        (str(TS), sign("other", TS, BODY), BODY, TS, "bad_signature",
         "signature does not match"),
    ],
)  # fmt: skip
def test_verify_refuses(
    timestamp: str | None, signature: str | None, body: bytes, now: float, code: str, detail: str
) -> None:
    with pytest.raises(Unauthorized) as exc:
        verify(SECRET, timestamp, signature, body, now=now)
    assert (exc.value.status, exc.value.code, exc.value.detail) == (401, code, detail)


def test_providers() -> None:
    order = {"id": "b1-abc1", "total": 15800}
    # (payments.TestProvider is not imported by name: pytest would collect it as a test class)
    assert isinstance(provider("test"), payments.TestProvider)
    assert isinstance(provider("external"), payments.ExternalProvider)
    assert isinstance(provider("anything else"), payments.ExternalProvider)
    assert provider("test").checkout(order) == {
        "provider": "test",
        "confirm_url": "/api/orders/b1-abc1/confirm",
    }
    assert provider("external").checkout(order) == {
        "provider": "external",
        "status": "awaiting_payment",
        "amount": 15800,
    }
