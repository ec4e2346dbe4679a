"""The pure parts of chat/: text rules, the role table and the socket's client frames.

No Redis, no server: these are the rules the chat socket and the HTTP routes apply before they
touch anything, tested input by input.
"""

from __future__ import annotations

import json
import unicodedata

import pytest

from chat.frames import MAX_HEART_TAPS, BadFrame, ChatLine, Hearts, error_event, parse
from chat.normalize import DEFAULT_MAX_CHARS, TextRejected, banned_hit, check_text, fold, normalize
from chat.roles import PERMISSIONS, RANK, Action, may, outranks, require
from core.problems import Forbidden
from core.tokens import Role

H, C, M, V = Role.HOST, Role.COHOST, Role.MODERATOR, Role.VIEWER
NFD_HANGUL = unicodedata.normalize("NFD", "한국어")  # 한국어 as a macOS keyboard may send it

# -- normalize / check_text -----------------------------------------------------------------------


def test_the_nfd_fixture_really_is_decomposed() -> None:
    assert len(NFD_HANGUL) == 8 and NFD_HANGUL != "한국어"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  안녕하세요  ", "안녕하세요"),
        ("\n\t안녕\r\n", "안녕"),  # outer whitespace (control characters included) is stripped
        ("\u3000안녕\u3000", "안녕"),  # the ideographic space too
        (NFD_HANGUL, "한국어"),  # decomposed Hangul is composed (NFC)
        ("ＨＥＬＬＯ １２３", "HELLO 123"),  # full-width ASCII becomes ASCII
        ("①", "1"),
        ("㈜장터", "(주)장터"),
        ("ﬁne", "fine"),
        ("ㅎㅏㄴ", "하\u1102"),  # compatibility jamo: ㅎ+ㅏ compose, the trailing ㄴ does not
        ("ㅋㅋㅋ", "\u110f\u110f\u110f"),  # …and lone ones become conjoining jamo
        ("Straße", "Straße"),  # no case folding for display
        ("❤️", "❤️"),  # the emoji variation selector is kept
        ("a  b", "a  b"),  # inner spaces are kept
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize(raw) == expected
    assert check_text(raw) == expected


@pytest.mark.parametrize("raw", ["", " ", "   \t\n ", "\u3000", "\x1c\x1f", "\u2028"])
def test_empty_messages_are_refused(raw: str) -> None:
    with pytest.raises(TextRejected) as exc:
        check_text(raw)
    assert exc.value.code == "empty"
    assert exc.value.detail == "the message is empty"
    assert str(exc.value) == "the message is empty"
    assert isinstance(exc.value, ValueError)


@pytest.mark.parametrize(
    "raw",
    [
        "a\x00b",  # NUL (Cc)
        "a\tb",  # a tab inside the text (outer ones are stripped)
        "line\nbreak",
        "bell\x07",
        "del\x7f",
        "c1\x85control",  # NEL inside
        "zero\u200bwidth",  # zero-width space (Cf)
        "zero\u200cwidth",  # zero-width non-joiner (Cf)
        "\u202eevil",  # right-to-left override: reverses what follows on screen
        "a\u2066b\u2069",  # bidi isolates
        "\ufeffbom",  # a BOM is not whitespace: it stays and is refused
        "\u2060joiner",  # word joiner
        "private\ue000use",  # private use (Co)
        "lone\ud800surrogate",  # Cs
        "\x00" * 500,  # control characters are reported before the length
    ],
)
def test_control_characters_are_refused(raw: str) -> None:
    with pytest.raises(TextRejected) as exc:
        check_text(raw)
    assert exc.value.code == "control_characters"
    assert exc.value.detail == "the message contains control characters"


@pytest.mark.parametrize(
    "raw",
    [
        "👨\u200d👩\u200d👧",  # the zero-width joiner is allowed: emoji sequences need it
        "🇰🇷",
        "👍🏽",
        "가격 얼마예요? 😍",
    ],
)
def test_emoji_sequences_are_accepted(raw: str) -> None:
    assert check_text(raw) == raw


def test_subdivision_flag_emoji_is_accepted_but_tags_elsewhere_are_not() -> None:
    flag = "\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f"
    assert check_text(flag) == flag
    assert check_text(f"잉글랜드 {flag} 응원") == f"잉글랜드 {flag} 응원"
    hidden = "hi \U000e0069\U000e0067\U000e006e\U000e006f\U000e0072\U000e0065"  # invisible text
    with pytest.raises(TextRejected) as e:
        check_text(hidden)
    assert e.value.code == "control_characters"


def test_length_limit_default() -> None:
    assert DEFAULT_MAX_CHARS == 200
    assert check_text("가" * 200) == "가" * 200
    assert check_text("  " + "가" * 200 + "\n") == "가" * 200  # the stripped length counts
    with pytest.raises(TextRejected) as exc:
        check_text("가" * 201)
    assert exc.value.code == "too_long"
    assert exc.value.detail == "at most 200 characters"


@pytest.mark.parametrize(("limit", "ok", "refused"), [(1, "a", "ab"), (10, "a" * 10, "a" * 11)])
def test_length_limit_is_a_parameter(limit: int, ok: str, refused: str) -> None:
    assert check_text(ok, limit) == ok
    with pytest.raises(TextRejected) as exc:
        check_text(refused, limit)
    assert exc.value.code == "too_long"
    assert exc.value.detail == f"at most {limit} characters"


def test_length_is_counted_after_normalisation() -> None:
    # 200 decomposed syllables are 400+ code points sent, 200 characters after NFC
    nfd = unicodedata.normalize("NFD", "한" * 200)
    assert len(nfd) == 600
    assert check_text(nfd) == "한" * 200
    # …and a compatibility character that expands counts as its expansion (1 → 18 characters)
    assert len(normalize("ﷺ")) == 18
    with pytest.raises(TextRejected) as exc:
        check_text("ﷺ" * 12)
    assert exc.value.code == "too_long"


# -- fold / banned words --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("바 보", "바보"),
        ("ＢＡＤ", "bad"),
        ("b a d", "bad"),
        ("B\u200bA\u200cD\u200d\u2060\ufeff", "bad"),  # zero-width characters vanish
        ("B\tA\nD\u3000", "bad"),
        ("Straße", "strasse"),  # case folding, not just lower()
        (NFD_HANGUL, "한국어"),
        ("", ""),
    ],
)
def test_fold(raw: str, key: str) -> None:
    assert fold(raw) == key


@pytest.mark.parametrize(
    ("text", "banned", "hit"),
    [
        ("너 바보야", ["바보"], "바보"),
        ("너 바 보야", ["바보"], "바보"),  # spaces inside the word
        ("너 바\u200b보야", ["바보"], "바보"),  # a zero-width space inside the word
        ("ＢＡＤ word", ["bad"], "bad"),  # width and case
        ("this is Bad", ["B A D"], "B A D"),  # answers the word as configured
        (NFD_HANGUL + "!", ["한국어"], "한국어"),  # NFD text, NFC word
        ("한국어", [NFD_HANGUL], NFD_HANGUL),  # and the other way round
        ("바보 bad", ["bad", "바보"], "bad"),  # the first configured word that matches
        ("바보 bad", ["바보", "bad"], "바보"),
        ("abadb", ["bad"], "bad"),  # substrings count
        ("좋아요", ["바보", "bad"], None),
        ("좋아요", [], None),
        ("좋아요", ["", "   ", "\u200b"], None),  # words that fold to nothing never match
        ("바", ["바보"], None),
    ],
)
def test_banned_hit(text: str, banned: list[str], hit: str | None) -> None:
    assert banned_hit(text, banned) == hit


# -- roles ----------------------------------------------------------------------------------------

_ALLOWED: dict[Action, set[Role]] = {
    Action.SEND: {H, C, M, V},
    Action.HEART: {H, C, M, V},
    Action.DELETE: {H, M},
    Action.BAN: {H, M},
    Action.SETTINGS: {H, M},
    Action.ANNOUNCE: {H},
    Action.BYPASS_SLOW_MODE: {H, C, M},
    Action.BYPASS_RATE_LIMIT: {H},
    Action.BYPASS_FREEZE: {H, C, M},
}


def test_every_action_and_role_is_in_the_tables() -> None:
    assert set(PERMISSIONS) == set(Action) == set(_ALLOWED)
    assert set(RANK) == set(Role)


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("role", list(Role))
def test_permission_matrix(role: Role, action: Action) -> None:
    allowed = role in _ALLOWED[action]
    assert may(role, action) is allowed
    if allowed:
        require(role, action)
    else:
        with pytest.raises(Forbidden) as exc:
            require(role, action)
        assert exc.value.status == 403
        assert exc.value.code == "wrong_role"
        assert exc.value.detail == f"role {role.value} may not {action.value.replace('_', ' ')}"


def test_forbidden_detail_reads_as_words() -> None:
    with pytest.raises(Forbidden, match=r"^role viewer may not bypass slow mode$"):
        require(V, Action.BYPASS_SLOW_MODE)


# actor → the roles it outranks
_OUTRANKS: dict[Role, set[Role]] = {H: {C, M, V}, C: {V}, M: {V}, V: set()}


@pytest.mark.parametrize("target", list(Role))
@pytest.mark.parametrize("actor", list(Role))
def test_rank_matrix(actor: Role, target: Role) -> None:
    assert outranks(actor, target) is (target in _OUTRANKS[actor])


# who may ban (or time out) whom, as chat/http.py decides it: the BAN action and a higher rank.
# Nobody bans the host; the host alone bans co-hosts and moderators; moderators ban viewers; a
# co-host outranks viewers but may not ban at all.
_BANS: dict[Role, set[Role]] = {H: {C, M, V}, M: {V}, C: set(), V: set()}


@pytest.mark.parametrize("target", list(Role))
@pytest.mark.parametrize("actor", list(Role))
def test_ban_matrix(actor: Role, target: Role) -> None:
    assert (may(actor, Action.BAN) and outranks(actor, target)) is (target in _BANS[actor])


@pytest.mark.parametrize("role", list(Role))
def test_nobody_outranks_themselves_or_the_host(role: Role) -> None:
    assert not outranks(role, role)
    assert not outranks(role, H)


# -- frames ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "frame"),
    [
        ('{"type":"chat","text":"안녕"}', ChatLine("안녕")),
        ('{"type": "chat", "text": "\\uc548\\ub155"}', ChatLine("안녕")),  # escaped
        ('{"type":"chat","text":""}', ChatLine("")),  # text rules come later (check_text)
        ('{"type":"chat","text":"  구매 2 "}', ChatLine("  구매 2 ")),  # as sent
        ('{"type":"chat","text":"hi","extra":1}', ChatLine("hi")),  # unknown keys ignored
        ('{"text":"hi","type":"chat"}', ChatLine("hi")),
        ('{"type":"heart"}', Hearts(1)),  # count defaults to 1
        ('{"type":"heart","count":1}', Hearts(1)),
        ('{"type":"heart","count":7}', Hearts(7)),
        (f'{{"type":"heart","count":{MAX_HEART_TAPS}}}', Hearts(MAX_HEART_TAPS)),
        ('{"type":"heart","count":3,"text":"x"}', Hearts(3)),
        (' \n{"type":"heart"}\n ', Hearts(1)),  # JSON whitespace around the object
    ],
)
def test_parse_valid_frames(raw: str, frame: ChatLine | Hearts) -> None:
    parsed = parse(raw)
    assert parsed == frame
    assert type(parsed) is type(frame)


@pytest.mark.parametrize(
    "raw",
    ["", "   ", "not json", "{", '{"type":"chat"', "{'type': 'chat'}", "[]",
     '[{"type":"chat","text":"hi"}]', '"chat"', "null", "1", "true", "NaN"],
)  # fmt: skip
def test_parse_bad_json(raw: str) -> None:
    with pytest.raises(BadFrame) as exc:
        parse(raw)
    assert exc.value.code == "bad_json"
    assert exc.value.detail == "send a JSON object"


@pytest.mark.parametrize(
    "raw",
    ["{}", '{"text":"hi"}', '{"type":"CHAT","text":"hi"}', '{"type":"Heart"}',
     '{"type":"hearts"}', '{"type":"message","text":"hi"}', '{"type":null}', '{"type":1}',
     '{"type":["chat"]}', '{"type":{"chat":1}}', '{"type":" chat","text":"hi"}'],
)  # fmt: skip
def test_parse_bad_type(raw: str) -> None:
    with pytest.raises(BadFrame) as exc:
        parse(raw)
    assert exc.value.code == "bad_type"
    assert exc.value.detail == "type must be chat or heart"


@pytest.mark.parametrize(
    "raw",
    ['{"type":"chat"}', '{"type":"chat","text":null}', '{"type":"chat","text":1}',
     '{"type":"chat","text":true}', '{"type":"chat","text":["hi"]}',
     '{"type":"chat","text":{"t":"hi"}}'],
)  # fmt: skip
def test_parse_bad_text(raw: str) -> None:
    with pytest.raises(BadFrame) as exc:
        parse(raw)
    assert exc.value.code == "bad_text"
    assert exc.value.detail == "text must be a string"


@pytest.mark.parametrize(
    "count",
    ["0", "-1", str(MAX_HEART_TAPS + 1), "1000000000000000000000", "true", "false", "null",
     "1.0", "1e1", '"1"', "[1]", "{}"],
)  # fmt: skip
def test_parse_bad_count(count: str) -> None:
    with pytest.raises(BadFrame) as exc:
        parse(f'{{"type":"heart","count":{count}}}')
    assert exc.value.code == "bad_count"
    assert exc.value.detail == f"count must be 1..{MAX_HEART_TAPS}"


@pytest.mark.parametrize(
    ("count", "ok"), [(0, False), (1, True), (MAX_HEART_TAPS, True), (MAX_HEART_TAPS + 1, False)]
)
def test_heart_count_boundaries(count: int, ok: bool) -> None:
    raw = json.dumps({"type": "heart", "count": count})
    if ok:
        assert parse(raw) == Hearts(count)
    else:
        with pytest.raises(BadFrame, match=r"^count must be 1\.\.50$"):
            parse(raw)


def test_max_heart_taps() -> None:
    assert MAX_HEART_TAPS == 50


@pytest.mark.parametrize(
    "frame",
    [
        ChatLine("안녕하세요"),
        ChatLine(""),
        ChatLine('따옴표 " 와 \\ 백슬래시'),
        ChatLine("줄\n바꿈\t탭"),
        ChatLine("👨\u200d👩\u200d👧 🇰🇷"),
        ChatLine(NFD_HANGUL),  # parse does not normalise: the round trip is exact
        Hearts(),
        Hearts(1),
        Hearts(MAX_HEART_TAPS),
    ],
)
def test_serialize_parse_round_trip(frame: ChatLine | Hearts) -> None:
    assert parse(frame.serialize()) == frame


def test_serialize_exact() -> None:
    assert ChatLine("안녕").serialize() == '{"type": "chat", "text": "안녕"}'  # not \\uXXXX
    assert Hearts(3).serialize() == '{"type": "heart", "count": 3}'
    assert Hearts().serialize() == '{"type": "heart", "count": 1}'


def test_bad_frame_is_a_value_error_with_its_code() -> None:
    exc = BadFrame("bad_json", "send a JSON object")
    assert isinstance(exc, ValueError)
    assert (exc.code, exc.detail, str(exc)) == ("bad_json", "send a JSON object", exc.detail)


def test_error_event() -> None:
    raw = error_event("slow_mode", "천천히 보내 주세요", retry_ms=1500)
    assert "천천히" in raw  # Korean is sent as is
    assert json.loads(raw) == {
        "type": "error",
        "code": "slow_mode",
        "detail": "천천히 보내 주세요",
        "retry_ms": 1500,
    }
    assert json.loads(error_event("bad_json", "send a JSON object")) == {
        "type": "error",
        "code": "bad_json",
        "detail": "send a JSON object",
    }
